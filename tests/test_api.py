"""The public API at ``nmc``: compile, load, run, trials, stats, report, verify, and the
notebook habits (HTML display, DataFrames). Same numbers as the layers below it."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import nmc
from nmc.backends.target import load_target
from nmc.compiler.driver import compile_model
from nmc.runtime import SimOptions, execute
from nmc.runtime.machine import SimulationError

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
PRESETS = Path(nmc.__file__).resolve().parent / "backends" / "targets"


@pytest.fixture(scope="module")
def digits():
    data = np.load(EXAMPLES / "digits_test.npz")
    return data["x_image"][:40], data["y"][:40]


@pytest.fixture(scope="module")
def pcm_program():
    calibration = np.load(EXAMPLES / "digits_calibration.npz")["x_image"]
    return nmc.compile(EXAMPLES / "digits_cnn.onnx", "pcm", calibration=calibration)


def test_run_is_execute_with_the_program_s_own_target(pcm_program, digits):
    x, _ = digits
    got = pcm_program.run(x, time="1d", seed=3)
    compiled = compile_model(EXAMPLES / "digits_cnn.onnx", "pcm",
                             calibration=np.load(EXAMPLES / "digits_calibration.npz")["x_image"])
    want = execute(compiled.program, {"input": x}, compiled.target, SimOptions(time=86400.0, seed=3))
    np.testing.assert_array_equal(got["logits"], want["logits"])
    assert got.options == SimOptions(time=86400.0, seed=3)
    # the seed is one programmed chip, the time one reading of it: both change the outputs
    assert not np.array_equal(pcm_program.run(x, time="1d", seed=4)["logits"], got["logits"])
    assert not np.array_equal(pcm_program.run(x, time=3600, seed=3)["logits"], got["logits"])


def test_saved_program_runs_the_same_after_load(pcm_program, digits, tmp_path):
    x, _ = digits
    pcm_program.save(tmp_path / "p.nmc")
    loaded = nmc.load(tmp_path / "p.nmc")
    assert loaded.target == pcm_program.target and "mapping.json" in loaded.attachments
    np.testing.assert_array_equal(loaded.run(x, time="1d")["logits"], pcm_program.run(x, time="1d")["logits"])
    assert loaded.stats().to_dict() == pcm_program.stats().to_dict()


def test_a_program_for_a_target_file_runs_with_no_second_argument(tmp_path, digits):
    """The issue's case: before, execute() raised "unknown target 'pcm-bs'"."""
    x, _ = digits
    text = (PRESETS / "pcm.toml").read_text().replace('name = "pcm"', 'name = "pcm-bs"')
    (tmp_path / "pcm-bs.toml").write_text(text)
    nmc.compile(EXAMPLES / "digits_cnn.onnx", tmp_path / "pcm-bs.toml").save(tmp_path / "p.nmc")
    (tmp_path / "pcm-bs.toml").unlink()
    loaded = nmc.load(tmp_path / "p.nmc")
    assert loaded.target.name == "pcm-bs"
    assert loaded.run(x)["logits"].shape == (len(x), 10)
    with pytest.raises(SimulationError, match="'pcm-bs', which is not a preset.*nmc.load"):
        execute(loaded.program, {"input": x})  # the layer below says what to do instead


def test_trials_are_chips_times_conditions(pcm_program, digits):
    x, _ = digits
    runs = pcm_program.trials(x, 3, times=["1h", "1d"], seed=5)
    assert [(r.options.seed, r.options.time) for r in runs] == [
        (s, t) for s in (5, 6, 7) for t in (3600.0, 86400.0)]
    np.testing.assert_array_equal(runs[3]["logits"], pcm_program.run(x, time="1d", seed=6)["logits"])
    with pytest.raises(nmc.NmcError, match="at least one trial"):
        pcm_program.trials(x, 0)


@pytest.mark.parametrize("inputs, message", [
    ({"image": np.zeros((1, 1, 8, 8))}, "missing input; unknown image"),
    ({"input": np.zeros((1, 1, 8, 8)), "extra": np.zeros(1)}, "unknown extra"),
])
def test_inputs_that_do_not_match_are_named(pcm_program, inputs, message):
    with pytest.raises(nmc.NmcError, match=message):
        pcm_program.run(inputs)


