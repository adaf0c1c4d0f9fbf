"""Calibration: tensor ranges from onnxruntime, fixed input scales, and ADC ranges sized from
the column currents calibration samples draw."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from helpers import make_model
from onnx import helper
from test_quantized import lossless, reference

from nmc.backends.target import load_target
from nmc.compiler import compile_model
from nmc.compiler.calibrate import CalibrationError, activation_ranges
from nmc.compiler.frontend import import_onnx
from nmc.compiler.ir import ops
from nmc.compiler.passes.bit_slicing import WORST_CASE, im2col
from nmc.runtime import SimOptions, execute

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
RNG = np.random.default_rng(7)


def _mlp():
    """x → MatMul → Add → Relu → Gemm: every intermediate is easy to compute in numpy."""
    w1 = RNG.standard_normal((6, 8)).astype(np.float32)
    b1 = RNG.standard_normal(8).astype(np.float32)
    w2 = RNG.standard_normal((3, 8)).astype(np.float32)
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"], name="mm"),
             helper.make_node("Add", ["h", "b1"], ["a"], name="add"),
             helper.make_node("Relu", ["a"], ["r"], name="relu"),
             helper.make_node("Gemm", ["r", "w2"], ["y"], transB=1, name="fc")]
    model = make_model(nodes, {"x": ["N", 6]}, {"y": ["N", 3]}, {"w1": w1, "b1": b1, "w2": w2})
    return model, (w1, b1, w2)


def test_ranges_match_numpy():
    model, (w1, b1, w2) = _mlp()
    x = RNG.standard_normal((150, 6)).astype(np.float32)  # more than one onnxruntime batch
    h = x @ w1
    a = h + b1
    r = np.maximum(a, 0)
    want = {"x": x, "h": h, "a": a, "r": r, "y": r @ w2.T}
    exact = activation_ranges(model, x, percentile=100)
    assert set(exact) == set(want)
    for name, value in want.items():
        np.testing.assert_allclose(exact[name], (value.min(), value.max()), rtol=1e-5, atol=1e-6)
    # a percentile: the nearest rank of all elements of all samples, each end
    robust = activation_ranges(model, x, percentile=99)
    for name, value in want.items():
        v = np.sort(value.reshape(-1))
        k = int(np.floor(0.01 * v.size))  # values beyond the range, per end
        np.testing.assert_allclose(robust[name], (v[k], v[-1 - k]), rtol=1e-5, atol=1e-6)
    assert robust["r"][0] == 0.0


def test_ranges_use_the_ir_names():
    """Conv → BatchNorm → Relu, with an Identity: fold-batchnorm removes the Conv's own output,
    the IR reads through the Identity; every range kept names an IR tensor."""
    c = 3
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1], name="conv"),
             helper.make_node("BatchNormalization", ["c", "s", "b", "m", "v"], ["bn"], name="bn"),
             helper.make_node("Identity", ["bn"], ["i"], name="id"),
             helper.make_node("Relu", ["i"], ["y"], name="relu")]
    weights = {"w": RNG.standard_normal((c, 2, 3, 3)).astype(np.float32), "s": np.ones(c, np.float32),
               "b": np.full(c, 0.5, np.float32), "m": np.zeros(c, np.float32), "v": np.ones(c, np.float32)}
    model = make_model(nodes, {"x": ["N", 2, 5, 5]}, {"y": ["N", c, 5, 5]}, weights)
    x = RNG.standard_normal((4, 2, 5, 5)).astype(np.float32)
    compiled = compile_model(model, "pcm", calibration=x)
    g = compiled.graph
    assert set(g.ranges) <= set(g.tensors)
    assert "c" not in g.tensors and "c" not in g.ranges          # folded into the Conv
    assert {"x", "bn", "y"} <= set(g.ranges)
    assert g.ranges["y"][0] == 0.0
    conv = next(n for n in g.nodes() if isinstance(n.op, ops.Conv))
    assert g.mapping[conv.name].quant.input_range_source == "calibration"
    assert g.calibration["x"].shape == x.shape


def test_im2col_matches_a_convolution():
    op = ops.Conv(kernel=(2, 3), strides=(2, 1), pads=(1, 0, 0, 1), dilations=(1, 2), group=2)
    x = RNG.standard_normal((3, 4, 6, 7)).astype(np.float32)
    w = RNG.standard_normal((6, 2, 2, 3)).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w"], ["y"], kernel_shape=[2, 3], strides=[2, 1],
                              pads=[1, 0, 0, 1], dilations=[1, 2], group=2)]
    from helpers import run_ort
    want = run_ort(make_model(nodes, {"x": [3, 4, 6, 7]}, {"y": None}, {"w": w}), {"x": x})[0]
    cols = im2col(x, op)                                       # [S, G, P, C/G·k]
    got = np.einsum("sgpk,gmk->sgmp", cols, w.reshape(2, 3, -1)).reshape(want.shape)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@pytest.fixture(scope="module")
def digits():
    return np.load(EXAMPLES / "digits_test.npz")


@pytest.mark.parametrize("model_file,key", [("digits_cnn.onnx", "x_image"), ("digits_mlp.onnx", "x_flat")])
def test_calibrated_program_equals_the_integer_reference(model_file, key, digits):
    """Static scales from calibration, noise off, lossless ADC: bit-exact as without calibration."""
    tgt = lossless("pcm")
    model = onnx.load(EXAMPLES / model_file)
    compiled = compile_model(model, target=tgt, calibration=digits[key][:64])
    g = compiled.graph
    quants = [m.quant for m in g.mapping.values() if m.unit == "crossbar"]
    assert quants and all(q.input_range_source == "calibration" and q.input_scale for q in quants)
    assert not quants[0].input_signed                  # pixels are never negative
    feeds = {model.graph.input[0].name: digits[key]}
    got = execute(compiled.program, feeds, target=tgt, options=SimOptions(noise=False))
    want = reference(g, feeds, tgt, calibration={model.graph.input[0].name: digits[key][:64]}, model=model)
    for name in want:
        np.testing.assert_array_equal(got[name], want[name])


@pytest.mark.parametrize("target", ["pcm", "rram"])
def test_calibrated_adc_ranges_are_never_wider_than_the_worst_case(target, digits):
    model = onnx.load(EXAMPLES / "digits_cnn.onnx")
    worst = compile_model(model, target=target).graph.mapping
    calibrated = compile_model(model, target=target, calibration=digits["x_image"][:64]).graph.mapping
    steps = (1 << (load_target(target).crossbar.adc_bits - 1)) - 1
    narrower = 0
    for name, mapping in calibrated.items():
        for tile, safe in zip(mapping.tiles, worst[name].tiles):
            assert safe.adc_range_source == WORST_CASE
            assert tile.adc_range_source.startswith("calibration: 99.9th percentile of |column current|")
            assert tile.adc_range <= safe.adc_range
            lsb = tile.adc_range / steps
            assert lsb >= 1 and lsb == 2 ** round(np.log2(lsb))   # shift-and-add stays integer
            narrower += tile.adc_range < safe.adc_range
    assert narrower > 0


def test_calibration_improves_pcm_accuracy(digits):
    """Digits CNN on pcm: calibrated ADC ranges use their codes for the currents that occur.
    Noise off, and the mean over three programming instances (same seeds for both programs)."""
    model = onnx.load(EXAMPLES / "digits_cnn.onnx")
    x, y = digits["x_image"], digits["y"]
    plain = compile_model(model, target="pcm")
    calibrated = compile_model(model, target="pcm", calibration=x[:64])

    def accuracy(compiled, **options):
        return float((execute(compiled.program, {"input": x}, compiled.target, SimOptions(**options))["logits"]
                      .argmax(1) == y).mean())

    assert accuracy(calibrated, noise=False) >= accuracy(plain, noise=False)
    with_cal = np.mean([accuracy(calibrated, seed=s) for s in range(3)])
    without = np.mean([accuracy(plain, seed=s) for s in range(3)])
    assert with_cal >= without


def test_calibration_input_errors():
    model, _ = _mlp()
    with pytest.raises(CalibrationError, match="do not match the model's inputs"):
        compile_model(model, "pcm", calibration={"z": np.zeros((2, 6), np.float32)})
    with pytest.raises(CalibrationError, match="has shape"):
        compile_model(model, "pcm", calibration=np.zeros((2, 5, 6), np.float32))
    with pytest.raises(CalibrationError, match="percentile"):
        activation_ranges(model, np.zeros((2, 6), np.float32), percentile=20)


def test_without_calibration_nothing_changes():
    model, _ = _mlp()
    g = import_onnx(model)
    assert g.ranges == {} and g.calibration == {}
    mapping = compile_model(model, "pcm").graph.mapping
    for m in mapping.values():
        if m.unit == "crossbar":
            assert m.quant.input_range_source == "dynamic"
            assert all(t.adc_range_source == WORST_CASE for t in m.tiles)
