"""Rung 2 of the correctness ladder: crossbar targets against an independent integer reference.

The reference below walks the compiled graph in plain numpy: for each crossbar layer it
quantises the input as the quantize pass specifies, multiplies integers with numpy's int64
matmul (convolutions through an explicit im2col), dequantises, and runs every other op in
float32. sram-digital, and pcm/rram with the noise off and an ADC wide enough to be lossless,
must give identical outputs; crossbar tiling, bit slicing, the ADC and message passing
between cores are all in between.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from nmc.backends.target import load_target, parse_target
from nmc.compiler import compile_model
from nmc.compiler.ir import ops
from nmc.compiler.passes.placement import CapacityError
from nmc.runtime import SimOptions, execute

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
MODELS = {"digits_mlp.onnx": "x_flat", "digits_cnn.onnx": "x_image"}


def lossless(preset: str):
    """The preset with an ADC wide enough for any column current (lsb = 1)."""
    text = load_target(preset).source.replace("adc_bits = 8", "adc_bits = 24")
    return parse_target(text, f"{preset}-lossless")


def im2col(x: np.ndarray, op: ops.Conv) -> tuple[np.ndarray, tuple[int, ...]]:
    """[B, C, H, W] → [B, G, Ho·Wo, C/G·kh·kw], written with plain loops over the kernel."""
    b, c, h, w = x.shape
    (pt, pl, pb, pr), (sh, sw), (dh, dw), (kh, kw) = op.pads, op.strides, op.dilations, op.kernel
    xp = np.zeros((b, c, h + pt + pb, w + pl + pr), x.dtype)
    xp[:, :, pt:pt + h, pl:pl + w] = x
    ho = (h + pt + pb - (kh - 1) * dh - 1) // sh + 1
    wo = (w + pl + pr - (kw - 1) * dw - 1) // sw + 1
    cols = np.zeros((b, c, kh, kw, ho, wo), x.dtype)
    for i in range(kh):
        for j in range(kw):
            cols[:, :, i, j] = xp[:, :, i * dh:i * dh + sh * ho:sh, j * dw:j * dw + sw * wo:sw]
    g = op.group
    cols = cols.reshape(b, g, c // g * kh * kw, ho * wo).transpose(0, 1, 3, 2)
    return cols, (ho, wo)


def quantised_layer(g, node, x: np.ndarray) -> np.ndarray:
    mapping = g.mapping[node.name]
    q = g.mapping[node.name].quant
    wq = g.constants[q.weights].astype(np.int64)          # [G, Mg, Kg]
    wscale = g.constants[q.weight_scale]
    imax = np.float32(q.input_max)
    lo = -q.input_max if q.input_signed else 0
    batch = x.shape[0]
    if q.input_scale is None:
        s = (np.abs(x).reshape(batch, -1).max(axis=1) / imax).astype(np.float32)
        s = np.maximum(s, np.float32(1e-30))
    else:
        s = np.full(batch, np.float32(q.input_scale), np.float32)
    assert mapping.unit == "crossbar"
    if isinstance(node.op, ops.Dense):
        xq = np.clip(np.round(x / s.reshape(-1, *[1] * (x.ndim - 1))), lo, q.input_max).astype(np.int64)
        acc = xq @ wq[0].T
        y = acc.astype(np.float32) * wscale
        y = y * s.reshape(-1, *[1] * (y.ndim - 1))
    else:
        xq = np.clip(np.round(x / s.reshape(-1, 1, 1, 1)), lo, q.input_max).astype(np.int64)
        cols, (ho, wo) = im2col(xq, node.op)
        acc = np.einsum("bgpk,gmk->bgmp", cols, wq).reshape(batch, -1, ho, wo)
        y = acc.astype(np.float32) * wscale.reshape(1, -1, 1, 1)
        y = y * s.reshape(-1, 1, 1, 1)
    if len(node.inputs) > 2:
        b = g.constants[node.inputs[2]]
        y = y + (b if isinstance(node.op, ops.Dense) else b.reshape(1, -1, 1, 1))
    return y.astype(np.float32)


def reference(g, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    env = {t: feeds[t].astype(np.float32) for t in g.inputs}
    for node in g.nodes():
        x = env[node.inputs[0]]
        op = node.op
        if isinstance(op, (ops.Dense, ops.Conv)):
            y = quantised_layer(g, node, x)
        elif isinstance(op, ops.Binary) and op.fn in ("add", "sub", "mul", "div"):
            other = g.constants[node.inputs[1]] if g.is_const(node.inputs[1]) else env[node.inputs[1]]
            y = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.divide}[op.fn](x, other)
        elif isinstance(op, ops.Unary) and op.fn == "relu":
            y = np.maximum(x, np.float32(0))
        elif isinstance(op, ops.Pool) and op.kind == "max" and not any(op.pads):
            (kh, kw), (sh, sw) = op.kernel, op.strides
            b, c, h, w = x.shape
            ho, wo = (h - kh) // sh + 1, (w - kw) // sw + 1
            y = np.full((b, c, ho, wo), -np.inf, np.float32)
            for i in range(kh):
                for j in range(kw):
                    y = np.maximum(y, x[:, :, i:i + sh * ho:sh, j:j + sw * wo:sw])
        elif isinstance(op, ops.Reduce) and op.kind == "mean":
            y = x.mean(axis=op.axes, keepdims=op.keepdims, dtype=np.float32)
        elif isinstance(op, ops.Reshape):
            y = x.reshape((x.shape[0],) + g.shape(node.outputs[0])[1:])
        elif isinstance(op, ops.Softmax) and op.axes == (len(x.shape) - 1,):
            e = np.exp(x - x.max(axis=-1, keepdims=True))
            y = e / e.sum(axis=-1, keepdims=True)
        else:
            raise NotImplementedError(type(op).__name__)
        env[node.outputs[0]] = y
    return {name: env[t] for t, name in zip(g.outputs, g.port_names())}


@pytest.fixture(scope="module")
def digits():
    return np.load(EXAMPLES / "digits_test.npz")


@pytest.mark.parametrize("model_file", sorted(MODELS))
@pytest.mark.parametrize("target", ["sram-digital", "pcm-lossless", "rram-lossless", "sram-analog-lossless"])
def test_crossbar_targets_equal_the_integer_reference(model_file, target, digits):
    tgt = lossless(target.removesuffix("-lossless")) if target.endswith("-lossless") else load_target(target)
    model = onnx.load(EXAMPLES / model_file)
    compiled = compile_model(model, target=tgt)
    g = compiled.graph
    assert any(m.unit == "crossbar" for m in g.mapping.values())
    feeds = {model.graph.input[0].name: digits[MODELS[model_file]]}
    got = execute(compiled.program, feeds, target=tgt, options=SimOptions(noise=False))
    want = reference(g, feeds)
    for name in want:
        np.testing.assert_array_equal(got[name], want[name])


def test_sram_digital_accuracy_within_a_point_of_float(digits):
    model = onnx.load(EXAMPLES / "digits_cnn.onnx")
    x = digits["x_image"]
    float_out = execute(compile_model(model).program, {"input": x})["logits"]
    compiled = compile_model(model, target="sram-digital")
    q_out = execute(compiled.program, {"input": x}, target=compiled.target)["logits"]
    acc_float = (float_out.argmax(1) == digits["y"]).mean()
    acc_q = (q_out.argmax(1) == digits["y"]).mean()
    assert abs(acc_float - acc_q) <= 0.01


def test_model_too_big_for_the_chip_is_a_clear_error():
    text = load_target("pcm").source.replace("count = 128", "count = 1").replace("crossbars_per_core = 8",
                                                                               "crossbars_per_core = 1")
    small = parse_target(text, "tiny-pcm")
    with pytest.raises(CapacityError, match=r"needs \d+ crossbars of 256×256 but target 'pcm' has 1"):
        compile_model(EXAMPLES / "digits_cnn.onnx", target=small)


def test_partition_policy_is_recorded():
    compiled = compile_model(EXAMPLES / "digits_cnn.onnx", target="pcm",
                             pass_options={"partition": "first_digital=true,last_digital=true"})
    units = [(m.unit, m.reason) for n, m in compiled.graph.mapping.items()
             if isinstance(compiled.graph.node(n).op, (ops.Dense, ops.Conv))]
    assert units[0] == ("vector", "first matrix layer kept digital by policy (first_digital)")
    assert units[-1] == ("vector", "last matrix layer kept digital by policy (last_digital)")
    assert all(u == "crossbar" for u, _ in units[1:-1])


@pytest.mark.parametrize("option", ["rows=100000", "cols=257", "rows=-3"])
def test_tile_sizes_beyond_the_crossbar_are_refused(option):
    from nmc.compiler.errors import CompileError

    with pytest.raises(CompileError, match=r"pass tile-mapping: (rows|cols)=-?\d+ must be between 1 and the target's 256"):
        compile_model(EXAMPLES / "digits_cnn.onnx", target="pcm", pass_options={"tile-mapping": option})
