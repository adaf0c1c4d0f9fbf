"""The runtime's three ways to gather a convolution's windows — channel-minor (``Order``),
kernel-major (rows of positions) and none (a 1×1 convolution read in place) — give the same
outputs, and those match onnxruntime on the ideal target."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

import nmc.runtime.machine as machine
from helpers import make_model, run_ort
from nmc.compiler import compile_model
from nmc.runtime import execute

RNG = np.random.default_rng(17)


def _conv(channels, kernel, pads, strides, size=9):
    w = RNG.normal(size=(6, channels, kernel, kernel)).astype(np.float32)
    b = RNG.normal(size=(6,)).astype(np.float32)
    out = (size + 2 * pads - kernel) // strides + 1
    node = helper.make_node("Conv", ["x", "w", "b"], ["y"], pads=[pads] * 4, strides=[strides] * 2)
    return make_model([node], {"x": ["N", channels, size, size]}, {"y": ["N", 6, out, out]}, {"w": w, "b": b})


@pytest.mark.parametrize("channels, kernel, pads, strides", [(1, 3, 1, 1), (16, 3, 1, 1), (12, 3, 0, 2),
                                                             (16, 1, 0, 1), (3, 5, 2, 2)])
def test_every_gather_gives_onnxruntimes_convolution(channels, kernel, pads, strides, monkeypatch):
    model = _conv(channels, kernel, pads, strides)
    program = compile_model(model, "ideal").program
    x = RNG.normal(size=(5, channels, 9, 9)).astype(np.float32)
    want = run_ort(model, {"x": x})[0]
    outs = []
    for run, positions in ((0, 0), (10 ** 9, 10 ** 9)):   # always kernel-major; kernel-major only without Order
        monkeypatch.setattr(machine, "KERNEL_MAJOR_RUN", run)
        monkeypatch.setattr(machine, "KERNEL_MAJOR_POSITIONS", positions)
        outs.append(execute(program, {"x": x}, chunk=2)["y"])
    monkeypatch.setattr(machine, "_channel_major", lambda dst, per: None)   # the row-major GEMM path
    outs.append(execute(program, {"x": x}, chunk=2)["y"])
    for got in outs:
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
