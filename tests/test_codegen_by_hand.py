"""Compiler behaviour the mutation sample found unchecked: passes and codegen against
onnxruntime, plain numpy, or instructions and numbers worked out by hand.

- quantize: a Concat of inputs that are never negative is never negative (unsigned crossbar
  inputs), one negative input makes it signed.
- cam-mapping: an ensemble with no tree (no path) is refused by name.
- codegen: a Cast between two bool tensors is the same storage; a LayerNormalization whose
  scale and bias broadcast over the normalised axes; an average pool whose divisors vary along
  one axis only, and one whose divisor is one number (an immediate); a Gather with a scalar
  index; a grouped Conv whose weight shares a name prefix with another constant; the run-time
  input scale of a crossbar layer (max |x| / imax, in place in a one-element buffer).
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from onnx import TensorProto, helper

from helpers import make_model, opcodes, run_ort
from nmc.backends.target import load_target
from nmc.compiler import compile_model
from nmc.compiler.codegen.lower import generate
from nmc.compiler.driver import default_passes, run_pass
from nmc.compiler.errors import CompileError
from nmc.compiler.frontend import import_onnx
from nmc.compiler.ir import ops
from nmc.compiler.ir.graph import Node, TensorType
from nmc.compiler.passes import CamMappingPass
from nmc.isa import format_program
from nmc.isa.views import Affine
from nmc.isa.validate import validate
from nmc.runtime import execute

RNG = np.random.default_rng(2026)


def _lines(program, *opcodes_):
    return [line.strip() for line in format_program(program).splitlines() if line.strip().split(" ")[0] in opcodes_]


# ----------------------------------------------------------------------------- quantize
@pytest.mark.parametrize("second, signed", [("r2", False), ("x2", True)])
def test_concat_of_nonnegative_inputs_feeds_a_crossbar_unsigned(second, signed):
    """Relu(x1) ++ Relu(x2) is never negative: the crossbar takes unsigned inputs; Relu(x1) ++ x2
    can be negative: signed."""
    w = RNG.normal(size=(6, 2)).astype(np.float32)
    nodes = [helper.make_node("Relu", ["x1"], ["r1"]), helper.make_node("Relu", ["x2"], ["r2"]),
             helper.make_node("Concat", ["r1", second], ["c"], axis=1), helper.make_node("MatMul", ["c", "w"], ["y"])]
    model = make_model(nodes, {"x1": [2, 3], "x2": [2, 3]}, {"y": [2, 2]}, {"w": w})
    compiled = compile_model(model, "sram-digital")
    (quant,) = [m.quant for m in compiled.graph.mapping.values() if m.unit == "crossbar"]
    assert quant.input_signed is signed


# ----------------------------------------------------------------------------- cam-mapping
def _stump():
    attrs = dict(nodes_treeids=[0, 0, 0], nodes_nodeids=[0, 1, 2], nodes_featureids=[0, 0, 0],
                 nodes_modes=["BRANCH_LEQ", "LEAF", "LEAF"], nodes_values=[1.0, 0.0, 0.0],
                 nodes_truenodeids=[1, 0, 0], nodes_falsenodeids=[2, 0, 0], nodes_missing_value_tracks_true=[0] * 3,
                 target_treeids=[0, 0], target_nodeids=[1, 2], target_ids=[0, 0], target_weights=[1.0, -1.0],
                 n_targets=1, aggregate_function="SUM", post_transform="NONE")
    node = helper.make_node("TreeEnsembleRegressor", ["X"], ["Y"], domain="ai.onnx.ml", **attrs)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, 2])],
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [None, 1])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 3)])


def test_an_ensemble_without_paths_is_refused_by_name():
    """The frontend never makes an ensemble with no tree; the pass still refuses one (an IR
    built by hand) with a message, instead of mapping zero rows."""
    g = import_onnx(_stump())
    (tree,) = [n for n in g.nodes() if isinstance(n.op, ops.TreeEnsemble)]
    g.constants[tree.inputs[3]] = np.zeros(0, np.float32)          # no roots: no path
    with pytest.raises(CompileError, match=r"^node n\d+_treeensemble \(ONNX TreeEnsembleRegressor ''\): "
                                           r"the ensemble has no reachable leaf$"):
        CamMappingPass().run(g, load_target("acam"))


def test_a_stump_maps_one_row_per_leaf():
    g = import_onnx(_stump())
    CamMappingPass().run(g, load_target("acam"))
    (cam,) = [m.cam for m in g.mapping.values() if m.unit == "cam"]
    assert cam.rows == 2   # x0 <= 1 (with NaN sent to the false leaf: one range of codes each)


def test_an_ensemble_of_one_leaf_is_its_leaf_value():
    model = _stump()
    attrs = {a.name: a for a in model.graph.node[0].attribute}
    node = helper.make_node("TreeEnsembleRegressor", ["X"], ["Y"], domain="ai.onnx.ml", nodes_treeids=[0],
                            nodes_nodeids=[0], nodes_featureids=[0], nodes_modes=["LEAF"], nodes_values=[0.0],
                            nodes_truenodeids=[0], nodes_falsenodeids=[0], nodes_missing_value_tracks_true=[0],
                            target_treeids=[0], target_nodeids=[0], target_ids=[0], target_weights=[2.5],
                            n_targets=1, aggregate_function="SUM", post_transform="NONE")
    assert attrs   # same graph, one tree of a single leaf
    model.graph.node[0].CopyFrom(node)
    compiled = compile_model(model, "acam")
    x = np.array([[0, 1], [5, -3]], np.float32)
    np.testing.assert_array_equal(execute(compiled.program, {"X": x})["Y"], [[2.5], [2.5]])


# ----------------------------------------------------------------------------- codegen: casts
def test_a_cast_from_bool_to_bool_is_the_same_storage():
    """ONNX casts within one type are aliases in the frontend; a Cast("bool") of a bool tensor
    in the IR (a pass could make one) needs no instruction either: no ``ne``."""
    nodes = [helper.make_node("Greater", ["x", "z"], ["b"]), helper.make_node("Cast", ["b"], ["y"], to=TensorProto.FLOAT)]
    g = import_onnx(make_model(nodes, {"x": [1, 4]}, {"y": [1, 4]}, {"z": np.zeros(1, np.float32)}))
    (to_float,) = [n for n in g.nodes() if isinstance(n.op, ops.Cast)]
    b = to_float.inputs[0]
    assert g.dtype(b) == "bool"
    g.tensors["b_again"] = TensorType(g.shape(b), "bool")
    g.add_node(Node("cast_bool", ops.Cast("bool"), (b,), ("b_again",)))
    g.replace_node(replace(to_float, inputs=("b_again",)))
    target = load_target("ideal")
    for p in default_passes():
        run_pass(p, g, target)
    program = generate(g, target)
    validate(program)
    assert opcodes(program) == {"load", "gt", "cast", "store"}
    y = execute(program, {"x": np.array([[-1.0, 0.0, 2.0, 3.0]], np.float32)})["y"]
    np.testing.assert_array_equal(y, [[0.0, 0.0, 1.0, 1.0]])


# ----------------------------------------------------------------------------- codegen: layernorm
@pytest.mark.parametrize("bias", [True, False])
def test_layernorm_with_scale_and_bias_broadcast_over_the_normalised_axes(bias):
    """Normalising over the last two axes (3 × 4 = 12 values) with a scale and bias of 4: they
    repeat over the 3 rows; the reference is the formula in numpy."""
    x = RNG.normal(size=(2, 3, 4)).astype(np.float32)
    scale, shift = RNG.normal(size=(4,)).astype(np.float32), RNG.normal(size=(4,)).astype(np.float32)
    inputs = ["x", "s", "b"] if bias else ["x", "s"]
    inits = {"s": scale, "b": shift} if bias else {"s": scale}
    model = make_model([helper.make_node("LayerNormalization", inputs, ["y"], axis=-2, epsilon=1e-5)],
                       {"x": [2, 3, 4]}, {"y": [2, 3, 4]}, inits)
    program = compile_model(model, "ideal").program
    # the 4 values repeated over the 3 rows: one table of the 12 normalised values, in their order
    tables = [name for name, c in program.consts.items() if np.prod(c.shape) == 12]
    assert [program.consts[name].shape for name in tables] == [(12,)] * (2 if bias else 1)
    np.testing.assert_array_equal(program.data[tables[0]], np.tile(scale, 3))
    got = execute(program, {"x": x})["y"]
    xd = x.astype(np.float64)
    mean = xd.mean(axis=(1, 2), keepdims=True)
    var = ((xd - mean) ** 2).mean(axis=(1, 2), keepdims=True)
    want = (xd - mean) / np.sqrt(var + 1e-5) * scale + (shift if bias else 0.0)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------- codegen: pooling
def test_average_pool_with_padding_along_one_axis_divides_each_window_by_its_own_count():
    """3 × 4 input, 2 × 2 windows, one column of padding each side (not counted): every window
    covers 2 rows and 1 or 2 real columns, so the divisors are 2 4 4 4 2 on both output rows."""
    x = RNG.normal(size=(1, 1, 3, 4)).astype(np.float32)
    model = make_model([helper.make_node("AveragePool", ["x"], ["y"], kernel_shape=[2, 2], pads=[0, 1, 0, 1])],
                       {"x": [1, 1, 3, 4]}, {"y": [1, 1, 2, 5]})
    got = execute(compile_model(model, "ideal").program, {"x": x})["y"]
    padded = np.pad(x[0, 0].astype(np.float64), ((0, 0), (1, 1)))
    counts = np.array([2, 4, 4, 4, 2], np.float64)
    want = np.array([[padded[i:i + 2, j:j + 2].sum() / counts[j] for j in range(5)] for i in range(2)])
    np.testing.assert_allclose(got[0, 0], want, rtol=1e-6)
    np.testing.assert_allclose(got, run_ort(model, {"x": x})[0], rtol=1e-6)


def test_average_pool_with_one_divisor_divides_by_an_immediate():
    model = make_model([helper.make_node("AveragePool", ["x"], ["y"], kernel_shape=[2, 2])],
                       {"x": [1, 1, 3, 4]}, {"y": [1, 1, 2, 3]})
    program = compile_model(model, "ideal").program
    (div,) = _lines(program, "div")
    assert div.split(", ")[-1].startswith("#4.0")     # every window is 2 × 2: divide by 4
    assert not program.consts                         # no table of divisors
    x = RNG.normal(size=(1, 1, 3, 4)).astype(np.float32)
    np.testing.assert_allclose(execute(program, {"x": x})["y"], run_ort(model, {"x": x})[0], rtol=1e-6)


# ----------------------------------------------------------------------------- codegen: gather
@pytest.mark.parametrize("axis", [0, 1])
def test_gather_with_a_scalar_index(axis):
    """A scalar index drops the gathered axis; the gather's dst is idx's shape (one element)
    followed by the table's other axes (docs/isa.md, "gather")."""
    from test_gather_scatter import _model

    data = RNG.normal(size=(3, 4)).astype(np.float32)
    feeds = {"x": data, "i": np.array(2, np.int64)}
    model = _model([helper.make_node("Gather", ["x", "i"], ["y"], axis=axis)], feeds, ["y"])
    program = compile_model(model, "ideal").program
    np.testing.assert_array_equal(execute(program, feeds)["y"], np.take(data, 2, axis=axis))
    (gather,) = [s for s in program.cores[0] if getattr(s, "opcode", None) == "gather"]
    dst, table, idx = gather.operands
    assert idx.shape == (1,)
    assert dst.shape == idx.shape + table.shape[1:] == (1, 4 if axis == 0 else 3)


