"""Models quantised by onnxruntime's quantizer (QDQ format) compile and run.

``quantize_static`` writes the example models in QDQ form: int8 weights and int32 biases behind
DequantizeLinear (folded to float constants by the loader) and a QuantizeLinear →
DequantizeLinear pair after the input and after every layer (one ``FakeQuant`` node each).

The oracle is onnxruntime on the same QDQ model with basic graph optimisations only
(``compiler.oracle``): it evaluates the QDQ graph as written, in float32, as nmc does. Outputs
are identical except where an activation lies within float rounding of a quantisation tie,
which summing a convolution in another order can flip by one step (one element in ~10^5 here,
one output step at most), which is why the bound below counts output steps and differing
outputs rather than a relative tolerance. onnxruntime's default optimisations fuse QDQ groups
into integer kernels whose rounding is its own (1.32 differs from the graph as written by up to
8.0 in a logit of the CNN); they are no oracle of the model's meaning.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from nmc.compiler import compile_model, oracle
from nmc.compiler.errors import UnsupportedOpError
from nmc.compiler.frontend import import_onnx
from nmc.compiler.ir import ops
from nmc.runtime import execute

ort = pytest.importorskip("onnxruntime")
quantization = pytest.importorskip("onnxruntime.quantization")

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
MODELS = {"cnn": ("digits_cnn.onnx", "x_image"), "mlp": ("digits_mlp.onnx", "x_flat")}
VARIANTS = [(model, per_channel, activation) for model in MODELS for per_channel in (False, True)
            for activation in ("QInt8", "QUInt8")]
CALIBRATION_SAMPLES = 64


@pytest.fixture(scope="module")
def digits():
    return np.load(EXAMPLES / "digits_test.npz")


class _Samples(quantization.CalibrationDataReader):
    def __init__(self, name: str, x: np.ndarray):
        self._feeds = iter([{name: x[i:i + 1]} for i in range(len(x))])

    def get_next(self):
        return next(self._feeds, None)


@pytest.fixture(scope="module")
def qdq_model(tmp_path_factory, digits):
    """``(model, per_channel, activation) -> path`` of the QDQ model, made once per variant."""
    made: dict[tuple, Path] = {}

    def make(model: str, per_channel: bool, activation: str) -> Path:
        key = (model, per_channel, activation)
        if key not in made:
            file, data = MODELS[model]
            src = EXAMPLES / file
            name = onnx.load(src).graph.input[0].name
            out = tmp_path_factory.mktemp("qdq") / f"{model}_{'channel' if per_channel else 'tensor'}_{activation}.onnx"
            reader = _Samples(name, digits[data][:CALIBRATION_SAMPLES].astype(np.float32))
            quantization.quantize_static(str(src), str(out), reader, quant_format=quantization.QuantFormat.QDQ,
                                         per_channel=per_channel,
                                         activation_type=getattr(quantization.QuantType, activation),
                                         weight_type=quantization.QuantType.QInt8)
            made[key] = out
        return made[key]

    return make


def run_ort(path: Path, x: np.ndarray) -> np.ndarray:
    session = oracle.session(onnx.load(path))
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def run_nmc(path: Path, x: np.ndarray, target: str):
    compiled = compile_model(path, target)
    model = onnx.load(path)
    outputs = execute(compiled.program, {model.graph.input[0].name: x}, target=compiled.target)
    return outputs[model.graph.output[0].name], compiled


def output_step(path: Path) -> float:
    """The scale of the QDQ pair that ends the model (one step of its output grid)."""
    g = import_onnx(path)
    node = g.producer(g.outputs[0])
    assert isinstance(node.op, ops.FakeQuant)
    return node.op.scale[0]


def assert_matches_ort(ours: np.ndarray, theirs: np.ndarray, step: float, differing: float = 1e-3) -> None:
    """At most a fraction ``differing`` of the outputs differ, by one output step at most."""
    differ = np.abs(ours - theirs) > 1e-6 * step
    assert differ.mean() <= differing, f"{differ.sum()} of {differ.size} outputs differ"
    assert np.abs(ours - theirs).max() <= 1.01 * step, "a difference beyond one output step"
    assert (ours.argmax(-1) == theirs.argmax(-1)).mean() >= 0.99


def test_quantizer_emits_qdq_pairs_and_constant_weights(qdq_model):
    """What the quantizer writes, and what the frontend makes of it."""
    path = qdq_model("cnn", True, "QInt8")
    model = onnx.load(path)
    kinds = {n.op_type for n in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= kinds
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    assert any(v.dtype == np.int8 and v.ndim == 4 for v in inits.values())  # conv weights as int8
    g = import_onnx(path)
    fake = [n for n in g.nodes() if isinstance(n.op, ops.FakeQuant)]
    quantize = [n for n in model.graph.node if n.op_type == "QuantizeLinear"]
    assert len(fake) == len(quantize)  # one FakeQuant per Q→DQ pair; weight DQs are constants
    conv = [n for n in g.nodes() if isinstance(n.op, ops.Conv)]
    assert all(g.is_const(n.inputs[1]) and g.is_const(n.inputs[2]) for n in conv)


@pytest.mark.parametrize("model,per_channel,activation", VARIANTS)
def test_ideal_matches_onnxruntime(qdq_model, digits, model, per_channel, activation):
    path = qdq_model(model, per_channel, activation)
    x = digits[MODELS[model][1]].astype(np.float32)
    ours, _ = run_nmc(path, x, "ideal")
    step = output_step(path)
    assert_matches_ort(ours, run_ort(path, x), step)  # the QDQ graph in float32


@pytest.mark.parametrize("model,per_channel,activation", VARIANTS)
def test_sram_digital_follows_the_model_quantisation(qdq_model, digits, model, per_channel, activation):
    """On a bit-exact digital crossbar the model's own grids are used: inputs quantised with
    the QDQ scale (exact, as the input already lies on it) and the int8 weight codes kept, so
    the chip computes what onnxruntime computes, and accuracy stays that of the float model."""
    path = qdq_model(model, per_channel, activation)
    file, data = MODELS[model]
    x = digits[data].astype(np.float32)
    ours, compiled = run_nmc(path, x, "sram-digital")
    g = compiled.graph
    crossbar = [m for m in g.mapping.values() if m.unit == "crossbar"]
    assert crossbar and all(m.quant.input_range_source == "qdq" for m in crossbar)
    for node in g.nodes():
        mapping = g.mapping[node.name]
        if mapping.unit == "crossbar":  # the input scale is the QDQ scale of the producer
            producer = g.producer(node.inputs[0])
            assert mapping.quant.input_scale == producer.op.scale[0]
    assert_matches_ort(ours, run_ort(path, x), output_step(path))
    float_accuracy = (run_ort(EXAMPLES / file, x).argmax(-1) == digits["y"]).mean()
    assert (ours.argmax(-1) == digits["y"]).mean() >= float_accuracy - 0.02


def test_per_channel_weight_codes_are_kept(qdq_model):
    """The crossbar holds exactly the model's int8 codes (per-channel scales match nmc's)."""
    path = qdq_model("mlp", True, "QUInt8")
    compiled = compile_model(path, "sram-digital")
    g = compiled.graph
    model = onnx.load(path)
    codes = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer if i.name.endswith("_quantized")}
    weights = sorted((v for v in codes.values() if v.dtype == np.int8 and v.shape[0] > 1), key=lambda v: v.shape)
    ours = sorted((g.constants[m.quant.weights][0].T for m in g.mapping.values() if m.unit == "crossbar"),
                  key=lambda v: v.shape)
    assert len(ours) == len(weights) == 3
    for a, b in zip(ours, weights):
        np.testing.assert_array_equal(a, b)


def test_float_model_keeps_dynamic_input_scale():
    compiled = compile_model(EXAMPLES / "digits_mlp.onnx", "sram-digital")
    sources = {m.quant.input_range_source for m in compiled.graph.mapping.values() if m.unit == "crossbar"}
    assert sources == {"dynamic"}


# ---------------------------------------------------------------------------- the op itself

def qdq_model_of(x_shape, scale, zero, elem_type, opset=17, axis=None, dq_scale=None) -> onnx.ModelProto:
    """x → QuantizeLinear → DequantizeLinear → y, parameters as initializers."""
    scale = np.asarray(scale, np.float32)
    dtype = helper.tensor_dtype_to_np_dtype(elem_type)
    inits = [numpy_helper.from_array(scale, "s"), numpy_helper.from_array(np.asarray(zero, dtype=dtype), "z"),
             numpy_helper.from_array(np.asarray(scale if dq_scale is None else dq_scale, np.float32), "s2")]
    attrs = {} if axis is None else {"axis": axis}
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"], **attrs),
             helper.make_node("DequantizeLinear", ["q", "s2", "z"], ["y"], **attrs)]
    graph = helper.make_graph(nodes, "qdq", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, x_shape)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    onnx.checker.check_model(model)
    return model


def _inputs(shape, scale: float, rng) -> np.ndarray:
    """Values on ties (k + 1/2)·scale, far outside the range (saturation) and random."""
    x = rng.normal(0, 200 * scale, size=shape).astype(np.float32)
    flat = x.reshape(-1)
    flat[: flat.size // 3] = (np.arange(flat.size // 3) - flat.size // 6 + 0.5).astype(np.float32) * np.float32(scale)
    flat[-4:] = [1e6, -1e6, 0.0, -0.0]
    return x


@pytest.mark.parametrize("elem_type,zero,opset", [
    (TensorProto.INT8, 3, 10), (TensorProto.UINT8, 128, 13), (TensorProto.INT8, -128, 19),
    (TensorProto.UINT8, 0, 17), (TensorProto.INT16, -7, 21), (TensorProto.UINT16, 40000, 21),
    (TensorProto.INT4, 1, 21), (TensorProto.UINT4, 8, 21),
])
def test_fake_quant_per_tensor_is_exact(elem_type, zero, opset):
    rng = np.random.default_rng(0)
    scale = 0.0375
    model = qdq_model_of([2, 3, 5, 4], scale, zero, elem_type, opset)
    x = _inputs((2, 3, 5, 4), scale, rng)
    want = ReferenceEvaluator(qdq_model_of([2, 3, 5, 4], scale, zero, elem_type, max(opset, 21))).run(None, {"x": x})[0]
    got = execute(compile_model(model, "ideal").program, {"x": x})["y"]
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("zero", [[0, 0, 0], [5, 5, 5], [-3, 0, 100]])
def test_fake_quant_per_axis_is_exact(zero):
    rng = np.random.default_rng(1)
    scale = [0.02, 0.5, 0.125]
    model = qdq_model_of([1, 4, 3, 2], scale, zero, TensorProto.INT8, 13, axis=2)
    x = _inputs((1, 4, 3, 2), 0.1, rng)
    want = ReferenceEvaluator(qdq_model_of([1, 4, 3, 2], scale, zero, TensorProto.INT8, 21, axis=2)).run(None, {"x": x})[0]
    got = execute(compile_model(model, "ideal").program, {"x": x})["y"]
    np.testing.assert_array_equal(got, want)


def test_per_axis_qdq_before_a_crossbar_layer_uses_its_range():
    """A per-channel activation grid has no single scale: the crossbar input covers its range."""
    rng = np.random.default_rng(2)
    scale, zero = np.array([0.01, 0.02, 0.04], np.float32), np.array([0, 10, -20], np.int8)
    w = rng.normal(size=(4, 3, 3, 3)).astype(np.float32)
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"], axis=1),
             helper.make_node("DequantizeLinear", ["q", "s", "z"], ["d"], axis=1),
             helper.make_node("Conv", ["d", "w"], ["y"], pads=[1, 1, 1, 1])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 6, 6])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4, 6, 6])],
                              [numpy_helper.from_array(a, n) for n, a in (("s", scale), ("z", zero), ("w", w))])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])
    compiled = compile_model(model, "sram-digital")
    (quant,) = [m.quant for m in compiled.graph.mapping.values() if m.unit == "crossbar"]
    assert quant.input_range_source == "qdq" and quant.input_signed
    assert quant.input_scale == pytest.approx(float(((127 - zero.astype(float)) * scale).max()) / 127)
    x = rng.normal(0, 1, (5, 3, 6, 6)).astype(np.float32)
    want = ReferenceEvaluator(model).run(None, {"x": x})[0]
    got = execute(compiled.program, {"x": x}, target=compiled.target)["y"]
    assert np.abs(got - want).max() <= 0.02 * np.abs(want).max()


# ---------------------------------------------------------------------------- integer tensors

def _model(nodes, inits, out_type=TensorProto.FLOAT, opset=17, outputs=None):
    outputs = outputs or [helper.make_tensor_value_info("y", out_type, [2, 3])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])], outputs,
                              [numpy_helper.from_array(v, k) for k, v in inits.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


S, Z = np.array(0.1, np.float32), np.array(0, np.int8)


def _ort(model: onnx.ModelProto, feeds: dict) -> list[np.ndarray]:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)


def _quantize_to_output(shape, scale, zero, elem_type, axis=None, opset=21) -> onnx.ModelProto:
    """x → QuantizeLinear → q (a graph output) and → DequantizeLinear → d (its pair)."""
    attrs = {} if axis is None else {"axis": axis}
    dtype = helper.tensor_dtype_to_np_dtype(elem_type)
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"], **attrs),
             helper.make_node("DequantizeLinear", ["q", "s", "z"], ["d"], **attrs)]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("q", elem_type, shape),
                               helper.make_tensor_value_info("d", TensorProto.FLOAT, shape)],
                              [numpy_helper.from_array(np.asarray(scale, np.float32), "s"),
                               numpy_helper.from_array(np.asarray(zero, dtype), "z")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


@pytest.mark.parametrize("elem_type,zero,axis", [
    (TensorProto.INT8, 3, None), (TensorProto.UINT8, 128, None), (TensorProto.INT16, -7, None),
    (TensorProto.UINT16, 40000, None), (TensorProto.INT8, [5, -3, 0], 1), (TensorProto.UINT8, [0, 7, 255], 1),
    (TensorProto.INT16, [100, 100, 100], 1), (TensorProto.UINT16, [1, 2, 65535], 1),
])
def test_quantised_codes_as_a_graph_output(elem_type, zero, axis):
    """The codes (round half to even, saturated) in i32 on the vector unit, equal to
    onnxruntime's on ties and far outside the range; the pair beside them stays one FakeQuant."""
    shape, scale = [2, 3, 40], 0.0375 if axis is None else [0.0375, 0.5, 0.125]
    model = _quantize_to_output(shape, scale, zero, elem_type, axis)
    x = _inputs(tuple(shape), 0.0375, np.random.default_rng(3))
    want_q, want_d = _ort(model, {"x": x})
    compiled = compile_model(model, "ideal")
    got = execute(compiled.program, {"x": x})
    assert [p.dtype for p in compiled.program.outputs] == ["i32", "f32"]  # returned as int32
    np.testing.assert_array_equal(got["q"], want_q.astype(np.int32))
    np.testing.assert_array_equal(got["d"], want_d)
    pair = compiled.graph.producer(compiled.graph.outputs[1])
    assert isinstance(pair.op, ops.FakeQuant) and pair.inputs == ("x",)


