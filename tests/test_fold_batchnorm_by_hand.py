"""fold-batchnorm on hand-made graphs: the folded weights and bias by the formula, and the cases
that must not fold.

Inference BatchNormalization y = γ (x − μ) / √(σ² + ε) + β after a Conv or Dense x = W·in + b is
the same layer with W' = a·W (a = γ / √(σ² + ε), per output channel) and b' = a (b − μ) + β.
It may fold only when the BatchNorm is the layer output's sole reader and that output is not a
model output (it would disappear), and for Dense only on a 2-D output (BatchNorm's channel axis 1
is then Dense's output axis).
"""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from nmc.compiler.frontend import import_onnx
from nmc.compiler.ir import ops
from nmc.compiler.passes import FoldBatchNorm

GAMMA, BETA = np.array([2.0, -1.0], np.float32), np.array([0.5, 3.0], np.float32)
MEAN, VAR, EPS = np.array([1.0, -2.0], np.float32), np.array([0.0, 3.0], np.float32), 1.0
# a = γ / √(σ² + ε) = [2 / √1, −1 / √4] = [2, −0.5]
W = np.arange(2 * 3 * 1 * 1, dtype=np.float32).reshape(2, 3, 1, 1) - 2
B = np.array([0.25, -0.5], np.float32)


def _model(bias=True, extra_reader=False, bn_output_is_conv=False):
    conv_in = ["x", "w"] + (["b"] if bias else [])
    nodes = [helper.make_node("Conv", conv_in, ["c"]),
             helper.make_node("BatchNormalization", ["c", "g", "be", "m", "v"], ["y"], epsilon=EPS)]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 2, 2])]
    if extra_reader:
        nodes.append(helper.make_node("Relu", ["c"], ["z"]))
        outputs.append(helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, 2, 2, 2]))
    if bn_output_is_conv:
        outputs.append(helper.make_tensor_value_info("c", TensorProto.FLOAT, [1, 2, 2, 2]))
    inits = [numpy_helper.from_array(a, n) for n, a in
             (("w", W), ("b", B), ("g", GAMMA), ("be", BETA), ("m", MEAN), ("v", VAR))]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 2, 2])],
                              outputs, inits if bias else [i for i in inits if i.name != "b"])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _kinds(g):
    return [type(n.op).__name__ for n in g.nodes()]


@pytest.mark.parametrize("bias", [True, False])
def test_folded_weights_and_bias_by_hand(bias):
    g = import_onnx(_model(bias=bias))
    assert FoldBatchNorm().run(g) is True
    assert _kinds(g) == ["Conv"]
    (conv,) = g.nodes()
    assert list(conv.outputs) == ["y"]         # the Conv now writes the BatchNorm's output
    w, b = (g.constants[t] for t in conv.inputs[1:])
    np.testing.assert_allclose(w, W * np.array([2.0, -0.5]).reshape(2, 1, 1, 1), rtol=1e-12)
    b0 = B if bias else np.zeros(2)
    np.testing.assert_allclose(b, np.array([2.0, -0.5]) * (b0 - MEAN) + BETA, rtol=1e-12)
    # the replaced constants and the vanished tensor are gone
    for name in ("w", "g", "be", "m", "v", "c") + (("b",) if bias else ()):
        assert name not in g.constants and name not in g.tensors
    assert FoldBatchNorm().run(g) is False      # nothing left to fold


@pytest.mark.parametrize("case", ["extra_reader", "bn_output_is_conv"])
def test_a_layer_output_read_elsewhere_is_not_folded(case):
    g = import_onnx(_model(**{case: True}))
    assert FoldBatchNorm().run(g) is False
    assert "BatchNorm" in _kinds(g)
    (conv,) = [n for n in g.nodes() if isinstance(n.op, ops.Conv)]
    np.testing.assert_array_equal(g.constants[conv.inputs[1]], W)


