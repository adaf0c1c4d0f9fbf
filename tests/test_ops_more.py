"""The operators real models need beyond the first set (issue «Every real model compiles»):
small models compiled for ``ideal`` and run on the simulator against onnxruntime, the IR the
converters choose (views, crossbar layers), ConvTranspose on a crossbar target, and the one
clean line each refused attribute gives."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from onnx.reference import ReferenceEvaluator

from helpers import make_model, run_ort
from nmc.compiler import compile_model
from nmc.compiler.errors import CompileError, NotConstantError, UnsupportedOpError
from nmc.compiler.frontend import import_onnx
from nmc.compiler.ir import ops
from nmc.compiler.ir.verify import BatchAxisError
from nmc.runtime import SimOptions, execute

node = helper.make_node
RNG = np.random.default_rng(7)


def weights(*shape) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


def _feeds(model: onnx.ModelProto, samples: int = 2, scale: float = 2.0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    inits = {i.name for i in model.graph.initializer}
    feeds = {}
    for vi in model.graph.input:
        if vi.name in inits:
            continue
        shape = [d.dim_value or samples for d in vi.type.tensor_type.shape.dim]
        feeds[vi.name] = (scale * rng.standard_normal(shape)).astype(np.float32)
    return feeds


def assert_matches_onnxruntime(model: onnx.ModelProto, feeds=None, target: str = "ideal", rtol: float = 1e-5):
    feeds = feeds or _feeds(model)
    expected = run_ort(model, feeds)
    got = execute(compile_model(model, target=target).program, feeds)
    for out, ref in zip(model.graph.output, expected):
        assert got[out.name].shape == ref.shape, out.name
        scale = max(float(np.max(np.abs(ref))), 1e-30)
        assert float(np.max(np.abs(got[out.name] - ref))) <= rtol * scale, out.name


def one(op: str, attrs: dict | None = None, inputs: dict | None = None, inits: dict | None = None,
        opset: int = 17, output_shape=None, extra_inputs: tuple[str, ...] = ()) -> onnx.ModelProto:
    """A model of one node reading ``x`` (and ``extra_inputs``, initializers or inputs)."""
    inputs = inputs or {"x": ["N", 3, 5, 5]}
    names = list(inputs)[:1] + list(extra_inputs)
    return make_model([node(op, names, ["y"], **(attrs or {}))], inputs, {"y": output_shape}, inits or {}, opset)


def names_of(model: onnx.ModelProto, target: str = "ideal") -> list[type]:
    return [type(n.op) for n in compile_model(model, target=target).graph.nodes()]


# ----------------------------------------------------------------------------- element-wise
ELEMENTWISE = {
    "HardSigmoid": ({"alpha": 0.3, "beta": 0.4}, 17),
    "HardSwish": ({}, 17),
    "Elu": ({"alpha": 0.7}, 17),
    "Selu": ({}, 17),
    "Selu-params": ({"alpha": 1.2, "gamma": 0.8}, 17),
    "Softplus": ({}, 17),
    "Mish": ({}, 18),
    "Sign": ({}, 17),
    "LogSoftmax": ({"axis": 1}, 17),
    "LogSoftmax-11": ({"axis": 1}, 11),  # the trailing axes from axis 1
}


@pytest.mark.parametrize("case", sorted(ELEMENTWISE))
def test_elementwise_matches_onnxruntime(case):
    attrs, opset = ELEMENTWISE[case]
    model = one(case.split("-")[0], attrs, opset=opset)
    feeds = _feeds(model, scale=4.0)
    if case == "Sign":
        feeds["x"] = np.round(feeds["x"])  # zeros too
    if case == "Softplus":
        feeds["x"][0, 0, 0] = [-100.0, -30.0, 0.0, 30.0, 100.0]  # no overflow at either end
    assert_matches_onnxruntime(model, feeds)


@pytest.mark.parametrize("slope", ["per-channel", "scalar", "input"])
def test_prelu_matches_onnxruntime(slope):
    if slope == "input":
        model = one("PRelu", inputs={"x": [2, 3, 5, 5], "s": [5]}, extra_inputs=("s",))
    else:
        value = np.array([0.25], np.float32) if slope == "scalar" else np.array([0.1, -0.2, 0.3], np.float32)
        model = one("PRelu", inits={"s": value.reshape(-1, 1, 1) if slope != "scalar" else value}, extra_inputs=("s",))
    assert_matches_onnxruntime(model)
    if slope == "scalar":
        assert names_of(model) == [ops.Unary]  # a LeakyRelu


# ----------------------------------------------------------------------------- reductions and norms
@pytest.mark.parametrize("op", ["ReduceL2", "ReduceSumSquare", "ReduceLogSumExp", "ReduceL1", "ReduceLogSum"])
@pytest.mark.parametrize("keepdims", [0, 1])
@pytest.mark.parametrize("opset", [13, 18])
def test_reductions_match_onnxruntime(op, keepdims, opset):
    if opset < 18:
        model = one(op, {"axes": [2, 3], "keepdims": keepdims}, opset=opset)
    else:
        model = one(op, {"keepdims": keepdims}, inits={"axes": np.array([1, -1], np.int64)}, opset=opset,
                    extra_inputs=("axes",))
    feeds = _feeds(model)
    if op == "ReduceLogSum":
        feeds["x"] = np.abs(feeds["x"])
    assert_matches_onnxruntime(model, feeds)


def test_instance_and_group_normalization_match_onnxruntime():
    inst = one("InstanceNormalization", {"epsilon": 1e-3}, inits={"s": weights(3), "b": weights(3)},
               extra_inputs=("s", "b"))
    assert_matches_onnxruntime(inst)
    group = one("GroupNormalization", {"num_groups": 2, "epsilon": 1e-4}, inputs={"x": ["N", 4, 3, 5]},
                inits={"s": weights(4), "b": weights(4)}, opset=21, output_shape=["N", 4, 3, 5],
                extra_inputs=("s", "b"))
    assert_matches_onnxruntime(group)


def test_lrn_matches_onnxruntime_and_the_formula_for_even_sizes():
    assert_matches_onnxruntime(one("LRN", {"size": 3, "alpha": 0.01, "beta": 0.6, "bias": 1.5},
                                   inputs={"x": ["N", 6, 3, 3]}))
    # onnxruntime refuses even sizes; the spec's window is c - 1 .. c + 2 for size 4
    model = one("LRN", {"size": 4, "alpha": 0.02}, inputs={"x": [1, 6, 2, 2]})
    x = _feeds(model)["x"]
    square = np.pad(x * x, ((0, 0), (1, 2), (0, 0), (0, 0)))
    window = sum(square[:, k:k + 6] for k in range(4))
    expected = x / (1.0 + 0.02 / 4 * window) ** 0.75
    got = execute(compile_model(model).program, {"x": x})["y"]
    np.testing.assert_allclose(got, expected, rtol=1e-5)


@pytest.mark.parametrize("exclusive", [0, 1])
@pytest.mark.parametrize("reverse", [0, 1])
@pytest.mark.parametrize("axis", [1, 2, -1])
def test_cumsum_matches_onnxruntime(exclusive, reverse, axis):
    model = one("CumSum", {"exclusive": exclusive, "reverse": reverse}, inits={"axis": np.array(axis, np.int64)},
                extra_inputs=("axis",))
    assert_matches_onnxruntime(model)


# ----------------------------------------------------------------------------- shapes
def test_tile_and_expand_are_one_broadcast_copy():
    tile = one("Tile", inputs={"x": ["N", 2, 3]}, inits={"r": np.array([1, 3, 2], np.int64)}, extra_inputs=("r",))
    expand = one("Expand", inputs={"x": ["N", 3, 1]}, inits={"r": np.array([1, 3, 4], np.int64)},
                 extra_inputs=("r",))
    grow = one("Expand", inputs={"x": [3, 1]}, inits={"r": np.array([2, 1, 1, 4], np.int64)}, extra_inputs=("r",))
    for model in (tile, expand, grow):
        assert_matches_onnxruntime(model)
        assert [t for t in names_of(model) if t is not ops.Reshape] == [ops.Expand]


@pytest.mark.parametrize("opset", [9, 12])
def test_dropout_with_a_declared_mask_nothing_reads(opset):
    """SqueezeNet and VGG exports (opset 9) declare the mask output and never read it."""
    model = make_model([node("Dropout", ["x"], ["d", "mask"], **({"ratio": 0.5} if opset < 12 else {})),
                        node("Relu", ["d"], ["y"])], {"x": ["N", 3, 4]}, {"y": ["N", 3, 4]}, opset=opset)
    assert_matches_onnxruntime(model)


@pytest.mark.parametrize("batch", ["N", 2])
@pytest.mark.parametrize("opset", [9, 13])
def test_dropout_mask_is_all_true_when_read_or_declared_as_an_output(batch, opset):
    """Inference keeps every element: the mask is a constant, all true (bool from opset 10, ones
    of the data's type before). onnxruntime agrees from opset 12; its kernel for opsets 7-11
    writes a mask of zeros, so those are checked against ONNX's reference, which keeps all."""
    mask_type = TensorProto.BOOL if opset >= 10 else TensorProto.FLOAT
    nodes = [node("Dropout", ["x"], ["d", "mask"], **({"ratio": 0.5} if opset < 12 else {})),
             node("Cast", ["mask"], ["kept"], to=TensorProto.FLOAT), node("Mul", ["d", "kept"], ["y"])]
    model = make_model(nodes, {"x": [batch, 3, 4]}, {"y": [batch, 3, 4]}, opset=opset)
    model.graph.output.append(helper.make_tensor_value_info("mask", mask_type, [batch, 3, 4]))
    feeds = _feeds(model, samples=3)
    want = run_ort(model, feeds) if opset >= 12 else ReferenceEvaluator(model).run(None, feeds)
    got = execute(compile_model(model).program, feeds)
    np.testing.assert_array_equal(got["y"], want[0])
    np.testing.assert_array_equal(got["mask"], np.asarray(want[1]).astype(got["mask"].dtype))
    assert np.asarray(want[1]).all() and got["mask"].shape == ((3, 3, 4) if batch == "N" else (2, 3, 4))


def test_dropout_mask_costs_nothing_when_nothing_reads_it():
    declared = make_model([node("Dropout", ["x"], ["d", "mask"], ratio=0.5), node("Relu", ["d"], ["y"])],
                          {"x": ["N", 3, 4]}, {"y": ["N", 3, 4]}, opset=9)
    plain = make_model([node("Relu", ["x"], ["y"])], {"x": ["N", 3, 4]}, {"y": ["N", 3, 4]}, opset=9)
    assert compile_model(declared).program.consts.keys() == compile_model(plain).program.consts.keys()
    assert names_of(declared) == [ops.Unary]


# ----------------------------------------------------------------------------- Pad modes
def pad_model(mode: str, pads, shape=("N", 2, 4, 5), opset: int = 19, axes=None) -> onnx.ModelProto:
    if opset < 11:
        return make_model([node("Pad", ["x"], ["y"], mode=mode, pads=list(pads))], {"x": list(shape)}, {"y": None},
                          opset=opset)
    inits = {"pads": np.array(pads, np.int64)}
    names = ["x", "pads"]
    if axes is not None:
        inits["axes"] = np.array(axes, np.int64)
        names += ["", "axes"]
    return make_model([node("Pad", names, ["y"], mode=mode)], {"x": list(shape)}, {"y": None}, inits, opset)


PADS = {
    "spatial": [0, 0, 1, 2, 0, 0, 3, 1],
    "one side": [0, 0, 0, 3, 0, 0, 2, 0],
    "widest": [0, 0, 3, 4, 0, 0, 3, 4],  # reflect: up to size − 1; edge and wrap would take more
    "channels": [0, 1, 0, 0, 0, 1, 2, 0],
}


@pytest.mark.parametrize("mode", ["edge", "reflect", "wrap"])
@pytest.mark.parametrize("case", sorted(PADS))
def test_pad_modes_match_onnxruntime_with_a_free_batch(mode, case):
    model = pad_model(mode, PADS[case])
    assert_matches_onnxruntime(model, rtol=0)
    padded_axes = sum(1 for a in range(4) if PADS[case][a] or PADS[case][4 + a])
    assert names_of(model) == [ops.Gather] * padded_axes  # one gather per padded axis, by a constant table


@pytest.mark.parametrize("mode, pads, opset, axes", [
    ("reflect", [0, 0, 1, 2, 0, 0, 2, 1], 2, None),    # pads as an attribute
    ("edge", [0, 0, 1, 2, 0, 0, 2, 1], 13, None),
    ("edge", [2, 1, 1, 3], 18, [2, -1]),             # the axes input
    ("wrap", [0, 0, 5, 7, 0, 0, 6, 9], 19, None),      # wider than the axis: wrapped again
    ("edge", [0, 0, 6, 0, 0, 0, 9, 1], 19, None),
])
def test_pad_mode_variants_match_onnxruntime(mode, pads, opset, axes):
    assert_matches_onnxruntime(pad_model(mode, pads, opset=opset, axes=axes), rtol=0)


@pytest.mark.parametrize("mode", ["edge", "reflect", "wrap"])
@pytest.mark.parametrize("size", [1, 2, 3, 5])
def test_pad_sources_follow_numpy_pad_at_any_width(mode, size):
    """ONNX's reference pads with numpy.pad (onnxruntime refuses reflect pads beyond size − 1)."""
    from nmc.compiler.frontend.ops.shape import pad_sources

    values = np.arange(size) * 10
    for begin in range(8):
        for end in range(8):
            want = np.pad(values, (begin, end), mode=mode)
            np.testing.assert_array_equal(values[pad_sources(mode, size, begin, end)], want)


def test_pad_mode_refusals_name_the_node():
    with pytest.raises(UnsupportedOpError, match=r"node 'Pad_0' .*mode='symmetric'; supported: 'constant', 'edge'"):
        compile_model(pad_model("symmetric", [0, 0, 1, 1, 0, 0, 1, 1]))
    with pytest.raises(UnsupportedOpError, match="node 'Pad_0' .*negative pads"):
        compile_model(pad_model("edge", [0, 0, -1, 1, 0, 0, 1, 1]))
    with pytest.raises(BatchAxisError, match="node 'Pad_0' .*pads the batch axis"):
        compile_model(pad_model("reflect", [1, 0, 0, 0, 1, 0, 0, 0]))
    fixed = pad_model("reflect", [1, 0, 0, 0, 1, 0, 0, 0], shape=(2, 2, 4, 5))  # a fixed batch is one tensor
    assert_matches_onnxruntime(fixed, rtol=0)


# ----------------------------------------------------------------------------- MaxPool's Indices
def max_pool_with_indices(shape, attrs: dict, opset: int = 12) -> onnx.ModelProto:
    model = make_model([node("MaxPool", ["x"], ["y", "indices"], **attrs)], {"x": list(shape)}, {"y": None},
                       opset=opset)
    inferred = onnx.shape_inference.infer_shapes(model)
    (indices,) = [o for o in inferred.graph.value_info if o.name == "indices"] or \
        [helper.make_tensor_value_info("indices", TensorProto.INT64, None)]
    model.graph.output.append(indices)
    return model


POOLS = {
    "2-d": ([2, 3, 6, 7], {"kernel_shape": [2, 3], "strides": [2, 2]}),
    "pads": ([2, 2, 5, 5], {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1], "strides": [2, 2]}),
    "column-major": ([1, 3, 5, 6], {"kernel_shape": [2, 2], "pads": [0, 1, 1, 0], "storage_order": 1}),
    "dilations": ([1, 2, 7, 7], {"kernel_shape": [2, 2], "dilations": [2, 3]}),
    "ceil_mode": ([1, 2, 6, 6], {"kernel_shape": [3, 3], "strides": [2, 2], "ceil_mode": 1}),
    "1-d": ([2, 3, 9], {"kernel_shape": [3], "strides": [2], "pads": [1, 1]}),
    "3-d": ([1, 2, 4, 5, 4], {"kernel_shape": [2, 2, 2], "strides": [2, 2, 1]}),
}


