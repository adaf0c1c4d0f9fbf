"""A faster runtime changes nothing but speed: outputs against what the implementation of the
commit in ``tests/data/noise_baseline.json`` computed (``tests/data/make_baseline.py``)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import nmc

DATA = Path(__file__).resolve().parent / "data"
EXAMPLES = DATA.parents[1] / "examples"
BASELINE = np.load(DATA / "baseline_outputs.npz")
NOISE = json.loads((DATA / "noise_baseline.json").read_text())
KEYS = {"digits_cnn": "x_image", "digits_mlp": "x_flat", "tiny_transformer": "x_tokens"}


@pytest.fixture(scope="module")
def data():
    return np.load(EXAMPLES / "digits_test.npz")


@pytest.fixture(scope="module")
def calibration():
    return np.load(EXAMPLES / "digits_calibration.npz")


@pytest.mark.parametrize("case", sorted(BASELINE.files))
def test_outputs_as_before(case, data, calibration):
    """``ideal`` within 1e-6 (relative to the output's scale) of before; digital targets equal."""
    model, target = case.split("/")
    key = KEYS[model]
    program = nmc.compile(EXAMPLES / f"{model}.onnx", target,
                          calibration=None if target == "ideal" else calibration[key])
    y = next(iter(program.run(data[key][:64]).values()))
    before = BASELINE[case]
    if target == "ideal":
        np.testing.assert_allclose(y, before, rtol=0, atol=1e-6 * np.abs(before).max())
    else:
        np.testing.assert_array_equal(y, before)


def _same_distribution(now: list[float], before: list[float], resolution: float) -> None:
    """Means apart by at most 4 standard errors of their difference (plus the metric's
    resolution), spreads within a factor 2.5 (20 seeds: the ratio of two sample standard
    deviations stays within about 1.7 in 99 % of draws of one distribution)."""
    a, b = np.asarray(now), np.asarray(before)
    se = np.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b))
    assert abs(a.mean() - b.mean()) <= 4 * se + resolution, (a.mean(), b.mean(), se)
    sa, sb = a.std(ddof=1), b.std(ddof=1)
    if max(sa, sb) > resolution:
        assert 1 / 2.5 <= (sa + resolution) / (sb + resolution) <= 2.5, (sa, sb)


@pytest.mark.slow
@pytest.mark.parametrize("condition", sorted(NOISE["conditions"]))
def test_noise_statistics_as_before(condition, data, calibration):
    """On noisy targets, accuracy and mean |error| over 20 seeds come from the same distribution."""
    model_target, time = condition.split("@")
    model, target = model_target.split("/")
    key = KEYS[model]
    x, labels = data[key], data["y"]
    ideal = next(iter(nmc.compile(EXAMPLES / f"{model}.onnx", "ideal").run(x).values()))
    program = nmc.compile(EXAMPLES / f"{model}.onnx", target, calibration=calibration[key])
    acc, err = [], []
    for seed in range(NOISE["seeds"]):
        y = next(iter(program.run(x, time=time, seed=seed).values()))
        acc.append(float((y.argmax(1) == labels).mean()))
        err.append(float(np.abs(y - ideal).mean()))
    before = NOISE["conditions"][condition]
    _same_distribution(acc, before["accuracy"], resolution=1 / len(x))
    _same_distribution(err, before["mean_abs_error"], resolution=1e-3 * np.mean(before["mean_abs_error"]))
