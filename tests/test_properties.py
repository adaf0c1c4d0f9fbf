"""Property tests of the index arithmetic: convolution and pooling windows as strided views,
checked against onnxruntime over random shapes, strides, pads, dilations and groups."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import helper

from nmc.compiler import compile_model
from nmc.compiler.errors import UnsupportedOpError
from helpers import make_model, run_ort
from nmc.runtime import execute


@st.composite
def conv_cases(draw):
    rank = draw(st.integers(1, 2))
    group = draw(st.sampled_from([1, 2, 3]))
    cin = group * draw(st.integers(1, 2))
    cout = group * draw(st.integers(1, 3))
    kernel = [draw(st.integers(1, 3)) for _ in range(rank)]
    dil = [draw(st.integers(1, 2)) for _ in range(rank)]
    strides = [draw(st.integers(1, 3)) for _ in range(rank)]
    pads = [draw(st.integers(0, 2)) for _ in range(2 * rank)]
    spatial = [draw(st.integers((k - 1) * d + 1, 9)) for k, d in zip(kernel, dil)]
    bias = draw(st.booleans())
    return rank, group, cin, cout, kernel, dil, strides, pads, spatial, bias


@settings(max_examples=25, deadline=None)
@given(conv_cases(), st.integers(0, 2**31 - 1))
def test_conv_matches_onnxruntime(case, seed):
    rank, group, cin, cout, kernel, dil, strides, pads, spatial, bias = case
    rng = np.random.default_rng(seed)
    w = rng.standard_normal([cout, cin // group] + kernel).astype(np.float32)
    inits = {"w": w}
    inputs = ["x", "w"]
    if bias:
        inits["b"] = rng.standard_normal(cout).astype(np.float32)
        inputs.append("b")
    node = helper.make_node("Conv", inputs, ["y"], group=group, dilations=dil, strides=strides, pads=pads)
    model = make_model([node], {"x": ["N", cin] + spatial}, {"y": None}, inits)
    x = rng.standard_normal([2, cin] + spatial).astype(np.float32)
    got = execute(compile_model(model).program, {"x": x})["y"]
    want = run_ort(model, {"x": x})[0]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@settings(max_examples=25, deadline=None)
@given(st.sampled_from(["MaxPool", "AveragePool"]), st.integers(1, 3), st.integers(1, 3), st.integers(0, 1),
       st.booleans(), st.booleans(), st.integers(5, 9), st.integers(0, 2**31 - 1))
def test_pool_matches_onnxruntime(op, k, s, p, ceil, include_pad, size, seed):
    p = min(p, k - 1)  # ONNX requires pads smaller than the kernel
    attrs = dict(kernel_shape=[k, k], strides=[s, s], pads=[p, p, p, p], ceil_mode=int(ceil))
    if op == "AveragePool":
        attrs["count_include_pad"] = int(include_pad)
    model = make_model([helper.make_node(op, ["x"], ["y"], **attrs)], {"x": ["N", 2, size, size]}, {"y": None},
                       opset=19)
    x = np.random.default_rng(seed).standard_normal((2, 2, size, size)).astype(np.float32)
    inferred = -(-(size + 2 * p - k) // s) + 1 if ceil else (size + 2 * p - k) // s + 1
    if (inferred - 1) * s >= size + p:  # onnx and onnxruntime disagree on the size: refused clearly
        with pytest.raises(UnsupportedOpError, match="ceil_mode makes the last window start in the padding"):
            compile_model(model)
        return
    got = execute(compile_model(model).program, {"x": x})["y"]
    want = run_ort(model, {"x": x})[0]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