@pytest.mark.parametrize("case", sorted(POOLS))
def test_max_pool_indices_match_onnxruntime(case):
    shape, attrs = POOLS[case]
    model = max_pool_with_indices(shape, attrs)
    x = RNG.permutation(int(np.prod(shape))).reshape(shape).astype(np.float32)  # no ties
    y, indices = run_ort(model, {"x": x})
    got = execute(compile_model(model).program, {"x": x})
    np.testing.assert_array_equal(got["y"], y)
    np.testing.assert_array_equal(got["indices"], indices)


def test_max_pool_indices_of_ties_take_the_first_and_need_a_fixed_batch():
    x = np.zeros((1, 1, 4, 4), np.float32)
    x[0, 0, 1:3, 1:3] = 5.0
    model = max_pool_with_indices([1, 1, 4, 4], {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]})
    got = execute(compile_model(model).program, {"x": x})
    np.testing.assert_array_equal(got["indices"], run_ort(model, {"x": x})[1])
    with pytest.raises(BatchAxisError, match="node 'MaxPool_0' .*Indices count the elements of the samples before"):
        compile_model(max_pool_with_indices(["N", 1, 4, 4], {"kernel_shape": [2, 2]}))


# ----------------------------------------------------------------------------- Einsum
EINSUM = [
    ("bij,bjk->bik", [["N", 3, 4], ["N", 4, 5]]),
    ("bhid,bhjd->bhij", [["N", 2, 3, 4], ["N", 2, 5, 4]]),      # attention scores
    ("bhij,bhjd->bhid", [["N", 2, 3, 5], ["N", 2, 5, 4]]),      # attention-weighted values
    ("...ij,...jk->...ik", [["N", 2, 3, 4], ["N", 2, 4, 5]]),
    ("...ij,...kj->...ik", [["N", 2, 3, 4], ["N", 2, 5, 4]]),
    ("bij,bkj->bki", [["N", 3, 4], ["N", 5, 4]]),
    ("bjk,bij", [[2, 4, 5], [2, 3, 4]]),                        # implicit output: ik, b summed
    ("ij->ji", [[3, 4]]),
    ("ij->i", [[3, 4]]),
    ("i,j->ij", [[3], [4]]),
    ("i,i", [[5], [5]]),
]


