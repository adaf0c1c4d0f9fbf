"""GatherElements, GatherND, ScatterElements (and its old name Scatter) and ScatterND against
onnxruntime: constant indices (resolved at compile time: a view or a constant index table) and
indices that are program inputs (looked up on the vector unit, then one gather), negative
indices, several axes and batch_dims, the reductions, a free batch dimension, a crossbar target,
and the errors for indices that do not fit."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from helpers import opcodes, run_ort
from nmc.compiler.driver import compile_model
from nmc.compiler.errors import CompileError, ModelError
from nmc.compiler.ir.verify import BatchAxisError
from nmc.runtime import execute
from nmc.runtime.machine import SimulationError

RNG = np.random.default_rng(0)
DATA = RNG.normal(size=(3, 4, 5)).astype(np.float32)


def _info(name, value, free_batch=False):
    shape = list(np.shape(value))
    if free_batch:
        shape[0] = "N"
    return helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(np.asarray(value).dtype), shape)


def _model(nodes, feeds, outputs, constants=(), opset=18, free_batch=False):
    """A graph of ``nodes`` whose inputs are ``feeds`` (name → example value) and whose
    initializers are ``constants`` (name → value); outputs get their types by shape inference."""
    graph = helper.make_graph(nodes, "g", [_info(n, v, free_batch) for n, v in feeds.items()],
                              [helper.make_empty_tensor_value_info(o) for o in outputs],
                              initializer=[numpy_helper.from_array(np.asarray(v), n) for n, v in constants])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    inferred = onnx.shape_inference.infer_shapes(model)
    del model.graph.output[:]
    model.graph.output.extend(inferred.graph.output)
    if free_batch:
        for out in model.graph.output:
            out.type.tensor_type.shape.dim[0].dim_param = "N"
    onnx.checker.check_model(model)
    return model




def _check(node, data, indices, updates=None, constant=False, opset=18, target="ideal"):
    """Compile one node with ``indices`` a constant or a program input; compare with onnxruntime."""
    feeds = {"x": data} if constant else {"x": data, "i": indices}
    constants = [("i", indices)] if constant else []
    if updates is not None:
        feeds["u"] = updates
    model = _model([node], feeds, ["y"], constants, opset)
    compiled = compile_model(model, target=target)
    out = execute(compiled.program, feeds)["y"]
    (ref,) = run_ort(model, feeds)
    assert out.shape == ref.shape
    np.testing.assert_allclose(out, ref, rtol=1e-6, atol=1e-6)
    return compiled


INDEX_KINDS = pytest.mark.parametrize("constant", [True, False], ids=["constant-indices", "data-indices"])


# ----------------------------------------------------------------------------- GatherElements
@INDEX_KINDS
@pytest.mark.parametrize("axis,shape", [(0, (2, 4, 5)), (1, (3, 6, 5)), (-1, (3, 4, 2)), (2, (2, 3, 7))])
def test_gather_elements_matchesrun_ort(constant, axis, shape):
    dim = DATA.shape[axis]
    indices = RNG.integers(-dim, dim, size=shape)  # negative indices count from the end
    node = helper.make_node("GatherElements", ["x", "i"], ["y"], axis=axis)
    compiled = _check(node, DATA, indices, constant=constant)
    assert "gather" in opcodes(compiled.program)


def test_constant_gather_elements_reading_a_box_is_a_view():
    """Indices that read a regular box (here every other column of the first two rows) are one Slice."""
    indices = np.broadcast_to(np.array([0, 2, 4]), (3, 2, 3)).copy()
    node = helper.make_node("GatherElements", ["x", "i"], ["y"], axis=2)
    compiled = _check(node, DATA, indices, constant=True)
    assert [type(n.op).__name__ for n in compiled.graph.nodes()] == ["Slice"]
    assert "gather" not in opcodes(compiled.program)


# ----------------------------------------------------------------------------- GatherND
@INDEX_KINDS
@pytest.mark.parametrize("batch_dims,index_shape", [(0, (4, 1)), (0, (2, 3, 2)), (0, (5, 3)), (1, (3, 2, 2)),
                                                    (1, (3, 1)), (2, (3, 4, 2, 1))])
def test_gather_nd_matchesrun_ort(constant, batch_dims, index_shape):
    k = index_shape[-1]
    dims = np.array(DATA.shape[batch_dims:batch_dims + k])
    indices = (RNG.integers(0, 1 << 30, size=index_shape) % (2 * dims)) - dims  # within -dim..dim-1
    node = helper.make_node("GatherND", ["x", "i"], ["y"], batch_dims=batch_dims)
    _check(node, DATA, indices, constant=constant)


@INDEX_KINDS
def test_gather_nd_of_integers_matchesrun_ort(constant):
    data = RNG.integers(-100, 100, size=(4, 3)).astype(np.int32)
    node = helper.make_node("GatherND", ["x", "i"], ["y"])
    _check(node, data, np.array([[1, -1], [3, 0], [1, -1]]), constant=constant)


# ----------------------------------------------------------------------------- ScatterElements, Scatter
REDUCTIONS = pytest.mark.parametrize("reduction", ["none", "add", "mul", "max", "min"])


@INDEX_KINDS
@REDUCTIONS
@pytest.mark.parametrize("axis,shape", [(0, (5, 2, 5)), (1, (2, 4, 3)), (-1, (3, 4, 6))])
def test_scatter_elements_matchesrun_ort(constant, reduction, axis, shape):
    """Indices smaller than data on the other axes (a box), repeated along the axis (more updates
    than positions on axis 0 and -1), negative ones; the last update wins where they repeat."""
    dim = DATA.shape[axis]
    indices = RNG.integers(-dim, dim, size=shape)
    updates = RNG.normal(size=shape).astype(np.float32)
    node = helper.make_node("ScatterElements", ["x", "i", "u"], ["y"], axis=axis, reduction=reduction)
    _check(node, DATA, indices, updates, constant=constant)


@INDEX_KINDS
def test_scatter_of_opset_10_matchesrun_ort(constant):
    indices = np.array([[1, 0, -1], [0, 2, 1]])
    updates = RNG.normal(size=(2, 3)).astype(np.float32)
    node = helper.make_node("Scatter", ["x", "i", "u"], ["y"], axis=1)
    _check(node, DATA[0], indices, updates, constant=constant, opset=10)


# ----------------------------------------------------------------------------- ScatterND
@INDEX_KINDS
@REDUCTIONS
@pytest.mark.parametrize("index_shape", [(2, 1), (3, 2), (2, 2, 3), (6, 2)])
def test_scatter_nd_matchesrun_ort(constant, reduction, index_shape):
    k = index_shape[-1]
    dims = np.array(DATA.shape[:k])
    indices = (RNG.integers(0, 1 << 30, size=index_shape) % (2 * dims)) - dims  # repeats among 6 tuples
    updates = RNG.normal(size=index_shape[:-1] + DATA.shape[k:]).astype(np.float32)
    node = helper.make_node("ScatterND", ["x", "i", "u"], ["y"], reduction=reduction)
    _check(node, DATA, indices, updates, constant=constant)


@INDEX_KINDS
@pytest.mark.parametrize("reduction", ["none", "add", "mul", "max"])
def test_scatter_nd_of_integers_is_exact(constant, reduction):
    data = RNG.integers(-1000, 1000, size=(4, 3)).astype(np.int32)
    updates = RNG.integers(-1000, 1000, size=(3, 3)).astype(np.int32)
    node = helper.make_node("ScatterND", ["x", "i", "u"], ["y"], reduction=reduction)
    _check(node, data, np.array([[2], [-1], [2]]), updates, constant=constant)


def test_constant_scatter_indices_are_resolved_at_compile_time():
    """Constant indices: no comparison of indices with positions, one gather and one select
    per write depth (two here: row 2 is written twice)."""
    updates = RNG.normal(size=(3, 5)).astype(np.float32)
    node = helper.make_node("ScatterND", ["x", "i", "u"], ["y"], reduction="add")
    compiled = _check(node, DATA[0], np.array([[2], [0], [2]]), updates, constant=True)
    kinds = sorted(type(n.op).__name__ for n in compiled.graph.nodes())
    assert kinds.count("Select") == 2 and "Compare" not in kinds, kinds


# ----------------------------------------------------------------------------- a free batch dimension
def test_a_free_batch_dimension_runs_sample_by_sample():
    """Per-sample data indices for GatherElements, GatherND (batch_dims 1) and ScatterElements,
    and constant indices expanded to the batch (folded at compile time) for a second GatherElements."""
    x = RNG.normal(size=(4, 5, 6)).astype(np.float32)
    feeds = {"x": x, "gi": RNG.integers(-5, 5, size=(4, 3, 6)), "ni": RNG.integers(-5, 5, size=(4, 2, 2)),
             "si": RNG.integers(-6, 6, size=(4, 5, 3)), "su": RNG.normal(size=(4, 5, 3)).astype(np.float32)}
    nodes = [
        helper.make_node("GatherElements", ["x", "gi"], ["a"], axis=1),
        helper.make_node("GatherND", ["x", "ni"], ["b"], batch_dims=1),
        helper.make_node("ScatterElements", ["x", "si", "su"], ["c"], axis=2, reduction="add"),
        helper.make_node("Shape", ["x"], ["shape"]),
        helper.make_node("Slice", ["shape", "zero", "one"], ["batch"]),
        helper.make_node("Concat", ["batch", "rest"], ["wide"], axis=0),
        helper.make_node("Expand", ["fixed", "wide"], ["expanded"]),
        helper.make_node("GatherElements", ["x", "expanded"], ["d"], axis=2),
    ]
    constants = [("zero", np.array([0])), ("one", np.array([1])), ("rest", np.array([5, 2])),
                 ("fixed", np.array([[[0, -1]] * 5]))]
    model = _model(nodes, feeds, ["a", "b", "c", "d"], constants, free_batch=True)
    compiled = compile_model(model, target="ideal")
    assert compiled.graph.batched
    out = execute(compiled.program, feeds)
    for name, ref in zip("abcd", run_ort(model, feeds)):
        np.testing.assert_allclose(out[name], ref, rtol=1e-6, atol=1e-6)
    half = {name: value[:2] for name, value in feeds.items()}  # another batch size, same program
    np.testing.assert_allclose(execute(compiled.program, half)["c"], run_ort(model, half)[2], rtol=1e-6,
                               atol=1e-6)


def test_indices_across_the_batch_axis_are_refused_in_a_batched_model():
    x = RNG.normal(size=(2, 3)).astype(np.float32)
    cases = [
        (helper.make_node("GatherElements", ["x", "i"], ["y"], axis=0), {"i": np.zeros((2, 3), np.int64)},
         "gathers along axis 0"),
        (helper.make_node("GatherND", ["x", "i"], ["y"]), {"i": np.zeros((2, 2), np.int64)}, "address axis 0"),
        (helper.make_node("ScatterND", ["x", "i", "u"], ["y"]),
         {"i": np.zeros((2, 1), np.int64), "u": np.zeros((2, 3), np.float32)}, "address axis 0"),
    ]
    for node, extra, message in cases:
        model = _model([node], {"x": x, **extra}, ["y"], free_batch=True)
        with pytest.raises(BatchAxisError, match=message):
            compile_model(model, target="ideal")


# ----------------------------------------------------------------------------- a crossbar target
def test_gathers_and_scatters_feed_a_crossbar_layer_on_sram_digital():
    """The index work runs on the vector unit (exact); the MatMul by a constant after it maps
    onto the digital CIM crossbars (8-bit: close to, not equal to, onnxruntime)."""
    x = RNG.normal(size=(3, 8)).astype(np.float32)
    weight = RNG.normal(size=(8, 4)).astype(np.float32)
    feeds = {"x": x, "gi": RNG.integers(-8, 8, size=(3, 8)), "si": RNG.integers(0, 8, size=(3, 2)),
             "su": RNG.normal(size=(3, 2)).astype(np.float32)}
    nodes = [helper.make_node("GatherElements", ["x", "gi"], ["g"], axis=1),
             helper.make_node("ScatterElements", ["g", "si", "su"], ["s"], axis=1),
             helper.make_node("MatMul", ["s", "w"], ["y"])]
    model = _model(nodes, feeds, ["s", "y"], [("w", weight)])
    ref_s, ref_y = run_ort(model, feeds)
    compiled = compile_model(model, target="sram-digital")
    assert any(m.unit == "crossbar" for m in compiled.graph.mapping.values())
    out = execute(compiled.program, feeds)
    np.testing.assert_array_equal(out["s"], ref_s)
    assert np.abs(out["y"] - ref_y).max() / np.abs(ref_y).max() < 0.05


# ----------------------------------------------------------------------------- errors
@pytest.mark.parametrize("node,indices,message", [
    (helper.make_node("GatherElements", ["x", "i"], ["y"], axis=1), np.full((3, 4, 5), 4),
     r"index 4 is outside -4\.\.3 on axis 1"),
    (helper.make_node("GatherND", ["x", "i"], ["y"]), np.array([[0, -5]]), r"index -5 is outside -4\.\.3 on axis 1"),
    (helper.make_node("ScatterElements", ["x", "i", "u"], ["y"], axis=2), np.full((3, 4, 1), 5),
     r"index 5 is outside -5\.\.4 on axis 2"),
    (helper.make_node("ScatterND", ["x", "i", "u"], ["y"]), np.array([[3]]), r"index 3 is outside -3\.\.2 on axis 0"),
])
def test_constant_indices_out_of_range_are_a_compile_error_naming_the_node(node, indices, message):
    node.name = "pick"
    feeds = {"x": DATA}
    if len(node.input) == 3:
        shape = indices.shape if node.op_type == "ScatterElements" else indices.shape[:-1] + DATA.shape[1:]
        feeds["u"] = np.zeros(shape, np.float32)
    model = _model([node], feeds, ["y"], [("i", indices)], opset=16)
    with pytest.raises(ModelError, match=rf"node 'pick' \({node.op_type}, opset 16\): {message}"):
        compile_model(model, target="ideal")


def test_run_time_indices_out_of_range_are_a_simulation_error():
    for node, extra in [
        (helper.make_node("GatherElements", ["x", "i"], ["y"], axis=2), {}),
        (helper.make_node("GatherND", ["x", "i"], ["y"], batch_dims=1), {}),
        (helper.make_node("ScatterElements", ["x", "i", "u"], ["y"], axis=2),
         {"u": np.zeros((3, 4, 2), np.float32)}),
    ]:
        ok = {"GatherND": np.array([[1], [2], [-4]])}.get(node.op_type, np.array([[[4, -5]] * 4] * 3))
        feeds = {"x": DATA, "i": ok, **extra}
        program = compile_model(_model([node], feeds, ["y"]), target="ideal").program
        execute(program, feeds)
        bad = ok.copy()
        bad.reshape(-1)[-1] = 5 if node.op_type != "GatherND" else -5
        with pytest.raises(SimulationError, match=r"index -?5 is outside -[45]\.\.[34]"):
            execute(program, {**feeds, "i": bad})


def test_mismatched_shapes_are_a_compile_error():
    with pytest.raises(CompileError, match="indices of rank 2 for data of rank 3"):
        compile_model(_model([helper.make_node("GatherElements", ["x", "i"], ["y"])],
                             {"x": DATA}, ["y"], [("i", np.zeros((2, 2), np.int64))]), target="ideal")


@pytest.mark.parametrize("axis,data_shape,index_shape", [(1, (1, 512), (1, 128)), (0, (6, 5), (2, 3)),
                                                         (-1, (3, 9, 4), (2, 9, 3))])
def test_gather_elements_of_constants_folds_like_onnxruntime(axis, data_shape, index_shape):
    """Data and indices both constant: folded at compile time, by numpy (onnx.reference 1.23
    fails on a [1, 512] buffer read at [1, 128], Hugging Face BERT's token_type_ids), including
    indices shorter than the data off the axis and negative ones."""
    rng = np.random.default_rng(7)
    data = rng.standard_normal(data_shape).astype(np.float32)
    dim = data_shape[axis]
    indices = rng.integers(-dim, dim, index_shape)
    node = helper.make_node("GatherElements", ["d", "i"], ["g"], axis=axis)
    add = helper.make_node("Add", ["g", "x"], ["y"])
    x = rng.standard_normal(index_shape).astype(np.float32)
    model = _model([node, add], {"x": x}, ["y"], [("d", data), ("i", indices)])
    compiled = compile_model(model, target="ideal")
    assert "GatherElements" not in {n.onnx_op for n in compiled.graph.nodes()}
    out = execute(compiled.program, {"x": x})["y"]
    np.testing.assert_array_equal(out, run_ort(model, {"x": x})[0])
