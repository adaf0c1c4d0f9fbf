"""The quantize pass's input scale for a crossbar layer behind a QDQ pair, worked out by hand.

The input of a crossbar layer is quantised to ``input_bits`` integers: signed (sign-magnitude,
codes −imax…imax with imax = 2^(bits−1) − 1) when the input can be negative, unsigned (0…2^bits − 1)
when it cannot. When a QuantizeLinear → DequantizeLinear pair produces the input, the values lie
on the grid ``(code − zero_point) · scale`` with ``code`` in the element type's range. If every
grid step the input can take fits the input integers (on the signed side the one extra code
−(imax + 1) of a two's-complement grid may saturate), the crossbar uses the model's own scale and
quantising the input loses nothing; otherwise it uses the scale that covers the grid's reachable
range: the largest reachable |value| / imax. Every number below is read off the model's
QuantizeLinear parameters by hand.
"""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from nmc.compiler import compile_model
from nmc.runtime import execute

S = 0.125          # the model's activation scale (exact in float32)
SMALL = 2.0 ** -10


def _qdq_dense(elem_type, zero: int, scale: float, relu_first: bool):
    """x [N, 4] → (Relu) → QuantizeLinear/DequantizeLinear(scale, zero) → MatMul(W [4, 3]) → y."""
    rng = np.random.default_rng(15)
    w = rng.normal(size=(4, 3)).astype(np.float32)
    dtype = helper.tensor_dtype_to_np_dtype(elem_type)
    nodes = ([helper.make_node("Relu", ["x"], ["r"])] if relu_first else []) + [
        helper.make_node("QuantizeLinear", ["r" if relu_first else "x", "s", "z"], ["q"]),
        helper.make_node("DequantizeLinear", ["q", "s", "z"], ["d"]),
        helper.make_node("MatMul", ["d", "w"], ["y"])]
    inits = [numpy_helper.from_array(np.asarray(scale, np.float32), "s"),
             numpy_helper.from_array(np.asarray(zero, dtype), "z"), numpy_helper.from_array(w, "w")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _quant(model, input_bits: int):
    compiled = compile_model(model, "sram-digital", pass_options={"quantize": f"input_bits={input_bits}"})
    (quant,) = [m.quant for m in compiled.graph.mapping.values() if m.unit == "crossbar"]
    return quant, compiled


CASES = [
    # int8, zero point 0: codes −128…127; signed 8-bit inputs hold −127…127 and −128 saturates → model's scale
    pytest.param(TensorProto.INT8, 0, S, False, 8, True, S, id="int8-fits-signed-8"),
    # zero point 1: codes −129…126; −129 is two below −127 → cover 129 steps with 127 codes
    pytest.param(TensorProto.INT8, 1, S, False, 8, True, 129 * S / 127, id="int8-zp1-one-code-too-low"),
    # zero point 120: codes −248…7; the negative side is far too long → cover 248 steps
    pytest.param(TensorProto.INT8, 120, S, False, 8, True, 248 * S / 127, id="int8-zp120-long-negative-side"),
    # zero point −120: codes −8…247 on signed 4-bit inputs (imax 7): −8 saturates, but 247 > 7 → cover 247 steps
    pytest.param(TensorProto.INT8, -120, S, False, 4, True, 247 * S / 7, id="int8-zp-120-signed-4"),
    # after a Relu the input is never negative: only codes 0…7 are reachable; unsigned 4-bit (0…15) holds them
    pytest.param(TensorProto.INT8, 120, S, True, 4, False, S, id="relu-int8-zp120-unsigned-4"),
    # after a Relu with zero point 0: codes 0…127 reachable, 127 > 15 → cover 127 steps with 15 codes
    pytest.param(TensorProto.INT8, 0, S, True, 4, False, 127 * S / 15, id="relu-int8-unsigned-4"),
    # uint8 grid (never negative), tiny scale: 255 steps of 2^-10 cover 0.249; 15 codes → 17 steps each
    pytest.param(TensorProto.UINT8, 0, SMALL, False, 4, False, 255 * SMALL / 15, id="uint8-small-scale-unsigned-4"),
    # uint8 with zero point 128 on signed 8-bit inputs: codes −128…127 → model's scale
    pytest.param(TensorProto.UINT8, 128, S, False, 8, True, S, id="uint8-zp128-signed-8"),
    # uint8 grid, 8-bit unsigned inputs (0…255): every code fits → model's scale
    pytest.param(TensorProto.UINT8, 0, S, False, 8, False, S, id="uint8-unsigned-8"),
]


@pytest.mark.parametrize("elem_type,zero,scale,relu_first,bits,signed,want", CASES)
def test_qdq_input_scale_by_hand(elem_type, zero, scale, relu_first, bits, signed, want):
    quant, _ = _quant(_qdq_dense(elem_type, zero, scale, relu_first), bits)
    assert quant.input_range_source == "qdq"
    assert quant.input_signed is signed
    assert quant.input_bits == bits
    assert quant.input_scale == pytest.approx(want, rel=1e-9)


@pytest.mark.parametrize("elem_type,zero,relu_first,bits", [
    (TensorProto.INT8, 0, False, 8), (TensorProto.UINT8, 0, False, 8), (TensorProto.INT8, 120, True, 4)])
def test_an_input_on_the_model_grid_reaches_the_crossbar_unchanged(elem_type, zero, relu_first, bits):
    """When the model's scale is kept, the crossbar sees the QDQ output's exact codes: the layer
    equals the float product of the dequantised input with the weights quantised per column."""
    model = _qdq_dense(elem_type, zero, S, relu_first)
    quant, compiled = _quant(model, bits)
    assert quant.input_scale == S
    rng = np.random.default_rng(7)
    x = (rng.integers(-140, 140, size=(16, 4)) * S + rng.uniform(-0.4, 0.4, size=(16, 4)) * S).astype(np.float32)
    info = helper.tensor_dtype_to_np_dtype(elem_type)
    lo, hi = np.iinfo(info).min, np.iinfo(info).max
    r = np.maximum(x, 0) if relu_first else x
    d = (np.clip(np.round(r / np.float32(S)) + zero, lo, hi) - zero) * S          # the QDQ pair's output
    d = np.clip(d, 0 if not quant.input_signed else -((1 << (bits - 1)) - 1) * S,
                ((1 << bits) - 1 if not quant.input_signed else (1 << (bits - 1)) - 1) * S)  # input integers
    w = next(a for a in (numpy_helper.to_array(t) for t in model.graph.initializer) if a.shape == (4, 3))
    step = np.abs(w).max(axis=0) / 127                                             # 8-bit weights per column
    want = d @ (np.round(w / step) * step)
    got = execute(compiled.program, {"x": x}, target=compiled.target)["y"]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
