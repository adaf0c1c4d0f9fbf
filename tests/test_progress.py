"""Progress bars: drawn on a terminal only, erased before anything else is printed, fed by
callbacks from the compiler and the runtime (which imports nothing of the compiler)."""
from __future__ import annotations

import functools
import io

import numpy as np
import onnx
import pytest
from helpers import make_model
from onnx import helper

import nmc.compiler.cli.commands
from nmc.compiler import compile_model
from nmc.compiler.cli import main
from nmc.compiler.progress import Progress, part
from nmc.runtime import execute

RNG = np.random.default_rng(0)


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _model() -> onnx.ModelProto:
    nodes = [helper.make_node("Gemm", ["x", "w", "b"], ["h"], transB=1, name="fc1"),
             helper.make_node("Relu", ["h"], ["r"], name="relu"),
             helper.make_node("Gemm", ["r", "w2", "b2"], ["y"], transB=1, name="fc2")]
    weights = {"w": RNG.standard_normal((16, 8)).astype(np.float32), "b": np.zeros(16, np.float32),
               "w2": RNG.standard_normal((4, 16)).astype(np.float32), "b2": np.zeros(4, np.float32)}
    return make_model(nodes, {"x": ["N", 8]}, {"y": ["N", 4]}, weights)


def test_bar_draws_on_a_terminal_and_erases_itself(monkeypatch):
    monkeypatch.delenv("TERM", raising=False)
    tty = FakeTerminal()
    with Progress("working", stream=tty, delay=0, interval=0) as bar:
        bar(1, 4, "first")
        bar.part(1, 2, "half")(1, 2, "inner")
    text = tty.getvalue()
    assert "working" in text and "25%" in text and "75%" in text and "half: inner" in text
    assert text.endswith("\r\x1b[K")          # the line is clean for whatever comes next


def test_bar_stays_silent_off_a_terminal_when_quiet_or_quick():
    pipe = io.StringIO()
    with Progress("working", stream=pipe, delay=0) as bar:
        bar(1, 2)
    quiet, quick = FakeTerminal(), FakeTerminal()
    with Progress("working", stream=quiet, enabled=False, delay=0) as bar:
        bar(1, 2)
    with Progress("working", stream=quick) as bar:  # default delay: work this short shows nothing
        bar(1, 2)
    assert pipe.getvalue() == quiet.getvalue() == quick.getvalue() == ""


def test_part_maps_a_step_onto_its_share():
    seen = []
    sub = part(lambda done, total, note="": seen.append((done, total, note)), 2, 4, "trial 3/4")
    sub(5, 10, "running")
    assert seen == [(2.5, 4, "trial 3/4: running")]
    assert part(None, 0, 1) is None


def test_compiler_and_runtime_report_progress():
    stages = []
    compiled = compile_model(_model(), "pcm", progress=lambda done, total, note="": stages.append((done, total, note)))
    names = [note for _, _, note in stages]
    assert names[0] == "frontend" and names[-1] == "done" and "tile-mapping" in names and "codegen" in names
    assert stages[-1][0] == stages[-1][1]
    assert [done for done, _, _ in stages] == sorted(done for done, _, _ in stages)

    ticks = []
    x = RNG.standard_normal((3, 8)).astype(np.float32)
    with_bar = execute(compiled.program, {"x": x}, compiled.target,
                       progress=lambda done, total, note="": ticks.append((done, total, note)))
    without = execute(compiled.program, {"x": x}, compiled.target)
    np.testing.assert_array_equal(with_bar["y"], without["y"])        # reporting changes nothing
    total = ticks[0][1]
    assert {note for _, _, note in ticks} == {"programming crossbars", "running"}
    assert all(t == total for _, t, _ in ticks) and 0 < ticks[-1][0] <= total
    assert [d for d, _, _ in ticks] == sorted(d for d, _, _ in ticks)


@pytest.fixture
def program(tmp_path, capsys):
    onnx.save(_model(), str(tmp_path / "m.onnx"))
    np.save(tmp_path / "x.npy", RNG.standard_normal((5, 8)).astype(np.float32))
    assert main(["compile", str(tmp_path / "m.onnx"), "--target", "pcm", "-o", str(tmp_path / "m.nmc")]) == 0
    capsys.readouterr()
    return tmp_path


def test_captured_output_holds_no_bar(program, capsys):
    assert main(["run", str(program / "m.nmc"), "-i", str(program / "x.npy"), "--trials", "3"]) == 0
    captured = capsys.readouterr()
    assert captured.err == "" and "\r" not in captured.out


def test_error_after_a_bar_is_one_clean_line(program, capsys, monkeypatch):
    """On a terminal the bar is erased before the error, which stays one line; -q draws nothing."""
    tty = FakeTerminal()
    monkeypatch.setattr(nmc.compiler.cli.commands.sys, "stderr", tty)
    monkeypatch.setattr(nmc.compiler.cli.commands, "Progress", functools.partial(Progress, stream=tty, delay=0, interval=0))
    np.save(program / "y.npy", np.arange(4))  # 4 labels for 5 rows: an error after the runs
    argv = ["run", str(program / "m.nmc"), "-i", str(program / "x.npy"), "--labels", str(program / "y.npy")]
    assert main(argv) == 2
    text = tty.getvalue()
    assert "running" in text and "\r\x1b[K" in text
    after_bar = text.rsplit("\r\x1b[K", 1)[1]
    assert after_bar.splitlines() == ["nmc: error: labels hold 4 entries but output 'y' has 5 rows"]

    tty.seek(0)
    tty.truncate()
    assert main(argv + ["--quiet"]) == 2
    assert tty.getvalue().splitlines() == ["nmc: error: labels hold 4 entries but output 'y' has 5 rows"]
    capsys.readouterr()
