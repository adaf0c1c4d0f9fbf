"""The real-model zoo (``pytest -m zoo``; CI runs it): every architecture of
``tests/zoo/models.py`` compiles on ``ideal`` and matches onnxruntime within 1e-4 relative on
every output; on ``pcm`` every model that fits compiles and runs with device physics.

Models that do not compile yet are listed in ``NOT_YET`` with the node that stops them; they
are strict expected failures, so a model that starts to compile fails here until it moves out
of the list.
"""
from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.zoo
torch = pytest.importorskip("torch")

import nmc  # noqa: E402
from nmc.compiler.passes.placement import CapacityError  # noqa: E402
from zoo.models import ZOO, export  # noqa: E402

NOT_YET: dict[str, str] = {}  # model name -> the node that stops it
RTOL = 1e-4


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    out = tmp_path_factory.mktemp("zoo")
    cache = {}

    def get(model):
        if model.name not in cache:
            cache[model.name] = export(model, out)
        return cache[model.name]
    return get


def _params():
    for m in ZOO:
        marks = [pytest.mark.xfail(strict=True, reason=NOT_YET[m.name])] if m.name in NOT_YET else []
        yield pytest.param(m, id=m.name, marks=marks)


@pytest.mark.parametrize("model", _params())
def test_ideal_matches_onnxruntime(model, exported):
    path, feeds = exported(model)
    report = nmc.verify(path, feeds, "ideal")
    for check in report.outputs:
        assert check.rel_error <= RTOL, f"{model.name} output {check.name}: relative error {check.rel_error:.3g}"


@pytest.mark.parametrize("model", _params())
def test_pcm_compiles_and_runs(model, exported):
    path, feeds = exported(model)
    try:
        program = nmc.compile(path, "pcm")
    except CapacityError as e:
        pytest.skip(f"does not fit the pcm preset: {e}")
    outputs = program.run(feeds, time="1d")
    assert all(np.isfinite(v).all() for v in outputs.values())
    assert program.stats().energy_total_pj > 0