@pytest.mark.parametrize("equation, shapes", EINSUM, ids=[e for e, _ in EINSUM])
def test_einsum_matches_onnxruntime(equation, shapes):
    names = [f"x{k}" for k in range(len(shapes))]
    model = make_model([node("Einsum", names, ["y"], equation=equation)], dict(zip(names, shapes)), {"y": None},
                       opset=12)
    assert_matches_onnxruntime(model)


@pytest.mark.parametrize("equation, x_shape, weight, weight_first", [
    ("bsd,dk->bsk", ["N", 3, 4], (4, 6), False),
    ("bsd,kd->bsk", ["N", 3, 4], (6, 4), False),
    ("dk,bsd->bsk", ["N", 3, 4], (4, 6), True),
    ("bsd,dhk->bshk", ["N", 3, 4], (4, 2, 3), False),   # a projection into heads
    ("bshk,hkd->bsd", ["N", 3, 2, 3], (2, 3, 4), False),  # and back out of them
], ids=lambda v: v if isinstance(v, str) else None)
def test_einsum_with_a_constant_operand_is_a_crossbar_layer(equation, x_shape, weight, weight_first):
    model = make_model([node("Einsum", ["w", "x"] if weight_first else ["x", "w"], ["y"], equation=equation)],
                       {"x": x_shape}, {"y": None}, {"w": weights(*weight)}, opset=12)
    assert_matches_onnxruntime(model)
    assert ops.Dense in names_of(model) and ops.MatMul not in names_of(model)
    assert any(record.unit == "crossbar" for record in compile_model(model, target="pcm").graph.mapping.values())


