"""The ``nmc`` command line: compile/run/verify/targets end to end, and every user error as one
line ``nmc: error: ...`` with exit code 2 and no partial output file."""
from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import onnx
import pytest
from helpers import make_model, run_ort
from onnx import helper

import nmc
import nmc.compiler.cli.commands
import nmc.compiler.driver
import nmc.compiler.verify
from nmc.compiler.cli import main
from nmc.compiler.errors import CompileError
from nmc.compiler.ir.verify import VerifyError
from nmc.isa import load_program

TARGETS = Path(nmc.__file__).resolve().parent / "backends" / "targets"  # the presets nmc ships
RNG = np.random.default_rng(0)


def _classifier() -> onnx.ModelProto:
    """Conv → Relu → Flatten → Gemm: a small batched model with one 2-D output."""
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c"], pads=[1, 1, 1, 1], name="conv"),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("Flatten", ["r"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "w2", "b2"], ["y"], transB=1, name="fc"),
    ]
    weights = {"w1": RNG.standard_normal((4, 2, 3, 3)).astype(np.float32),
               "b1": RNG.standard_normal(4).astype(np.float32),
               "w2": RNG.standard_normal((5, 4 * 6 * 6)).astype(np.float32),
               "b2": RNG.standard_normal(5).astype(np.float32)}
    return make_model(nodes, {"x": ["N", 2, 6, 6]}, {"y": ["N", 5]}, weights)


def _two_outputs() -> onnx.ModelProto:
    nodes = [helper.make_node("Add", ["a", "b"], ["s"], name="add"),
             helper.make_node("Mul", ["a", "b"], ["p"], name="mul")]
    return make_model(nodes, {"a": ["N", 3], "b": ["N", 3]}, {"s": ["N", 3], "p": ["N", 3]})


@pytest.fixture
def files(tmp_path):
    """A model, a batch of inputs and labels on disk."""
    model = tmp_path / "model.onnx"
    onnx.save(_classifier(), str(model))
    x = RNG.standard_normal((7, 2, 6, 6)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "labels.npy", RNG.integers(0, 5, 7))
    np.savez(tmp_path / "data.npz", images=x, y=RNG.integers(0, 5, 7))
    return tmp_path


def _error(capsys, argv, *fragments) -> str:
    """Run ``argv``, expect exit code 2 and one ``nmc: error:`` line holding ``fragments``."""
    assert main(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("nmc: error: "), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert "Traceback" not in captured.err
    return lines[0]


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith(".tmp-"))


# ----------------------------------------------------------------------------- the main job
def test_compile_run_verify(files, capsys):
    out = files / "model.nmc"
    assert main(["compile", str(files / "model.onnx"), "--asm", str(files / "model.s"), "--dump-ir"]) == 0
    text = capsys.readouterr().out
    assert "graph (batched)" in text                      # --dump-ir
    for field in ("target        ideal", "layers", "instructions", "constants", "buffers"):
        assert field in text
    program, attachments = load_program(out)              # default output: MODEL.nmc
    assert "[chip]" in attachments["target.toml"]         # the program carries its target
    assert (files / "model.s").read_text().startswith(".nmc 2\n")

    assert main(["run", str(out), "--input", str(files / "x.npy"), "-o", str(files / "y.npy")]) == 0
    text = capsys.readouterr().out
    assert "y: float32[7,5]" in text and "top-1 classes of 7 row(s)" in text
    y = np.load(files / "y.npy")
    expected = run_ort(onnx.load(str(files / "model.onnx")), {"x": np.load(files / "x.npy")})[0]
    np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-4)

    assert main(["verify", str(files / "model.onnx"), "--input", f"x={files / 'data.npz'}:images",
                 "--labels", str(files / "labels.npy")]) == 0
    text = capsys.readouterr().out
    assert "PASS" in text and "100.00%" in text
    assert _leftovers(files) == []