def _dense_bn(rank):
    shape = [4, 2] if rank == 2 else [4, 2, 3]
    nodes = [helper.make_node("MatMul", ["x", "w"], ["c"]),
             helper.make_node("BatchNormalization", ["c", "g", "be", "m", "v"], ["y"], epsilon=EPS)]
    w = np.ones((3, 3) if rank == 3 else (3, 2), np.float32)
    x_shape = [4, 3] if rank == 2 else [4, 2, 3]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape if rank == 2 else [4, 2, 3])],
                              [numpy_helper.from_array(a, n) for n, a in
                               (("w", w), ("g", GAMMA), ("be", BETA), ("m", MEAN), ("v", VAR))])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_dense_folds_only_on_a_two_dimensional_output():
    g = import_onnx(_dense_bn(2))
    assert FoldBatchNorm().run(g) is True and "BatchNorm" not in _kinds(g)
    g = import_onnx(_dense_bn(3))
    assert FoldBatchNorm().run(g) is False and "BatchNorm" in _kinds(g)


def test_only_a_batchnorm_after_a_layer_folds_and_the_search_goes_on():
    """x → BatchNorm → Relu → BatchNorm → Conv → BatchNorm → y: the first reads the model input,
    the second a Relu; neither folds, and the last still does."""
    nodes = [helper.make_node("BatchNormalization", ["x", "g3", "be3", "m3", "v3"], ["n0"], epsilon=EPS),
             helper.make_node("Relu", ["n0"], ["r"]),
             helper.make_node("BatchNormalization", ["r", "g3", "be3", "m3", "v3"], ["n1"], epsilon=EPS),
             helper.make_node("Conv", ["n1", "w", "b"], ["c"]),
             helper.make_node("BatchNormalization", ["c", "g", "be", "m", "v"], ["y"], epsilon=EPS)]
    three = {"g3": np.ones(3, np.float32), "be3": np.zeros(3, np.float32), "m3": np.zeros(3, np.float32),
             "v3": np.ones(3, np.float32)}
    inits = {"w": W, "b": B, "g": GAMMA, "be": BETA, "m": MEAN, "v": VAR, **three}
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 2, 2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 2, 2])],
                              [numpy_helper.from_array(a, n) for n, a in inits.items()])
    g = import_onnx(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
    assert _kinds(g) == ["BatchNorm", "Unary", "BatchNorm", "Conv", "BatchNorm"]
    assert FoldBatchNorm().run(g) is True
    assert _kinds(g) == ["BatchNorm", "Unary", "BatchNorm", "Conv"]


def test_a_layer_that_cannot_fold_does_not_stop_the_search():
    """x[4, 2, 3] → MatMul → BatchNorm (3-D Dense output: no fold) → Reshape → MatMul → BatchNorm
    (folds); and a Conv whose output is also a model output (no fold) before a Conv that folds."""
    two = {"g": GAMMA, "be": BETA, "m": MEAN, "v": VAR}
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["c1"]),
             helper.make_node("BatchNormalization", ["c1", "g", "be", "m", "v"], ["n1"], epsilon=EPS),
             helper.make_node("Reshape", ["n1", "shape"], ["f"]),
             helper.make_node("MatMul", ["f", "w2"], ["c2"]),
             helper.make_node("BatchNormalization", ["c2", "g", "be", "m", "v"], ["y"], epsilon=EPS)]
    inits = {"w1": np.ones((3, 3), np.float32), "w2": np.ones((6, 2), np.float32),
             "shape": np.array([4, 6], np.int64), **two}
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 2, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 2])],
                              [numpy_helper.from_array(a, n) for n, a in inits.items()])
    g = import_onnx(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
    assert _kinds(g) == ["Dense", "BatchNorm", "Reshape", "Dense", "BatchNorm"]
    assert FoldBatchNorm().run(g) is True
    assert _kinds(g) == ["Dense", "BatchNorm", "Reshape", "Dense"]

    nodes = [helper.make_node("Conv", ["x", "w"], ["c"]),
             helper.make_node("BatchNormalization", ["c", "g", "be", "m", "v"], ["n"], epsilon=EPS),
             helper.make_node("Conv", ["n", "w2"], ["d"]),
             helper.make_node("BatchNormalization", ["d", "g", "be", "m", "v"], ["y"], epsilon=EPS)]
    inits = {"w": W, "w2": np.ones((2, 2, 1, 1), np.float32), **two}
    out = [helper.make_tensor_value_info(t, TensorProto.FLOAT, [1, 2, 2, 2]) for t in ("y", "c")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 2, 2])],
                              out, [numpy_helper.from_array(a, n) for n, a in inits.items()])
    g = import_onnx(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
    assert FoldBatchNorm().run(g) is True
    assert _kinds(g) == ["Conv", "BatchNorm", "Conv"]
