"""The ISA: assembly round trip, syntax errors, validation, the .nmc container."""
from __future__ import annotations

import zipfile

import numpy as np
import pytest

from nmc.isa import (AsmSyntaxError, ProgramError, format_program, load_program, parse_program, save_program,
                 validate)

PROGRAM = """\
.nmc 2
.target "ideal"
.batched true
.input "x" in0 f32 [2, 4, 4]
.output "y" out1 f32 [3]
.buffer in0 f32 32 global
.buffer t0 f32 32 core0
.buffer t1 f32 27 core0
.buffer t2 f32 3 core0
.buffer out1 f32 3 global
.const w f32 [2, 3, 8]
.layer 0 "conv/Conv" "Conv"
.core 0
    load t0[0; 32:1], in0[0; 32:1]
    loop %i0, 3 {
        loop %i1, 3 {
            mvm t1[0 + 3*%i0 + 1*%i1; 3:9], @w[0], t0[0 + 4*%i0 + 1*%i1; 2:16, 2:4, 2:1] !0
        }
    }
    rmean t2[0; 3:1], t1[0; 3:9, 9:1] !0
    clip t2[0; 3:1], t2[0; 3:1], #-inf, #6.0
    store out1[0; 3:1], t2[0; 3:1]
"""


def _with_data(p):
    p.data = {"w": np.arange(48, dtype=np.float32).reshape(2, 3, 8) / 48}
    return p


def test_text_round_trip_is_exact():
    p = parse_program(PROGRAM)
    assert format_program(p) == PROGRAM
    assert parse_program(format_program(p)) == p


def test_syntax_error_names_line_column_and_caret():
    bad = PROGRAM.replace("t2[0; 3:1], t1", "t2[0; 3:1] t1")
    with pytest.raises(AsmSyntaxError) as err:
        parse_program(bad)
    assert err.value.line == 20
    text = str(err.value)
    assert "line 20" in text and "^" in text and "rmean" in text


def test_unknown_opcode_is_a_syntax_error():
    with pytest.raises(AsmSyntaxError, match="unknown opcode 'rmeen'"):
        parse_program(PROGRAM.replace("rmean", "rmeen"))


@pytest.mark.parametrize("edit, message", [
    (("t0[0 + 4*%i0", "t0[9 + 4*%i0"), "outside 0..31"),
    (("@w[0]", "@w[2]"), "weight index 2..2 outside 0..1"),
    (("rmean t2[0; 3:1]", "rmean t2[0; 2:1]"), "dst must be a prefix"),
    (("load t0[0; 32:1], in0", "load in0[0; 32:1], t0"), "needs it in"),
    (("t1[0; 3:9, 9:1]", "t9[0; 3:9, 9:1]"), "unknown buffer t9"),
    (("#6.0", "t2[0; 3:1]"), "is not a imm"),
    (("+ 1*%i1; 3:9]", "+ 1*%j; 3:9]"), "%j is not an enclosing loop counter"),
])
def test_validator_rejects_inconsistent_programs(edit, message):
    p = _with_data(parse_program(PROGRAM.replace(*edit)))
    with pytest.raises(ProgramError, match=message.replace("+", r"\+").replace("[", r"\[")):
        validate(p)


def test_container_round_trip(tmp_path):
    p = _with_data(parse_program(PROGRAM))
    path = tmp_path / "p.nmc"
    save_program(p, path, {"target.toml": "[chip]\n"})
    q, attachments = load_program(path)
    assert format_program(q) == PROGRAM
    assert attachments == {"target.toml": "[chip]\n"}
    np.testing.assert_array_equal(q.data["w"], p.data["w"])


def test_truncated_or_corrupt_files_are_clear_errors(tmp_path):
    p = _with_data(parse_program(PROGRAM))
    good = tmp_path / "p.nmc"
    save_program(p, good)
    raw = good.read_bytes()
    (tmp_path / "trunc.nmc").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ProgramError, match="corrupt or truncated"):
        load_program(tmp_path / "trunc.nmc")
    (tmp_path / "garbage.nmc").write_bytes(b"not a zip at all")
    with pytest.raises(ProgramError, match="corrupt or truncated"):
        load_program(tmp_path / "garbage.nmc")
    # a valid zip whose data was changed after sealing: the checksum catches it
    tampered = tmp_path / "tampered.nmc"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(tampered, "w") as dst:
        for item in src.namelist():
            data = src.read(item)
            if item == "program.s":
                data = data.replace(b"#6.0", b"#7.0")
            dst.writestr(item, data)
    with pytest.raises(ProgramError, match="checksum mismatch"):
        load_program(tampered)
    with pytest.raises(Exception, match="no such program file"):
        load_program(tmp_path / "missing.nmc")


def test_failed_save_leaves_nothing_behind(tmp_path):
    p = parse_program(PROGRAM)  # no data: validation fails before writing
    with pytest.raises(ProgramError, match="constant w has no data"):
        save_program(p, tmp_path / "p.nmc")
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------- one record per opcode
def test_every_opcode_has_a_record_a_kernel_a_price_and_a_doc():
    """The instruction table is the single record: each opcode's operand kinds, types, shape
    rule and cost class are complete, and the runtime, the timing model and docs/isa.md all
    know it (a fourth place that misses an opcode fails here, not in a user's run)."""
    from pathlib import Path

    from nmc.isa.instructions import COST_CLASSES, OPCODES, SHAPE_RULES
    from nmc.isa.validate import _SHAPES
    from nmc.runtime.costs import PRICES
    from nmc.runtime.machine import KERNELS

    doc = (Path(__file__).resolve().parent.parent / "docs" / "isa.md").read_text()
    assert set(PRICES) == set(COST_CLASSES) and set(_SHAPES) == set(SHAPE_RULES)
    for name, spec in OPCODES.items():
        assert spec.summary and spec.semantics and spec.unit, name
        assert set(spec.operands) <= {"dst", "src", "src|imm", "imm", "weight", "core"}, name
        assert spec.dtypes is None or len(spec.dtypes) == len(spec.operands), name
        assert spec.shape in SHAPE_RULES and spec.cost in COST_CLASSES, name
        assert name in KERNELS, f"{name} has no kernel in runtime/machine.py"
        assert f"#### {name}\n" in doc, f"{name} is missing from docs/isa.md"
    assert set(KERNELS) == set(OPCODES)


def test_transcendentals_are_priced_as_such():
    """probit used to be costed as a one-cycle add because the timing model kept its own list."""
    from nmc.isa.instructions import OPCODES

    slow = {"exp", "log", "sqrt", "erf", "gelu", "gelu_tanh", "tanh", "sigmoid", "recip", "div", "pow",
            "softmax", "probit", "elu", "softplus", "mod", "fmod"}  # mod and fmod divide
    assert {n for n, s in OPCODES.items() if s.cost == "vector_special"} == slow