def test_run_input_forms_and_npz_output(tmp_path, capsys):
    onnx.save(_two_outputs(), str(tmp_path / "m.onnx"))
    assert main(["compile", str(tmp_path / "m.onnx"), "-o", str(tmp_path / "m.nmc")]) == 0
    a, b = np.ones((2, 3), np.float32), np.full((2, 3), 2, np.float32)
    np.save(tmp_path / "a.npy", a)
    np.save(tmp_path / "b.npy", b)
    np.savez(tmp_path / "ab.npz", a=a, b=b)
    for inputs in (["--input", f"a={tmp_path / 'a.npy'}", "--input", f"b={tmp_path / 'b.npy'}"],
                   ["--input", str(tmp_path / "ab.npz")]):
        assert main(["run", str(tmp_path / "m.nmc"), *inputs, "-o", str(tmp_path / "out.npz")]) == 0
        with np.load(tmp_path / "out.npz") as out:
            np.testing.assert_array_equal(out["s"], a + b)
            np.testing.assert_array_equal(out["p"], a * b)
    capsys.readouterr()
    _error(capsys, ["run", str(tmp_path / "m.nmc"), "--input", str(tmp_path / "ab.npz"), "-o",
                    str(tmp_path / "one.npy")], "2 outputs", ".npz")
    _error(capsys, ["run", str(tmp_path / "m.nmc"), "--input", str(tmp_path / "a.npy")],
           "several inputs", "NAME=")
    assert not (tmp_path / "one.npy").exists() and _leftovers(tmp_path) == []


def test_verify_fails_outside_tolerance(files, capsys, monkeypatch):
    """A program whose outputs drift from onnxruntime makes ``verify`` exit with code 1."""
    real_execute = nmc.compiler.verify.execute

    def drifting(*args, **kwargs):
        return {name: value + 0.5 for name, value in real_execute(*args, **kwargs).items()}

    monkeypatch.setattr(nmc.compiler.verify, "execute", drifting)
    assert main(["verify", str(files / "model.onnx"), "--input", str(files / "x.npy")]) == 1
    out = capsys.readouterr().out
    assert "FAIL: output 'y': relative error" in out and "exceeds the target's rtol" in out


def test_targets(capsys):
    assert main(["targets"]) == 0
    assert "ideal" in capsys.readouterr().out


# ----------------------------------------------------------------------------- exit codes
@pytest.mark.parametrize("raised,code,line", [
    (CompileError("the model cannot be compiled"), 2, "nmc: error: the model cannot be compiled"),
    (PermissionError(13, "Permission denied", "m.nmc"), 2, "nmc: error: m.nmc: Permission denied"),
    (VerifyError("node n0 (ONNX Gemm 'fc'): reads 'nowhere' after pass demo"), 3,
     "nmc: internal error: the graph IR broke an invariant (a bug in nmc): node n0 (ONNX Gemm 'fc'): reads "
     "'nowhere' after pass demo (run with --debug for the traceback, and please report it)"),
    (ZeroDivisionError("division by zero"), 3,
     "nmc: internal error: ZeroDivisionError: division by zero (run with --debug for the traceback, and please "
     "report it)"),
], ids=["user-error", "os-error", "verify-error", "unexpected"])
def test_exit_codes(files, capsys, monkeypatch, raised, code, line):
    """A user error exits 2; a broken IR invariant (``VerifyError``, an ``NmcError`` raised for a
    compiler bug) and any other unexpected exception exit 3; each is one line on stderr. (``verify``
    outside the tolerance exits 1: ``test_verify_fails_outside_tolerance``.)"""
    def compile_model(*args, **kwargs):
        raise raised

    monkeypatch.setattr(nmc.compiler.driver, "compile_model", compile_model)
    monkeypatch.setattr(nmc.compiler.verify, "compile_model", compile_model)
    for command in (["compile", str(files / "model.onnx")],
                    ["verify", str(files / "model.onnx"), "--input", str(files / "x.npy")]):
        assert main(command) == code
        captured = capsys.readouterr()
        assert captured.err.splitlines() == [line] and captured.out == ""
    assert not (files / "model.nmc").exists()


def test_timing_error_is_a_user_error(tmp_path, capsys):
    """A hand-written program whose cores deadlock cannot be costed: exit code 2, one line."""
    from test_runtime import PIPELINE

    from nmc.isa.asm import parse_program
    from nmc.isa.container import save_program

    save_program(parse_program(PIPELINE.replace("    send $1, a[0; 4:1]\n", "")), tmp_path / "dead.nmc")
    _error(capsys, ["report", str(tmp_path / "dead.nmc"), "-f", "json", "-o", "-"], "the cores deadlock")