# ----------------------------------------------------------------------------- codegen: conv
@pytest.mark.parametrize("other", [
    "w.mat", "w_mat", "wXX#matXX", "#mat",
    "w#mat",   # lower_conv once cached the weight matrix under this very name: the Add read the matrix
])
def test_grouped_conv_beside_a_constant_of_a_similar_name(other):
    """A grouped Conv on the vector unit (target ideal) and an Add of a constant whose name
    extends the weight's: both read their own values (onnxruntime)."""
    w = RNG.normal(size=(4, 1, 3, 3)).astype(np.float32)
    extra = RNG.normal(size=(1, 4, 4, 4)).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], group=2, pads=[1, 1, 1, 1]),
             helper.make_node("Add", ["c", other], ["y"])]
    model = make_model(nodes, {"x": [1, 2, 4, 4]}, {"y": [1, 4, 4, 4]}, {"w": w, other: extra})
    x = RNG.normal(size=(1, 2, 4, 4)).astype(np.float32)
    got = execute(compile_model(model, "ideal").program, {"x": x})["y"]
    np.testing.assert_allclose(got, run_ort(model, {"x": x})[0], rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------- codegen: crossbar input scale
def test_run_time_input_scale_is_max_abs_over_imax_in_one_element():
    """Without calibration a crossbar layer scales its input at run time: s = max |x| / imax
    (imax = 127 for signed 8-bit inputs on pcm), at least 1e-30, in a one-element buffer."""
    w = RNG.normal(size=(3, 2)).astype(np.float32)
    model = make_model([helper.make_node("MatMul", ["x", "w"], ["y"])], {"x": [1, 3]}, {"y": [1, 2]}, {"w": w})
    compiled = compile_model(model, "pcm")
    (quant,) = [m.quant for m in compiled.graph.mapping.values() if m.unit == "crossbar"]
    assert (quant.input_bits, quant.input_signed, quant.input_max) == (8, True, 127)
    stream = [s for s in compiled.program.cores[0] if getattr(s, "opcode", None) in ("abs", "rmax", "div", "max")]
    abs_, rmax, div, max_ = stream
    a, x = abs_.operands
    assert a.dims == x.dims == ((3, 1),)
    s, over = rmax.operands
    assert s.dims == ((1, 1),) and s.offset == Affine(0)              # one element, in place below
    assert over.buffer == a.buffer and over.dims == ((1, 0), (3, 1))  # max over all 3 of |x|
    assert div.operands[:2] == (s, s) and div.operands[2].value == 127.0
    assert max_.operands[:2] == (s, s) and max_.operands[2].value == 1e-30


# ----------------------------------------------------------------------------- codegen: crossbar layer i/o
def _addresses(v) -> np.ndarray:
    """Every element address of a view whose offset is a constant."""
    out = np.array([v.offset.const])
    for n, stride in v.dims:
        out = (out[:, None] + stride * np.arange(n)[None, :]).ravel()
    return out


def test_a_padded_crossbar_conv_zeroes_only_the_border_and_receives_first_partials_in_place():
    """A 40-channel 3×3 Conv with pads (top 1, left 2, bottom 0, right 1) on sram-digital (256
    rows: two row blocks of 28 and 12 channels): the integer input buffer (40 × 7 × 8) is written
    exactly once per element — the border (top row, two left columns, one right column) by
    fills, the interior by the quantisation; the accumulator is never zeroed: the first row
    block's partial sums are received into it, the second's added (one add); outputs equal the
    program's float reference within the quantisation step."""
    w = RNG.normal(size=(5, 40, 3, 3)).astype(np.float32)
    model = make_model([helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 2, 0, 1])], {"x": [1, 40, 6, 5]},
                       {"y": [1, 5, 5, 6]}, {"w": w})
    compiled = compile_model(model, "sram-digital")
    vector = [s for s in compiled.program.cores[0] if hasattr(s, "opcode")]
    (quant,) = [s for s in vector if s.opcode == "quant"]
    qin = quant.operands[0].buffer
    fills = [s for s in vector if s.opcode == "fill" and s.operands[0].buffer == qin]
    border = np.concatenate([_addresses(f.operands[0]) for f in fills])
    interior = _addresses(quant.operands[0])
    assert len(fills) == 3 and len(np.unique(border)) == 40 * (7 * 8 - 6 * 5)   # corners shared
    written = np.concatenate([np.unique(border), interior])
    assert sorted(written) == list(range(40 * 7 * 8))                                 # each element once
    padded = np.zeros((40, 7, 8), bool)
    padded[:, 1:, 2:7] = True
    assert sorted(interior) == list(np.flatnonzero(padded))
    recvs = [s for s in vector if s.opcode == "recv"]
    adds = [s for s in vector if s.opcode == "add"]
    acc = recvs[0].operands[0].buffer
    assert not [s for s in vector if s.opcode == "fill" and s.operands[0].buffer == acc]
    assert len(recvs) == 2 and len(adds) == 1 and adds[0].operands[0].buffer == acc
    x = RNG.normal(size=(1, 40, 6, 5)).astype(np.float32)
    got = execute(compiled.program, {"x": x})["y"]
    want = run_ort(model, {"x": x})[0]
    assert np.abs(got - want).max() < 0.05 * np.abs(want).max()