DIAGONALS = [
    ("...ii->...i", [["N", 3, 3]]),
    ("bii->bi", [["N", 4, 4]]),
    ("bii", [["N", 4, 4]]),                        # implicit output: the trace, b kept
    ("bjii->bij", [["N", 2, 3, 3]]),
    ("biji->bj", [["N", 3, 2, 3]]),                 # the diagonal summed
    ("bij,bjj->bi", [["N", 3, 4], ["N", 4, 4]]),  # a diagonal in the second operand, then a product
    ("ii->i", [[5, 5]]),
    ("iii->i", [[3, 3, 3]]),
    ("ii", [[4, 4]]),
]


@pytest.mark.parametrize("equation, shapes", DIAGONALS, ids=[e for e, _ in DIAGONALS])
def test_einsum_diagonals_match_onnxruntime(equation, shapes):
    names = [f"x{k}" for k in range(len(shapes))]
    model = make_model([node("Einsum", names, ["y"], equation=equation)], dict(zip(names, shapes)), {"y": None},
                       opset=12)
    assert_matches_onnxruntime(model, rtol=1e-6)
    assert ops.Gather in names_of(model)


def test_einsum_diagonal_of_a_constant_operand_folds_into_the_weight():
    w = weights(4, 4, 5)
    model = make_model([node("Einsum", ["x", "w"], ["y"], equation="bsd,ddk->bsk")], {"x": ["N", 3, 4]},
                       {"y": None}, {"w": w}, opset=12)
    assert_matches_onnxruntime(model, rtol=1e-6)
    assert names_of(model) == [ops.Dense]