# ----------------------------------------------------------------------------- user errors
def test_missing_model_file(tmp_path, capsys):
    _error(capsys, ["compile", str(tmp_path / "nope.onnx")], "nope.onnx", "no such model file")


def test_garbage_model(tmp_path, capsys):
    (tmp_path / "junk.onnx").write_bytes(b"\x00\xffthis is not a protobuf\x13\x37" * 10)
    _error(capsys, ["compile", str(tmp_path / "junk.onnx")], "junk.onnx")
    assert not (tmp_path / "junk.nmc").exists()


def test_unsupported_op(tmp_path, capsys):
    model = make_model([helper.make_node("Hardmax", ["x"], ["y"], name="my_hardmax")],
                       {"x": ["N", 4]}, {"y": ["N", 4]})
    onnx.save(model, str(tmp_path / "hardmax.onnx"))
    line = _error(capsys, ["compile", str(tmp_path / "hardmax.onnx"), "-o", str(tmp_path / "h.nmc")],
                  "my_hardmax", "Hardmax", "supported:", "Conv", "Gemm")
    assert "not supported" in line
    assert not (tmp_path / "h.nmc").exists() and _leftovers(tmp_path) == []


def test_unknown_target(files, capsys):
    _error(capsys, ["compile", str(files / "model.onnx"), "--target", "quantum"],
           "unknown target 'quantum'", "ideal")


def test_target_with_bad_field(files, capsys):
    bad = (TARGETS / "ideal.toml").read_text().replace("clock_ghz = 1.0", 'clock_ghz = "fast"')
    (files / "bad.toml").write_text(bad)
    _error(capsys, ["compile", str(files / "model.onnx"), "--target", str(files / "bad.toml")],
           "bad.toml", "chip.clock_ghz")
    (files / "typo.toml").write_text(bad.replace('clock_ghz = "fast"', "clock_ghz = 1.0\nclok = 2"))
    _error(capsys, ["verify", str(files / "model.onnx"), "--input", str(files / "x.npy"), "--target",
                    str(files / "typo.toml")], "unknown field chip.clok")