def test_codes_read_by_another_op():
    model = _model([helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]),
                    helper.make_node("Cast", ["q"], ["c"], to=TensorProto.FLOAT),
                    helper.make_node("Mul", ["c", "s"], ["y"])], {"s": S, "z": np.array(-4, np.int8)})
    x = np.array([[0.05, 0.15, -0.25], [13.0, -13.0, 0.349]], np.float32)
    got = execute(compile_model(model).program, {"x": x})["y"]
    np.testing.assert_array_equal(got, _ort(model, {"x": x})[0])


def test_a_dequantisation_on_another_grid_reads_the_codes():
    model = qdq_model_of([2, 3], 0.1, 0, TensorProto.INT8, dq_scale=0.2)
    x = np.array([[0.05, 0.15, -0.25], [13.0, -13.0, 0.349]], np.float32)
    got = execute(compile_model(model).program, {"x": x})["y"]
    np.testing.assert_array_equal(got, _ort(model, {"x": x})[0])


def test_four_bit_codes_outside_their_pair_are_refused():
    model = _model([helper.make_node("QuantizeLinear", ["x", "s", "z"], ["y"])],
                   {"s": S, "z": np.array(0, np.int8)}, TensorProto.INT8, opset=21)
    model.graph.initializer[1].CopyFrom(helper.make_tensor("z", TensorProto.INT4, [], [0]))
    model.graph.output[0].type.tensor_type.elem_type = TensorProto.INT4
    with pytest.raises(UnsupportedOpError, match="INT4 codes, an element type nmc does not compute"):
        compile_model(model)