@pytest.mark.parametrize("equation, shapes, error, why", [
    ("iij->ij", [["N", 1, 3]], BatchAxisError, "diagonal across axis 0"),
    ("bii->bi", [[2, 3, 4]], UnsupportedOpError, r"label 'i' has sizes \[3, 4\] in one operand"),
    ("ij,jk,kl->il", [[2, 3], [3, 4], [4, 5]], UnsupportedOpError, "3 operands"),
])
def test_other_einsum_equations_are_refused_naming_node_and_equation(equation, shapes, error, why):
    names = [f"x{k}" for k in range(len(shapes))]
    out_shape = [2, 3] if equation == "bii->bi" else None  # shape inference cannot size a bad diagonal
    model = make_model([node("Einsum", names, ["y"], equation=equation, name="mix")], dict(zip(names, shapes)),
                       {"y": out_shape}, opset=12)
    with pytest.raises(error, match=why) as caught:
        import_onnx(model)
    message = str(caught.value)
    assert "'mix'" in message and "\n" not in message
    if error is UnsupportedOpError:
        assert repr(equation) in message


# ----------------------------------------------------------------------------- ConvTranspose
CONV_TRANSPOSE = {
    "plain": ([1, 2, 4, 4], (2, 3, 3, 3), {}),
    "stride 2": ([1, 2, 4, 4], (2, 3, 3, 3), {"strides": [2, 2]}),
    "pads, output_padding": ([1, 2, 4, 5], (2, 3, 3, 3), {"strides": [2, 3], "pads": [1, 0, 1, 2],
                                                          "output_padding": [1, 2]}),
    "dilations": ([1, 2, 4, 4], (2, 3, 3, 2), {"strides": [2, 1], "dilations": [2, 3], "pads": [3, 1, 0, 2]}),
    "groups": ([1, 4, 3, 3], (4, 3, 3, 3), {"group": 2, "strides": [2, 2]}),
    "depthwise": ([1, 4, 3, 3], (4, 1, 2, 2), {"group": 4, "strides": [2, 2]}),
    "SAME_UPPER": ([1, 2, 3, 4], (2, 3, 3, 3), {"strides": [2, 2], "auto_pad": "SAME_UPPER"}),
    "SAME_LOWER": ([1, 2, 3, 4], (2, 3, 3, 3), {"strides": [2, 2], "auto_pad": "SAME_LOWER"}),
    "output_shape larger": ([1, 2, 3, 4], (2, 3, 3, 3), {"strides": [3, 2], "output_shape": [10, 8]}),
    "output_shape smaller": ([1, 2, 3, 4], (2, 3, 3, 3), {"strides": [3, 2], "output_shape": [7, 6]}),
    "pads beyond the kernel": ([1, 2, 5, 5], (2, 3, 2, 2), {"strides": [2, 2], "pads": [3, 2, 3, 2]}),
    "1-d": ([1, 2, 7], (2, 3, 4), {"strides": [3], "pads": [2, 1]}),
    "3-d": ([1, 2, 3, 3, 3], (2, 2, 2, 3, 2), {"strides": [2, 1, 2]}),
    "batched": (["N", 3, 4, 4], (3, 2, 2, 2), {"strides": [2, 2]}),
}