def test_corrupt_and_truncated_program(files, capsys):
    assert main(["compile", str(files / "model.onnx"), "-o", str(files / "good.nmc")]) == 0
    capsys.readouterr()
    data = (files / "good.nmc").read_bytes()
    (files / "truncated.nmc").write_bytes(data[: len(data) // 2])
    _error(capsys, ["run", str(files / "truncated.nmc"), "--input", str(files / "x.npy")],
           "truncated.nmc", "corrupt or truncated")
    # same zip structure, one byte of the assembly changed: the checksum catches it
    with zipfile.ZipFile(files / "good.nmc") as src, zipfile.ZipFile(files / "tampered.nmc", "w") as dst:
        for item in src.infolist():
            content = src.read(item)
            if item.filename == "program.s":
                content = content.replace(b"relu", b"tanh", 1)
            dst.writestr(item, content)
    _error(capsys, ["run", str(files / "tampered.nmc"), "--input", str(files / "x.npy")], "checksum mismatch")
    _error(capsys, ["run", str(files / "missing.nmc"), "--input", str(files / "x.npy")], "no such program file")


def test_wrong_input_shape(files, capsys):
    assert main(["compile", str(files / "model.onnx")]) == 0
    capsys.readouterr()
    np.save(files / "wrong.npy", np.zeros((7, 2, 5, 6), np.float32))
    _error(capsys, ["run", str(files / "model.nmc"), "--input", str(files / "wrong.npy"), "-o", str(files / "y.npy")],
           "input 'x' has shape [7, 2, 5, 6], expected ['N', 2, 6, 6]")
    assert not (files / "y.npy").exists() and _leftovers(files) == []
    _error(capsys, ["verify", str(files / "model.onnx"), "--input", str(files / "wrong.npy")], "input 'x' has shape")


def test_bad_input_files_and_names(files, capsys):
    assert main(["compile", str(files / "model.onnx")]) == 0
    capsys.readouterr()
    (files / "bad.npy").write_bytes(b"not numpy at all")
    program = str(files / "model.nmc")
    _error(capsys, ["run", program, "--input", str(files / "bad.npy")], "bad.npy", "not a readable")
    _error(capsys, ["run", program, "--input", str(files / "absent.npy")], "absent.npy", "no such file")
    _error(capsys, ["run", program, "--input", f"z={files / 'x.npy'}"], "unknown input 'z'", "x")
    _error(capsys, ["run", program, "--input", f"{files / 'data.npz'}:nothing"], "no array 'nothing'", "images")
    _error(capsys, ["run", program, "--input", str(files / "data.npz")], "images, y", "not named after", ":KEY")
    _error(capsys, ["run", program, "--input", str(files / "x.npy"), "-o", str(files / "no" / "y.npy")],
           "does not exist")
    _error(capsys, ["verify", str(files / "model.onnx"), "--input", str(files / "x.npy"), "--labels",
                    f"{files / 'data.npz'}:images"], "has shape [7, 2, 6, 6]", "one class index per row")


def test_unknown_pass_and_option(files, capsys):
    model = str(files / "model.onnx")
    _error(capsys, ["compile", model, "-p", "fold-batchnorm{nope=1}"], "fold-batchnorm", "no option 'nope'")
    _error(capsys, ["compile", model, "-p", "no-such-pass"], "unknown pass 'no-such-pass'", "fold-batchnorm")
    _error(capsys, ["compile", model, "-p", "fold-batchnorm{"], "bad pass option")


def test_debug_shows_traceback(tmp_path, capsys):
    assert main(["--debug", "compile", str(tmp_path / "nope.onnx")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and err.strip().splitlines()[-1].startswith("nmc: error: ")
    assert main(["compile", str(tmp_path / "nope.onnx"), "--debug"]) == 2
    assert "Traceback" in capsys.readouterr().err


def test_usage_error_exit_code(capsys):
    assert main(["compile"]) == 2
    assert main([]) == 2
    assert main(["--help"]) == 0
    capsys.readouterr()


def test_subprocess_exit_code_and_stderr(tmp_path):
    """The real process: exit status 2 and a single error line, no traceback."""
    done = subprocess.run([sys.executable, "-m", "nmc.compiler.cli", "run", str(tmp_path / "gone.nmc"),
                           "--input", str(tmp_path / "x.npy")], capture_output=True, text=True,
                          cwd=tmp_path, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [f"nmc: error: {tmp_path / 'gone.nmc'}: no such program file"]
    assert done.stdout == ""


def test_program_carries_its_target(files, capsys):
    """A program compiled for a target file runs after that file is gone."""
    text = (TARGETS / "ideal.toml").read_text().replace('name = "ideal"', 'name = "my-chip"')
    (files / "my_chip.toml").write_text(text)
    assert main(["compile", str(files / "model.onnx"), "--target", str(files / "my_chip.toml"),
                 "-o", str(files / "m.nmc")]) == 0
    assert "target        my-chip" in capsys.readouterr().out
    (files / "my_chip.toml").unlink()
    program, attachments = load_program(files / "m.nmc")
    assert program.target == "my-chip" and attachments["target.toml"] == text
    assert main(["run", str(files / "m.nmc"), "--input", str(files / "x.npy"), "--seed", "3", "--no-noise"]) == 0


# ----------------------------------------------------------------------------- device studies
def test_calibration_flag(files, capsys):
    """``--calibration`` on compile and verify: fixed input scales, ADC ranges from the samples."""
    model, cal = str(files / "model.onnx"), f"{files / 'data.npz'}:images"
    assert main(["compile", model, "--target", "pcm", "--calibration", cal, "-o", str(files / "cal.nmc")]) == 0
    assert "calibration   7 sample(s); ADC ranges from calibration" in capsys.readouterr().out
    from nmc.isa.asm import format_program

    assert "rmax" not in format_program(load_program(files / "cal.nmc")[0])  # no per-sample input scale
    assert main(["verify", model, "--target", "pcm", "--input", str(files / "x.npy"), "--calibration",
                 str(files / "x.npy"), "--no-noise"]) in (0, 1)
    assert "target pcm" in capsys.readouterr().out
    _error(capsys, ["compile", model, "--calibration", str(files / "data.npz")], "images, y", "not named after")
    _error(capsys, ["compile", model, "--calibration", f"{files / 'data.npz'}:y"], "calibration input 'x'",
           "has shape")
    _error(capsys, ["compile", model, "--calibration", str(files / "absent.npy")], "absent.npy", "no such file")


@pytest.mark.parametrize("text,seconds", [("250", 250.0), ("250s", 250.0), ("1.5", 1.5), ("10min", 600.0),
                                          ("3h", 10800.0), ("1d", 86400.0), ("2w", 1209600.0),
                                          ("1y", 31557600.0), ("1e3", 1000.0), (" 2 H ", 7200.0)])
def test_time_units(text, seconds):
    from nmc.compiler.cli import parse_duration

    assert parse_duration(text) == seconds


def test_trials_and_time(files, capsys):
    """``--trials N`` runs seeds SEED..SEED+N-1 and reports the spread; ``--time`` takes units."""
    assert main(["compile", str(files / "model.onnx"), "--target", "pcm", "-o", str(files / "m.nmc")]) == 0
    capsys.readouterr()
    run = ["run", str(files / "m.nmc"), "--input", str(files / "x.npy"), "--labels", str(files / "labels.npy")]
    assert main(run + ["--trials", "3", "--seed", "5", "--time", "1d", "-o", str(files / "y.npy")]) == 0
    out = capsys.readouterr().out
    assert "3 trial(s), seeds 5..7: mean ± std [min, max]" in out
    assert "y: accuracy " in out and "y: rel err vs trial 1 " in out and "top-1 agreement" in out
    assert "(trial 1, seed 5)" in out
    single = np.load(files / "y.npy")
    assert main(run + ["--seed", "5", "--time", "86400", "-o", str(files / "y1.npy")]) == 0
    np.testing.assert_array_equal(np.load(files / "y1.npy"), single)   # trial 1 is seed 5 at one day
    capsys.readouterr()
    assert main(["verify", str(files / "model.onnx"), "--target", "pcm", "--input", str(files / "x.npy"),
                 "--labels", str(files / "labels.npy"), "--trials", "2", "--time", "3h"]) in (0, 1)
    out = capsys.readouterr().out
    assert "2 trials (seeds 0..1): mean ± std [min, max]; the tolerance applies to the mean" in out
    assert " ± " in out
    for argv in (run, ["verify", str(files / "model.onnx"), "--input", str(files / "x.npy")]):
        _error(capsys, argv + ["--time", "soon"], "--time 'soon'", "not a duration", "1d")
        _error(capsys, argv + ["--time", "3 parsecs"], "not a duration")
        _error(capsys, argv + ["--time=-1d"], "cannot be negative")
        _error(capsys, argv + ["--trials", "0"], "--trials 0", "at least one")
    assert main(run + ["--trials", "two"]) == 2    # argparse: not an integer
    capsys.readouterr()


def test_run_prints_timing_and_writes_stats(files, capsys):
    import json

    from nmc.backends.target import load_target
    from nmc.runtime.timing import estimate

    out = files / "model.nmc"
    assert main(["compile", str(files / "model.onnx"), "--target", "pcm", "-o", str(out)]) == 0
    capsys.readouterr()
    stats_path = files / "stats.json"
    assert main(["run", str(out), "--input", str(files / "x.npy"), "--stats", str(stats_path)]) == 0
    text = capsys.readouterr().out
    for field in ("latency", "throughput", "energy", "TOPS/W", "utilisation"):
        assert field in text
    stats = json.loads(stats_path.read_text())
    program, _ = load_program(out)
    expected = estimate(program, load_target("pcm")).to_dict()
    assert stats["latency_cycles"] == expected["latency_cycles"]
    assert stats["energy_pj"]["total"] == pytest.approx(sum(v for k, v in stats["energy_pj"].items() if k != "total"))
    _error(capsys, ["run", str(out), "--input", str(files / "x.npy"), "--stats", str(files / "no" / "s.json")],
           "no")


def test_mixed_up_files_and_bad_values(files, capsys):
    """The usual slips each give one line naming the file or flag and what to do instead."""
    model = str(files / "model.onnx")
    assert main(["compile", model, "-o", str(files / "m.nmc")]) == 0
    capsys.readouterr()
    program, x = str(files / "m.nmc"), str(files / "x.npy")
    _error(capsys, ["compile", str(files)], "is a directory, not an ONNX model")
    _error(capsys, ["compile", program, "-o", str(files / "z.nmc")], "compiled nmc program", "nmc run")
    _error(capsys, ["verify", program, "--input", x], "compiled nmc program")
    _error(capsys, ["run", model, "--input", x], "is an ONNX model, not a compiled program", "nmc compile")
    _error(capsys, ["report", model], "is an ONNX model")
    _error(capsys, ["run", str(files), "--input", x], "is a directory, not a .nmc program")
    _error(capsys, ["compile", model, "--target", str(files)], "is a directory")
    _error(capsys, ["compile", model, "--target", model], "not a TOML target file")
    # output paths: a directory, or a place no file can be created
    _error(capsys, ["compile", model, "-o", str(files)], "is a directory; give a file name")
    _error(capsys, ["run", program, "--input", x, "--stats", str(files)], "is a directory")
    _error(capsys, ["report", program, "-o", str(files)], "is a directory")
    (files / "plain").write_text("a file, not a directory")
    _error(capsys, ["run", program, "--input", x, "-o", str(files / "plain" / "y.npy")], "does not exist")
    # arrays: none, not numbers, labels that are not one class per row
    np.savez(files / "empty.npz")
    np.save(files / "words.npy", np.full((7, 2, 6, 6), "a"))
    np.save(files / "onehot.npy", np.eye(5)[RNG.integers(0, 5, 7)])
    _error(capsys, ["run", program, "--input", str(files / "empty.npz")], "empty.npz holds no arrays")
    _error(capsys, ["run", program, "--input", str(files / "words.npy")], "holds <U1 values", "numbers")
    _error(capsys, ["run", program, "--input", x, "--labels", str(files / "onehot.npy")], "shape [7, 5]",
           "argmax")
    np.save(files / "short.npy", np.arange(3))
    _error(capsys, ["report", program, "--input", x, "--labels", str(files / "short.npy"), "-o",
                    str(files / "r.json")], "labels hold 3 entries", "7 rows")
    # flags
    _error(capsys, ["run", program, "--input", x, "--seed", "-1"], "--seed -1")
    _error(capsys, ["run", program, "--input", x, "--time", "1e400"], "too large")
    _error(capsys, ["compile", model, "-p", "tile-mapping{rows}"], "option rows needs a value")
    _error(capsys, ["compile", model, "-p", "tile-mapping{rows=many}"], "rows='many' is not an integer")
    report = ["report", program, "--input", x, "--labels", str(files / "labels.npy"), "-o", str(files / "r.json")]
    _error(capsys, report + ["--times", "soon"], "--times 'soon'", "not a duration")
    _error(capsys, report + ["--times", ","], "one or more times")
    _error(capsys, report + ["--times", "1h,-1d"], "cannot be negative")
    _error(capsys, report + ["--seed", "-2"], "--seed -2")
    _error(capsys, report + ["--model", str(files)], "is a directory")
    assert not (files / "r.json").exists() and _leftovers(files) == []


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root may write anywhere")
def test_unwritable_directory(files, capsys):
    locked = files / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        _error(capsys, ["compile", str(files / "model.onnx"), "-o", str(locked / "m.nmc")], "cannot write")
    finally:
        locked.chmod(0o700)


def test_broken_pipe_is_quiet(monkeypatch, capsys):
    """``nmc targets | head -1``: the reader goes away; no error line, no traceback."""
    def gone(args):
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(nmc.compiler.cli.commands, "cmd_targets", gone)  # build_parser picks it up
    assert main(["targets"]) == 0
    assert capsys.readouterr().err == ""


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
def test_output_files_get_the_mode_of_a_new_file(files, capsys):
    """Written through a private temporary file, outputs still end up with the usual mode."""
    umask = os.umask(0o022)
    try:
        assert main(["compile", str(files / "model.onnx"), "-o", str(files / "m.nmc"), "--asm",
                     str(files / "m.s")]) == 0
        assert main(["run", str(files / "m.nmc"), "--input", str(files / "x.npy"), "-o", str(files / "y.npy")]) == 0
    finally:
        os.umask(umask)
    capsys.readouterr()
    for name in ("m.nmc", "m.s", "y.npy"):
        assert (files / name).stat().st_mode & 0o777 == 0o644, name
