"""Conv and ConvTranspose whose weight (or bias) is computed at run time (a graph input, or the
output of other nodes): no stationary weights, so a product of two activations on the vector
unit (``ops/nn.py::_windows_matmul``): one strided Slice of the padded input per kernel tap,
stacked into the windows, and one MatMul. Checked against onnxruntime, on crossbar targets
beside a crossbar layer, for a program that grows with the kernel and not with the image, and
for the refusal in a batched model."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from helpers import run_ort
from nmc.compiler import compile_model
from nmc.compiler.ir import ops
from nmc.compiler.ir.verify import BatchAxisError
from nmc.isa.asm import format_program
from nmc.runtime import SimOptions, execute
from onnx import TensorProto, helper, numpy_helper


def conv_model(op: str, x_shape, w_shape, attrs: dict, bias: str | None = "input", rng=None) -> onnx.ModelProto:
    """One ``op`` node reading x and w (graph inputs) and a bias that is an input, a constant or absent."""
    rng = rng or np.random.default_rng(0)
    channels = w_shape[1] * attrs.get("group", 1) if op == "ConvTranspose" else w_shape[0]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape),
              helper.make_tensor_value_info("w", TensorProto.FLOAT, w_shape)]
    inits, names = [], ["x", "w"]
    if bias == "input":
        inputs.append(helper.make_tensor_value_info("b", TensorProto.FLOAT, [channels]))
        names.append("b")
    elif bias == "constant":
        inits.append(numpy_helper.from_array(rng.standard_normal(channels).astype(np.float32), "b"))
        names.append("b")
    graph = helper.make_graph([helper.make_node(op, names, ["y"], **attrs)], "g", inputs,
                              [helper.make_empty_tensor_value_info("y")], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    inferred = onnx.shape_inference.infer_shapes(model)
    del model.graph.output[:]
    model.graph.output.extend(inferred.graph.output)
    onnx.checker.check_model(model)
    return model


def feeds_of(model: onnx.ModelProto, seed: int = 1) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    inits = {i.name for i in model.graph.initializer}
    return {vi.name: rng.standard_normal([d.dim_value for d in vi.type.tensor_type.shape.dim]).astype(np.float32)
            for vi in model.graph.input if vi.name not in inits}


def relative_error(model: onnx.ModelProto, target: str = "ideal", feeds=None):
    feeds = feeds or feeds_of(model)
    (want,) = run_ort(model, feeds)
    compiled = compile_model(model, target)
    got = execute(compiled.program, feeds, target=compiled.target, options=SimOptions(noise=False))["y"]
    assert got.shape == want.shape
    return float(np.abs(got - want).max() / np.abs(want).max()), compiled


CONV_CASES = [
    ([2, 4, 7, 6], [6, 2, 3, 2], {"group": 2, "strides": [2, 1], "pads": [1, 0, 2, 1], "dilations": [1, 2]}, "input"),
    ([1, 3, 9], [4, 3, 3], {"pads": [1, 1]}, "constant"),
    ([1, 3, 5, 5, 4], [2, 3, 1, 2, 3], {"auto_pad": "SAME_UPPER"}, None),
    ([1, 4, 6, 6], [4, 1, 3, 3], {"group": 4, "auto_pad": "SAME_LOWER", "strides": [2, 2]}, "input"),  # depthwise
    ([3, 2, 5, 5], [5, 2, 1, 1], {}, None),  # 1 × 1: one tap, no stacking
    ([1, 2, 8, 7], [3, 2, 2, 3], {"strides": [3, 2], "dilations": [2, 1], "auto_pad": "VALID"}, "constant"),
]


@pytest.mark.parametrize("x_shape,w_shape,attrs,bias", CONV_CASES)
def test_conv_with_a_run_time_weight_matches_onnxruntime(x_shape, w_shape, attrs, bias):
    error, compiled = relative_error(conv_model("Conv", x_shape, w_shape, attrs, bias))
    assert error <= 1e-6
    kinds = {type(n.op) for n in compiled.graph.nodes()}
    assert ops.MatMul in kinds and ops.Conv not in kinds


CONV_TRANSPOSE_CASES = [
    ([1, 4, 5, 4], [4, 3, 3, 2], {"group": 2, "strides": [2, 3], "pads": [1, 0, 0, 1], "output_padding": [1, 0]}, "input"),
    ([2, 2, 5], [2, 3, 3], {"dilations": [2]}, "constant"),
    ([1, 2, 3, 3], [2, 2, 3, 3], {"strides": [2, 2], "auto_pad": "SAME_UPPER"}, None),
    ([1, 3, 4, 4], [3, 2, 2, 2], {"strides": [2, 2], "output_shape": [9, 9]}, "input"),
]


@pytest.mark.parametrize("x_shape,w_shape,attrs,bias", CONV_TRANSPOSE_CASES)
def test_conv_transpose_with_a_run_time_weight_matches_onnxruntime(x_shape, w_shape, attrs, bias):
    error, _ = relative_error(conv_model("ConvTranspose", x_shape, w_shape, attrs, bias))
    assert error <= 1e-6


def test_a_weight_computed_in_the_model():
    """A weight that other nodes compute (here: an input scaled by a constant), a fixed batch of 2."""
    rng = np.random.default_rng(3)
    nodes = [helper.make_node("Mul", ["v", "two"], ["w"]),
             helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 6, 6]),
                                           helper.make_tensor_value_info("v", TensorProto.FLOAT, [4, 3, 3, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4, 6, 6])],
                              [numpy_helper.from_array(np.float32(2.0), "two")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    error, _ = relative_error(model, feeds={"x": rng.standard_normal((2, 3, 6, 6)).astype(np.float32),
                                           "v": rng.standard_normal((4, 3, 3, 3)).astype(np.float32)})
    assert error <= 1e-6


def stacked_model(size: int) -> onnx.ModelProto:
    """A crossbar Conv (constant weight) whose output a run-time-weight Conv reads."""
    rng = np.random.default_rng(4)
    nodes = [helper.make_node("Conv", ["x", "k"], ["h"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("Conv", ["r", "w", "b"], ["y"], pads=[1, 1, 1, 1], strides=[2, 2])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, size, size]),
                                           helper.make_tensor_value_info("w", TensorProto.FLOAT, [4, 8, 3, 3]),
                                           helper.make_tensor_value_info("b", TensorProto.FLOAT, [4])],
                              [helper.make_empty_tensor_value_info("y")],
                              [numpy_helper.from_array(rng.standard_normal((8, 3, 3, 3)).astype(np.float32) / 4, "k")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    inferred = onnx.shape_inference.infer_shapes(model)
    del model.graph.output[:]
    model.graph.output.extend(inferred.graph.output)
    return model


@pytest.mark.parametrize("target,bound", [("pcm", 0.08), ("sram-digital", 0.02)])
def test_on_a_crossbar_target_the_run_time_weight_stays_digital(target, bound):
    model = stacked_model(8)
    error, compiled = relative_error(model, target)
    assert error <= bound
    g = compiled.graph
    units = {type(n.op): g.mapping[n.name] for n in g.nodes() if isinstance(n.op, (ops.Conv, ops.MatMul))}
    assert units[ops.Conv].unit == "crossbar"
    assert units[ops.MatMul].unit == "vector" and "no stationary weights" in units[ops.MatMul].reason


def test_the_program_grows_with_the_kernel_not_the_image():
    small, large = (format_program(compile_model(stacked_model(size), "ideal").program) for size in (8, 32))
    instructions = [sum(1 for line in text.splitlines() if line.startswith(" ")) for text in (small, large)]
    assert instructions[0] == instructions[1]


def test_a_batched_model_is_refused():
    """With a free batch every run-time tensor, the weight too, holds one value per sample: not the
    one weight ONNX applies to every sample."""
    model = conv_model("Conv", ["N", 3, 5, 5], ["N", 3, 3, 3], {}, None)
    with pytest.raises(BatchAxisError, match="weight is computed at run time"):
        compile_model(model)