@pytest.mark.parametrize("case", sorted(CONV_TRANSPOSE))
def test_conv_transpose_matches_onnxruntime(case):
    shape, kernel, attrs = CONV_TRANSPOSE[case]
    inits = {"w": weights(*kernel), "b": weights(kernel[1] * attrs.get("group", 1))}
    model = one("ConvTranspose", attrs, inputs={"x": shape}, inits=inits, extra_inputs=("w", "b"))
    assert_matches_onnxruntime(model)
    assert ops.Conv in names_of(model)


def _upsampling_decoder(batch="N"):
    """A U-Net-style decoder step: ReLU, a stride-2 ConvTranspose with padding and output padding.
    Its weights come from their own stream, so the error bounds below do not depend on which
    tests ran before (over seeds 0-7 the largest error is 0.04-0.09 of the largest output)."""
    rng = np.random.default_rng(0)
    inits = {"w": rng.standard_normal((8, 4, 3, 3)).astype(np.float32),
             "b": rng.standard_normal(4).astype(np.float32)}
    return make_model([node("Relu", ["x"], ["r"]),
                       node("ConvTranspose", ["r", "w", "b"], ["y"], strides=[2, 2], pads=[1, 1, 1, 1],
                            output_padding=[1, 1])],
                      {"x": [batch, 8, 6, 6]}, {"y": None}, inits)


def test_conv_transpose_runs_on_crossbars_as_a_conv():
    """On pcm (noise off) the ConvTranspose is exactly the Conv over its zero-upsampled input that
    the converter builds, on crossbars, and as close to float as a Conv there (8-bit ADCs)."""
    model = _upsampling_decoder()
    compiled = compile_model(model, target="pcm")
    convs = [n for n in compiled.graph.nodes() if isinstance(n.op, ops.Conv)]
    assert len(convs) == 1 and compiled.graph.mapping[convs[0].name].unit == "crossbar"
    x = _feeds(model, samples=4)["x"]
    got = execute(compiled.program, {"x": x}, options=SimOptions(noise=False))["y"]
    expected = run_ort(model, {"x": x})[0]
    assert np.max(np.abs(got - expected)) <= 0.08 * np.max(np.abs(expected))
    assert np.sqrt(np.mean((got - expected) ** 2)) <= 0.15 * np.sqrt(np.mean(expected ** 2))
    # the same Conv, written by hand over the upsampled, padded input, on the same crossbars
    w, b = (onnx.numpy_helper.to_array(i) for i in model.graph.initializer)
    flipped = np.ascontiguousarray(w.transpose(1, 0, 2, 3)[:, :, ::-1, ::-1])
    explicit = make_model([node("Relu", ["x"], ["r"]), node("Conv", ["r", "w", "b"], ["y"], pads=[1, 1, 1, 1])],
                          {"x": ["N", 8, 12, 12]}, {"y": None}, {"w": flipped, "b": b})
    upsampled = np.zeros((4, 8, 12, 12), np.float32)
    upsampled[:, :, ::2, ::2] = x
    by_hand = execute(compile_model(explicit, target="pcm").program, {"x": upsampled},
                      options=SimOptions(noise=False))["y"]
    np.testing.assert_array_equal(got, by_hand)


