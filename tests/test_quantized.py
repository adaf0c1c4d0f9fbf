"""Rung 2 of the correctness ladder: crossbar targets against an independent integer reference.

The reference below walks the compiled graph in plain numpy. It reads only what the frontend
and partition produced (the float ops, float weights, which layers are on crossbars) and the
target's bit widths, and quantises by the rules the quantize pass documents, computed here:
weights symmetric per output channel (scale = max|w| / (2^(bits−1) − 1); on digital arrays a
tensor already on one grid keeps it), inputs unsigned when they cannot be negative, their scale
per sample from the largest magnitude or, with calibration samples, from the 0.01 / 99.99
percentiles (nearest rank, over all elements of all samples) of the tensor in the original
model run by onnxruntime. It multiplies integers with numpy's int64 matmul (convolutions
through an explicit im2col), dequantises, and runs every other op in float32. sram-digital, and
pcm/rram with the noise off and an ADC wide enough to be lossless, must give identical outputs;
crossbar tiling, bit slicing, the ADC and message passing between cores are all in between.
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


def quantised_weights(w: np.ndarray, group: int, bits: int, analog: bool) -> tuple[np.ndarray, np.ndarray]:
    """Float weights (Dense [N, K], Conv [M, C/G, *k]) → integers [G, M/G, K/G] and one float32
    scale per output: max|w| / qmax of the channel; on a digital array, when the whole tensor
    lies on one grid of ±qmax steps (a QDQ model's per-tensor codes), that grid's step."""
    w = w.astype(np.float64)
    w3 = w.reshape(1, *w.shape) if w.ndim == 2 else w.reshape(group, w.shape[0] // group, -1)
    qmax = (1 << (bits - 1)) - 1
    channel = np.abs(w3).max(axis=2)
    scale = np.where(channel > 0, channel / qmax, 1.0)
    top = float(channel.max(initial=0.0))
    if not analog and top > 0:
        codes = w3 / (top / qmax)
        if np.abs(codes - np.round(codes)).max() < 1e-3:
            scale = np.full(channel.shape, top / qmax)
    q = np.clip(np.round(w3 / scale[..., None]), -qmax, qmax).astype(np.int64)
    return q, scale.reshape(-1).astype(np.float32)


def nearest_rank_range(values: np.ndarray, percentile: float = 99.99) -> tuple[float, float]:
    """The (100 − p) and p percentiles of all finite values, by nearest rank."""
    v = np.sort(values.astype(np.float64).ravel())
    v = v[np.isfinite(v)]
    k = max(1, int(np.floor((100.0 - percentile) / 100.0 * v.size)) + 1)
    return float(v[k - 1]), float(v[v.size - k])


def calibration_ranges(model: onnx.ModelProto, samples: dict[str, np.ndarray], tensors: set[str]) -> dict:
    """Ranges of those ``tensors`` the original model has, from onnxruntime on the samples. Every
    intermediate is an output, so onnxruntime computes the graph as written (no node fusions)."""
    import onnxruntime as ort

    inferred = onnx.shape_inference.infer_shapes(model)
    graph_inputs = {i.name for i in model.graph.input}
    types = {vi.name: vi.type.tensor_type.elem_type for vi in inferred.graph.value_info}
    names = sorted(t for t, kind in types.items()
                   if kind == onnx.TensorProto.FLOAT and t not in {o.name for o in model.graph.output})
    extended = onnx.ModelProto()
    extended.CopyFrom(model)
    extended.graph.output.extend(onnx.helper.make_tensor_value_info(t, types[t], None) for t in names)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    session = ort.InferenceSession(extended.SerializeToString(), options, providers=["CPUExecutionProvider"])
    wanted = [o.name for o in session.get_outputs()]
    values = dict(zip(wanted, session.run(wanted, samples)))
    values.update((t, samples[t]) for t in tensors if t in graph_inputs)
    return {t: nearest_rank_range(values[t]) for t in tensors if t in values}


def quantised_layer(g, node, x: np.ndarray, target, signed: bool, bound: float | None) -> np.ndarray:
    """One crossbar layer: inputs of the target's bits on a per-sample scale (``bound`` None) or
    the fixed scale bound / imax, integer product, dequantised."""
    xb = target.crossbar
    group = node.op.group if isinstance(node.op, ops.Conv) else 1
    wq, wscale = quantised_weights(g.constants[node.inputs[1]], group, xb.weight_bits, xb.analog)
    input_max = (1 << (xb.input_bits - 1)) - 1 if signed else (1 << xb.input_bits) - 1
    imax = np.float32(input_max)
    lo = -input_max if signed else 0
    batch = x.shape[0]
    if bound is None:
        s = (np.abs(x).reshape(batch, -1).max(axis=1) / imax).astype(np.float32)
        s = np.maximum(s, np.float32(1e-30))
    else:
        s = np.full(batch, np.float32(bound / input_max if bound > 0 else 1.0), np.float32)
    if isinstance(node.op, ops.Dense):
        xq = np.clip(np.round(x / s.reshape(-1, *[1] * (x.ndim - 1))), lo, input_max).astype(np.int64)
        acc = xq @ wq[0].T
        y = acc.astype(np.float32) * wscale
        y = y * s.reshape(-1, *[1] * (y.ndim - 1))
    else:
        xq = np.clip(np.round(x / s.reshape(-1, 1, 1, 1)), lo, input_max).astype(np.int64)
        cols, (ho, wo) = im2col(xq, node.op)
        acc = np.einsum("bgpk,gmk->bgmp", cols, wq).reshape(batch, -1, ho, wo)
        y = acc.astype(np.float32) * wscale.reshape(1, -1, 1, 1)
        y = y * s.reshape(-1, 1, 1, 1)
    if len(node.inputs) > 2:
        b = g.constants[node.inputs[2]]
        y = y + (b if isinstance(node.op, ops.Dense) else b.reshape(1, -1, 1, 1))
    return y.astype(np.float32)


def reference(g, feeds: dict[str, np.ndarray], target, calibration: dict[str, np.ndarray] | None = None,
              model: onnx.ModelProto | None = None) -> dict[str, np.ndarray]:
    """The graph on ``feeds`` with every crossbar layer quantised as documented, for ``target``'s
    bits; with ``calibration`` (the samples ``compile_model`` was given, as input name → array)
    and the original ``model``, fixed input scales from their ranges."""
    ranges = {}
    if calibration is not None:
        layer_inputs = {n.inputs[0] for n in g.nodes() if isinstance(n.op, (ops.Dense, ops.Conv))}
        ranges = calibration_ranges(model, calibration, layer_inputs)
    env = {t: feeds[t].astype(np.float32) for t in g.inputs}
    nonneg = {t: False for t in g.inputs}  # whether a tensor cannot be negative, by the ops making it
    for node in g.nodes():
        x = env[node.inputs[0]]
        op = node.op
        positive = False
        if isinstance(op, (ops.Dense, ops.Conv)):
            assert g.mapping[node.name].unit == "crossbar"
            t = node.inputs[0]
            signed = ranges[t][0] < 0 if t in ranges else not nonneg[t]
            bound = max(abs(ranges[t][0]), abs(ranges[t][1])) if t in ranges else None
            y = quantised_layer(g, node, x, target, signed, bound)
        elif isinstance(op, ops.Binary) and op.fn in ("add", "sub", "mul", "div"):
            other = g.constants[node.inputs[1]] if g.is_const(node.inputs[1]) else env[node.inputs[1]]
            y = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.divide}[op.fn](x, other)
        elif isinstance(op, ops.Unary) and op.fn == "relu":
            y = np.maximum(x, np.float32(0))
            positive = True
        elif isinstance(op, ops.Pool) and op.kind == "max" and not any(op.pads):
            (kh, kw), (sh, sw) = op.kernel, op.strides
            b, c, h, w = x.shape
            ho, wo = (h - kh) // sh + 1, (w - kw) // sw + 1
            y = np.full((b, c, ho, wo), -np.inf, np.float32)
            for i in range(kh):
                for j in range(kw):
                    y = np.maximum(y, x[:, :, i:i + sh * ho:sh, j:j + sw * wo:sw])
            positive = nonneg[node.inputs[0]]
        elif isinstance(op, ops.Reduce) and op.kind == "mean":
            y = x.mean(axis=op.axes, keepdims=op.keepdims, dtype=np.float32)
            positive = nonneg[node.inputs[0]]
        elif isinstance(op, ops.Reshape):
            y = x.reshape((x.shape[0],) + g.shape(node.outputs[0])[1:])
            positive = nonneg[node.inputs[0]]
        elif isinstance(op, ops.Softmax) and op.axes == (len(x.shape) - 1,):
            e = np.exp(x - x.max(axis=-1, keepdims=True))
            y = e / e.sum(axis=-1, keepdims=True)
            positive = True
        else:
            raise NotImplementedError(type(op).__name__)
        env[node.outputs[0]] = y
        nonneg[node.outputs[0]] = positive
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
    want = reference(g, feeds, tgt)
    for name in want:
        np.testing.assert_array_equal(got[name], want[name])


@pytest.mark.parametrize("model_file", sorted(MODELS))
def test_calibrated_scales_equal_the_reference_computed_from_the_samples(model_file, digits):
    """Fixed input scales from calibration samples, computed by the reference from the samples
    themselves: a quantize pass that got a scale wrong (2× say) fails here."""
    tgt = load_target("sram-digital")
    model = onnx.load(EXAMPLES / model_file)
    samples = {model.graph.input[0].name: digits[MODELS[model_file]][:64]}
    compiled = compile_model(model, target=tgt, calibration=samples[model.graph.input[0].name])
    quants = [m.quant for m in compiled.graph.mapping.values() if m.unit == "crossbar"]
    assert quants and all(q.input_range_source == "calibration" for q in quants)
    feeds = {model.graph.input[0].name: digits[MODELS[model_file]]}
    got = execute(compiled.program, feeds, target=tgt, options=SimOptions(noise=False))
    want = reference(compiled.graph, feeds, tgt, calibration=samples, model=model)
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
    small = parse_target(text.replace("clock_ghz = 1.0", "clock_ghz = 1.0\nchips = 1"), "tiny-pcm")
    with pytest.raises(CapacityError, match=r"needs \d+ crossbars of 256×256 but target 'pcm' has 1 per chip"):
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
