"""The newcomer's example scripts keep working: reduced runs (``--quick``) of
examples/cnn_on_pcm.py and examples/compare_targets.py, checked for what they claim to show."""
from __future__ import annotations

from pathlib import Path

import pytest
from helpers import load_example

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _load(name: str):
    return load_example(name)


@pytest.mark.parametrize("name", ["cnn_on_pcm", "compare_targets"])
def test_docstring_says_what_and_how_long(name):
    doc = _load(name).__doc__
    assert f"python examples/{name}.py" in doc and " s (" in doc and "--quick" in doc


def test_cnn_on_pcm(tmp_path, capsys):
    figures = _load("cnn_on_pcm").main([str(tmp_path / "report.html"), "--quick"])
    out = capsys.readouterr().out
    assert "drift compensation on" in out and "1y" in out and "wrote" in out
    html = (tmp_path / "report.html").read_text()
    assert html.startswith("<!DOCTYPE html>") and "<svg" in html and "1y" in html
    assert figures["program"] == tmp_path / "digits_cnn_pcm.nmc" and figures["program"].is_file()
    fresh_label, fresh, _ = figures["rows"][0]
    year_label, year_on, year_off = figures["rows"][-1]
    assert (fresh_label, year_label) == ("1s", "1y")
    assert fresh["mean"] > 0.8 * figures["float_accuracy"]        # right after programming: close to float
    assert year_off["mean"] < year_on["mean"] <= fresh["mean"]   # drift hurts; compensation recovers part


def test_cnn_on_pcm_refuses_a_missing_directory(tmp_path, capsys):
    with pytest.raises(SystemExit):
        _load("cnn_on_pcm").main([str(tmp_path / "absent" / "r.html"), "--quick"])
    assert "no such directory" in capsys.readouterr().err


def test_compare_targets(capsys):
    example = _load("compare_targets")
    example.main(["--quick"])
    out = capsys.readouterr().out
    from nmc.backends.target import preset_names

    for name in preset_names():
        assert f"\n{name} " in out
    for column in ("accuracy", "rel. error", "latency", "throughput", "energy/inf.", "TOPS/W", "crossbars"):
        assert column in out


def test_compare_targets_rows():
    import numpy as np

    example = _load("compare_targets")
    data = np.load(EXAMPLES / "digits_test.npz")
    x, y = data["x_image"], data["y"]
    float_accuracy, rows = example.compare(EXAMPLES / "digits_cnn.onnx", x[100:140], y[100:140], x[:100],
                                           ["ideal", "sram-digital", "no-such-chip"])
    ideal, digital, missing = rows
    assert ideal.accuracy == float_accuracy and ideal.rel_error == 0.0
    assert ideal.summary["crossbars_used"] == 0 and digital.summary["crossbars_used"] > 0
    assert digital.summary["analog_mac_fraction"] == 0.0 and 0 < digital.rel_error < 0.2
    assert missing.summary is None and "unknown target" in missing.problem
    assert "cannot run: unknown target" in example.format_table(float_accuracy, rows)