# ----------------------------------------------------------------------------- Resize, Upsample
def resize(attrs: dict, scales=None, sizes=None, shape=("N", 2, 5, 7), opset: int = 19) -> onnx.ModelProto:
    inits, names = {}, ["x", ""]
    if scales is not None:
        inits["scales"] = np.array(scales, np.float32)
    names.append("scales" if scales is not None else "")
    if sizes is not None:
        inits["sizes"] = np.array(sizes, np.int64)
        names.append("sizes")
    if opset < 11:
        names = ["x", "scales"]
    return make_model([node("Resize", names, ["y"], **attrs)], {"x": list(shape)}, {"y": None}, inits, opset)


COORDINATES = ["half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "align_corners", "asymmetric",
               "tf_half_pixel_for_nn"]
SCALES = [[1, 1, 2, 3], [1, 1, 0.6, 0.5], [1, 1, 1.7, 2.5]]


@pytest.mark.parametrize("coordinates", COORDINATES)
@pytest.mark.parametrize("nearest", ["round_prefer_floor", "round_prefer_ceil", "floor", "ceil"])
@pytest.mark.parametrize("scales", SCALES, ids=["up", "down", "fractional"])
def test_resize_nearest_matches_onnxruntime(coordinates, nearest, scales):
    model = resize({"mode": "nearest", "coordinate_transformation_mode": coordinates, "nearest_mode": nearest},
                   scales)
    assert_matches_onnxruntime(model, rtol=0)


@pytest.mark.parametrize("coordinates", COORDINATES)
@pytest.mark.parametrize("mode", ["linear", "cubic"])
@pytest.mark.parametrize("scales", SCALES + [None], ids=["up", "down", "fractional", "sizes"])
def test_resize_interpolation_matches_onnxruntime(coordinates, mode, scales):
    attrs = {"mode": mode, "coordinate_transformation_mode": coordinates}
    model = resize(attrs, scales) if scales else resize(attrs, sizes=[2, 2, 9, 4], shape=(2, 2, 5, 7))
    assert_matches_onnxruntime(model, rtol=2e-6)


@pytest.mark.parametrize("case, model", [
    ("cubic exclude_outside", resize({"mode": "cubic", "exclude_outside": 1, "cubic_coeff_a": -0.5},
                                     [1, 1, 2, 1.5])),
    ("axes", resize({"mode": "linear", "axes": [3, 2]}, sizes=[4, 9])),
    ("not_larger", resize({"mode": "nearest", "keep_aspect_ratio_policy": "not_larger", "axes": [2, 3]},
                          sizes=[10, 10])),
    ("not_smaller", resize({"mode": "nearest", "keep_aspect_ratio_policy": "not_smaller", "axes": [2, 3]},
                           sizes=[10, 10])),
    ("opset 13 sizes", resize({"mode": "linear"}, sizes=[2, 2, 10, 14], shape=(2, 2, 5, 7), opset=13)),
    ("opset 10 nearest", resize({"mode": "nearest"}, [1, 1, 1.5, 0.6], opset=10)),
    ("opset 10 linear", resize({"mode": "linear"}, [1, 1, 2, 2.5], opset=10)),
    ("3-d", resize({"mode": "linear"}, [1, 1, 2.5], shape=("N", 3, 5))),
])
def test_resize_variants_match_onnxruntime(case, model):
    assert_matches_onnxruntime(model, rtol=2e-6)


@pytest.mark.parametrize("mode, scales, opset", [("nearest", [1.0, 1.0, 2.0, 3.0], 9), ("nearest", [1, 1, 1.5, 2.5], 9),
                                                 ("linear", [1, 1, 2, 2.5], 9), ("nearest", [1, 1, 2, 2], 7),
                                                 ("linear", [1, 1, 2, 1.5], 7)])
def test_upsample_matches_onnxruntime(mode, scales, opset):
    if opset < 9:
        model = make_model([node("Upsample", ["x"], ["y"], mode=mode, scales=[float(s) for s in scales])],
                           {"x": ["N", 2, 5, 7]}, {"y": None}, opset=opset)
    else:
        model = make_model([node("Upsample", ["x", "s"], ["y"], mode=mode)], {"x": ["N", 2, 5, 7]}, {"y": None},
                           {"s": np.array(scales, np.float32)}, opset=opset)
    assert_matches_onnxruntime(model, rtol=2e-6)


@pytest.mark.parametrize("mode", ["linear", "cubic"])
@pytest.mark.parametrize("coordinates", ["half_pixel", "pytorch_half_pixel", "asymmetric", "align_corners",
                                         "half_pixel_symmetric"])
@pytest.mark.parametrize("exclude", [0, 1])
@pytest.mark.parametrize("scales", [[1, 1, 0.6, 0.5], [1, 1, 0.3, 0.8], [1, 1, 0.25, 1.5]],
                         ids=["down", "far down", "down and up"])
