"""examples/drift_study.py keeps working: a reduced study (one trial, two times per device,
part of the test split) runs, prints its table, and its numbers point the way physics says."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers import load_example

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.fixture(scope="module")
def study():
    return load_example("drift_study")


@pytest.fixture(scope="module")
def results(study):
    data = np.load(EXAMPLES / "digits_test.npz")
    rows = study.conditions(pcm_times={"1 s": 1.0, "1 y": study.YEAR},
                            rram_times={"1 s": 1.0, "2 d": 2 * study.DAY})
    float_accuracy, results = study.run_study(EXAMPLES / "digits_cnn.onnx", data["x_image"][:150], data["y"][:150],
                                              rows, trials=1)
    by_key = {(r.condition.target, r.condition.time_label, r.condition.noise, r.condition.drift_compensation): r
              for r in results}
    return float_accuracy, results, by_key


def test_reduced_study_prints_every_condition(study, results):
    float_accuracy, rows, _ = results
    assert float_accuracy > 0.95
    table = study.format_table(float_accuracy, rows)
    assert len(table.splitlines()) == 4 + len(rows)
    assert "max rel. error" in table and "1 y" in table and "2 d" in table


def test_noise_free_runs_lose_only_quantisation_and_adc(results):
    float_accuracy, _, r = results
    for target in ("pcm", "rram"):
        base = r[(target, "-", False, None)]
        assert base.accuracy[0] >= float_accuracy - 0.05
        assert base.mean_rel_error[0] < r[(target, "1 s", True, None if target == "rram" else True)].mean_rel_error[0]


def test_pcm_drift_hurts_and_compensation_helps(results):
    _, _, r = results
    fresh = r[("pcm", "1 s", True, True)]
    year_comp, year_raw = r[("pcm", "1 y", True, True)], r[("pcm", "1 y", True, False)]
    assert year_raw.accuracy[0] <= year_comp.accuracy[0]          # compensation is never worse after a year
    assert year_raw.mean_rel_error[0] > year_comp.mean_rel_error[0]
    assert year_comp.mean_rel_error[0] > fresh.mean_rel_error[0]  # drift adds error even when compensated
    assert year_raw.accuracy[0] < fresh.accuracy[0]


def test_output_errors_definition(study):
    y_float = np.array([[1.0, -2.0], [0.5, 4.0]])
    y = y_float + np.array([[0.0, 1.0], [0.0, -2.0]])
    max_rel, mean_rel = study.output_errors(y, y_float)
    assert max_rel == pytest.approx(2.0 / 4.0)
    assert mean_rel == pytest.approx(0.75 / 1.875)