def test_blocked_quantisation_is_refused():
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"], axis=1, block_size=3),
             helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"], axis=1, block_size=3)]
    model = _model(nodes, {"s": np.ones((2, 1), np.float32), "z": np.zeros((2, 1), np.int8)}, opset=21)
    with pytest.raises(UnsupportedOpError, match="blocked quantisation"):
        compile_model(model)


@pytest.mark.parametrize("elem_type,zero,axis", [
    (TensorProto.INT8, -3, None), (TensorProto.UINT8, 128, None), (TensorProto.INT16, 1000, None),
    (TensorProto.UINT16, 7, None), (TensorProto.INT32, 0, None), (TensorProto.INT8, [1, -3, 7], 1),
    (TensorProto.UINT8, [0, 3, 255], 1), (TensorProto.INT32, [0, 0, 0], 1),
])
def test_dequantising_an_integer_input(elem_type, zero, axis):
    """(x − zero_point) · scale: the subtraction in i32, the product in f32, as onnxruntime."""
    dtype = helper.tensor_dtype_to_np_dtype(elem_type)
    scale = np.float32(0.0375) if axis is None else np.array([0.1, 0.25, 3.0], np.float32)
    graph = helper.make_graph(
        [helper.make_node("DequantizeLinear", ["x", "s", "z"], ["y"], **({} if axis is None else {"axis": axis}))],
        "g", [helper.make_tensor_value_info("x", elem_type, [2, 3, 50])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3, 50])],
        [numpy_helper.from_array(np.asarray(scale), "s"), numpy_helper.from_array(np.asarray(zero, dtype), "z")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    info = np.iinfo(dtype)
    x = np.random.default_rng(4).integers(info.min, info.max, (2, 3, 50), endpoint=True).astype(dtype)
    x.reshape(-1)[:2] = [info.min, info.max]
    compiled = compile_model(model, "ideal")
    assert [p.dtype for p in compiled.program.inputs] == ["i32"]
    np.testing.assert_array_equal(execute(compiled.program, {"x": x})["y"], _ort(model, {"x": x})[0])


@pytest.mark.parametrize("model", ["mlp", "cnn"])
def test_verify_accepts_one_step_of_the_output_grid(qdq_model, digits, model):
    """nmc verify passes a QDQ model on ideal: the outputs agree with onnxruntime's up to one
    step of the model's own output grid (rounding ties), not to 1e-4."""
    from nmc.compiler.verify import output_steps, verify_model

    path = qdq_model(model, True, "QInt8")
    proto = onnx.load(path)
    assert output_steps(proto) == {proto.graph.output[0].name: pytest.approx(output_step(path))}
    x = digits[MODELS[model][1]].astype(np.float32)
    report = verify_model(path, {proto.graph.input[0].name: x}, "ideal")
    assert report.ok, report.format()
    assert "one step of a QDQ output's grid" in report.format()