def test_resize_antialias_matches_onnxruntime(mode, coordinates, exclude, scales):
    """Downsampling widens the kernel by 1 / scale (Resize-18); upsampling axes are unchanged.
    (ONNX's reference divides align_corners by the unrounded size and half_pixel_symmetric
    follows it, so onnxruntime is the oracle.)"""
    model = resize({"mode": mode, "antialias": 1, "exclude_outside": exclude,
                    "coordinate_transformation_mode": coordinates}, scales, shape=("N", 2, 9, 10))
    assert_matches_onnxruntime(model, rtol=1e-6 if mode == "linear" else 2e-6)


def test_resize_antialias_with_sizes_and_axes():
    model = resize({"mode": "cubic", "antialias": 1, "axes": [3, 2], "cubic_coeff_a": -0.5}, sizes=[3, 4],
                   shape=("N", 2, 9, 10))
    assert_matches_onnxruntime(model, rtol=2e-6)
    upsampled = resize({"mode": "linear", "antialias": 1}, [1, 1, 2, 1.5])
    plain = resize({"mode": "linear"}, [1, 1, 2, 1.5])
    feeds = _feeds(plain)
    np.testing.assert_array_equal(execute(compile_model(upsampled).program, feeds)["y"],
                                  execute(compile_model(plain).program, feeds)["y"])


def test_whole_factor_nearest_upsampling_is_a_view_and_fractional_a_product():
    two = resize({"mode": "nearest", "coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"},
                 [1, 1, 2, 2])
    assert [t for t in names_of(two) if t is not ops.Reshape] == [ops.Expand]
    half = resize({"mode": "nearest", "coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"},
                  [1, 1, 0.5, 0.5], shape=("N", 2, 6, 8))
    assert names_of(half) == [ops.Slice]
    linear = resize({"mode": "linear"}, [1, 1, 2, 2])
    assert [t for t in names_of(linear) if t is not ops.Reshape] == [ops.MatMul, ops.MatMul]


# ----------------------------------------------------------------------------- refusals: one line naming the node
@pytest.mark.parametrize("model, error, text", [
    (resize({"mode": "nearest", "antialias": 1}, [1, 1, 0.5, 0.5]), UnsupportedOpError, "antialias=1 with mode='nearest'"),
    (resize({"mode": "linear", "coordinate_transformation_mode": "tf_crop_and_resize"}, [1, 1, 2, 2]),
     UnsupportedOpError, "tf_crop_and_resize"),
    (make_model([node("Upsample", ["x", "s"], ["y"], mode="cubic")], {"x": [1, 2, 3, 3]}, {"y": [1, 2, 6, 6]},
                {"s": np.array([1, 1, 2, 2], np.float32)}, opset=9), UnsupportedOpError, "mode='cubic'"),
    (one("ConvTranspose", {"kernel_shape": [2, 2]}, inits={"w": weights(3, 2, 3, 3)}, extra_inputs=("w",),
         output_shape=["N", 2, 7, 7]), UnsupportedOpError, "kernel_shape"),
    (one("ConvTranspose", {"auto_pad": "SAME"}, inits={"w": weights(3, 2, 3, 3)}, extra_inputs=("w",),
         output_shape=["N", 2, 7, 7]), UnsupportedOpError, "auto_pad='SAME'"),
    (one("CumSum", inits={"a": np.array(0, np.int64)}, extra_inputs=("a",)), BatchAxisError, "batch axis"),
    (make_model([node("Tile", ["x", "r"], ["y"])], {"x": [1, 3], "r": [2]}, {"y": None}, opset=13),
     NotConstantError, "repeats"),
])
def test_refused_attributes_are_one_line_naming_the_node(model, error, text):
    with pytest.raises(error, match=text) as caught:
        compile_model(model)
    message = str(caught.value)
    assert "\n" not in message and f"'{model.graph.node[0].op_type}_0'" in message
    assert isinstance(caught.value, CompileError)


def test_a_folded_node_with_an_omitted_optional_input():
    """Clip(c, "", hi) of a constant ``c`` folds at compile time: the omitted ``min`` must not
    shift ``hi`` into its place (Swin V2's export; the loader once paired names and values
    wrongly and clipped at ``hi`` from below)."""
    c = np.linspace(-3, 3, 15, dtype=np.float32).reshape(1, 3, 5)
    hi = np.array(1.0, np.float32)
    model = make_model([node("Clip", ["c", "", "hi"], ["clipped"]), node("Add", ["x", "clipped"], ["y"])],
                       {"x": ["N", 3, 5]}, {"y": None}, {"c": c, "hi": hi}, 17)
    assert_matches_onnxruntime(model, rtol=1e-6)