@pytest.mark.parametrize("kwargs, message", [({"time": "soon"}, "not a duration"), ({"time": -1}, "negative"),
                                             ({"seed": -2}, "seed -2")])
def test_bad_run_conditions_are_user_errors(pcm_program, digits, kwargs, message):
    with pytest.raises(nmc.NmcError, match=message):
        pcm_program.run(digits[0], **kwargs)


def test_dataframes(pcm_program, digits):
    pd = pytest.importorskip("pandas")
    x, _ = digits
    out = pcm_program.run(x)
    frame = out.to_dataframe()
    assert list(frame.columns) == ["sample"] + [f"logits[{i}]" for i in range(10)]
    np.testing.assert_array_equal(frame[[f"logits[{i}]" for i in range(10)]].to_numpy(), out["logits"])
    runs = pcm_program.trials(x, 2, times=[0, "1d"])
    frame = runs.to_dataframe()
    assert len(frame) == 4 * len(x) and list(frame.columns[:4]) == ["run", "seed", "time_s", "sample"]
    last = frame[frame.run == 3]
    assert set(last.seed) == {1} and set(last.time_s) == {86400.0}
    np.testing.assert_array_equal(last["logits[7]"].to_numpy(), runs[3]["logits"][:, 7])
    assert isinstance(frame, pd.DataFrame)


def test_notebook_display(pcm_program, digits, tmp_path):
    x, y = digits
    assert "pcm" in pcm_program._repr_html_() and "<table>" in pcm_program._repr_html_()
    stats_html = pcm_program.stats()._repr_html_()
    assert "TOPS/W" in stats_html and "latency" in stats_html
    report = nmc.report(pcm_program, x, labels=y, times=["0", "1d"], trials=2)
    assert report["evaluation"]["trials"] == 2
    assert [c["time"] for c in report["evaluation"]["conditions"]] == ["0", "1d"]
    assert report._repr_html_().startswith("<iframe srcdoc=\"&lt;!DOCTYPE html&gt;")
    report.save(tmp_path / "r.html")
    report.save(tmp_path / "r.md")
    assert (tmp_path / "r.html").read_text().startswith("<!DOCTYPE html>")
    assert (tmp_path / "r.md").read_text() == report.render("md")
    with pytest.raises(nmc.NmcError, match="report formats"):
        report.save(tmp_path / "r.pdf")
    check = nmc.verify(EXAMPLES / "digits_cnn.onnx", x, "ideal", labels=y)
    assert check.ok and "<pre>" in check._repr_html_()


def test_report_of_a_program_file(pcm_program, tmp_path):
    pcm_program.save(tmp_path / "p.nmc")
    report = nmc.report(tmp_path / "p.nmc")
    assert report["program"] == "p.nmc" and report["evaluation"] is None
    assert report["mapping_source"].startswith("mapping.json")


def test_verify_through_the_api_is_verify_model(digits):
    x, y = digits
    check = nmc.verify(EXAMPLES / "digits_cnn.onnx", x, "pcm", labels=y, time="1d", trials=2)
    assert check.trials == 2 and check.target == load_target("pcm")
    assert check.outputs[0].accuracy_spread is not None


def test_loading_and_running_import_no_compiler_and_no_onnx(pcm_program, digits, tmp_path):
    pcm_program.save(tmp_path / "p.nmc")
    np.save(tmp_path / "x.npy", digits[0])
    code = ("import sys, numpy as np, nmc; p = nmc.load(sys.argv[1]); p.run(np.load(sys.argv[2]), time='1d'); "
            "p.stats(); bad = sorted(m for m in sys.modules if m.startswith(('nmc.compiler', 'onnx')));"
            "assert not bad, bad")
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "p.nmc"), str(tmp_path / "x.npy")],
                          capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr


def test_targets_lists_the_presets():
    assert {"ideal", "pcm", "rram", "acam"} <= set(nmc.targets())
