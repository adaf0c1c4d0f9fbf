"""examples/trees_on_cam.py keeps working: a reduced study (5-tree ensembles, one noise trial)
runs, prints its table, and its numbers say what the codings promise."""
from __future__ import annotations

from pathlib import Path

import pytest
from helpers import load_example

pytest.importorskip("skl2onnx")
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.fixture(scope="module")
def study():
    return load_example("trees_on_cam")


@pytest.fixture(scope="module")
def results(study):
    cases = study.cases(trees=5)
    return cases, [row for case in cases for row in study.evaluate(case, trials=1)]


def test_reduced_study_prints_every_model_and_coding(study, results):
    cases, rows = results
    table = study.format_table(cases, rows)
    assert len(table.splitlines()) == 2 + len(cases) * len(study.CODINGS)
    assert {r.coding for r in rows} == set(study.CODINGS)


def test_lossless_coding_equals_onnxruntime_and_costs_are_reported(results):
    cases, rows = results
    quality = {c.name: c.reference_quality for c in cases}
    for r in rows:
        assert r.rows > 0 and r.arrays > 0 and 0 < r.utilization <= 1
        assert r.latency_ns > 0 and r.throughput > 0 and r.energy_nj > 0
        if r.coding == "lossless":
            assert r.merged == 0 and r.agree == 1.0 and r.quality == pytest.approx(quality[r.case])
        if r.coding == "chip":
            assert r.noisy_agree is not None and 0 < r.noisy_agree[0] <= 1
        else:
            assert r.noisy_agree is None


def test_one_cell_merges_the_regressors_thresholds_and_says_what_it_costs(results):
    _, rows = results
    one_cell = next(r for r in rows if r.coding == "1 cell" and "diabetes" in r.case)
    assert one_cell.merged > 0 and one_cell.agree < 1.0
