"""The generated parts of the documentation are up to date with the code."""
from __future__ import annotations

from nmc.compiler.frontend import docs as ops_docs
from nmc.compiler.frontend.ops import OP_INFO, supported_ops
from nmc.isa.docs import DEFAULT_PATH, render_reference, update
from nmc.isa.instructions import OPCODES


def test_isa_md_is_up_to_date():
    text = DEFAULT_PATH.read_text()
    assert update(text) == text, "docs/isa.md is out of date with isa/instructions.py: run `python -m nmc.isa.docs`"


def test_every_opcode_has_an_entry():
    reference = render_reference()
    for name, spec in OPCODES.items():
        assert f"\n#### {name}\n" in reference
        assert f"[`{name}`](#{name})" in reference


def test_ops_md_is_up_to_date():
    text = ops_docs.DEFAULT_PATH.read_text()
    assert ops_docs.update(text) == text, \
        "docs/ops.md is out of date with the @converter records: run `python -m nmc.compiler.frontend.docs`"


def test_every_supported_op_has_a_row_with_its_unit():
    reference = ops_docs.render_reference()
    for op in supported_ops():
        info = OP_INFO[op]
        assert info.unit in ("crossbar", "vector", "CAM", "crossbar or vector"), op
        assert f"\n| {op} | {info.opsets} | {info.unit} |" in reference or \
            f"\n| {op} (ai.onnx.ml) | {info.opsets} | {info.unit} |" in reference, op
