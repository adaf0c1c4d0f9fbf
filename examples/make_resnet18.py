"""Build a ResNet-18-sized ONNX model (random weights) with onnx.helper and numpy only.

The layout of torchvision's resnet18: 7x7/2 stem conv, BatchNorm, ReLU, 3x3/2 max pool, four
stages of two basic blocks (64, 128, 256, 512 channels; 1x1/2 conv + BatchNorm on the shortcut
where the shape changes), global average pool, 512→1000 Gemm. Input [N, 3, 224, 224] with a
free batch axis. About 11.7 M parameters (47 MB), so no file ships: tests and benchmarks call
``build_resnet18()``; ``python examples/make_resnet18.py out.onnx`` writes one.
"""
from __future__ import annotations

import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

STAGES = ((64, 1), (128, 2), (256, 2), (512, 2))   # (channels, stride of the first block)
BLOCKS_PER_STAGE = 2
CLASSES = 1000


class _Builder:
    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []

    def const(self, name: str, value: np.ndarray) -> str:
        self.inits.append(numpy_helper.from_array(np.asarray(value, np.float32), name))
        return name

    def node(self, op: str, inputs: list[str], name: str, **attrs) -> str:
        self.nodes.append(helper.make_node(op, inputs, [name], name=name, **attrs))
        return name

    def conv_bn(self, x: str, c_in: int, c_out: int, kernel: int, stride: int, name: str, relu: bool) -> str:
        fan_in = c_in * kernel * kernel
        w = self.rng.standard_normal((c_out, c_in, kernel, kernel)) * np.sqrt(2.0 / fan_in)
        y = self.node("Conv", [x, self.const(f"{name}.weight", w)], f"{name}.conv", kernel_shape=[kernel, kernel],
                      strides=[stride, stride], pads=[kernel // 2] * 4)
        bn = [self.const(f"{name}.bn.{part}", value) for part, value in (
            ("scale", self.rng.uniform(0.5, 1.0, c_out)), ("bias", self.rng.normal(0.0, 0.1, c_out)),
            ("mean", self.rng.normal(0.0, 0.1, c_out)), ("var", self.rng.uniform(0.5, 1.5, c_out)))]
        y = self.node("BatchNormalization", [y] + bn, f"{name}.bn")
        return self.node("Relu", [y], f"{name}.relu") if relu else y

    def basic_block(self, x: str, c_in: int, c_out: int, stride: int, name: str) -> str:
        y = self.conv_bn(x, c_in, c_out, 3, stride, f"{name}.a", relu=True)
        y = self.conv_bn(y, c_out, c_out, 3, 1, f"{name}.b", relu=False)
        shortcut = x
        if stride != 1 or c_in != c_out:
            shortcut = self.conv_bn(x, c_in, c_out, 1, stride, f"{name}.down", relu=False)
        return self.node("Relu", [self.node("Add", [y, shortcut], f"{name}.add")], f"{name}.out")


def build_resnet18(seed: int = 0, classes: int = CLASSES) -> onnx.ModelProto:
    """A ResNet-18 with random (He-initialised) weights and BatchNormalization nodes, opset 17."""
    b = _Builder(seed)
    x = b.conv_bn("input", 3, 64, 7, 2, "stem", relu=True)                      # 112x112
    x = b.node("MaxPool", [x], "stem.pool", kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])  # 56x56
    c_in = 64
    for stage, (c_out, stride) in enumerate(STAGES, start=1):
        for block in range(BLOCKS_PER_STAGE):
            x = b.basic_block(x, c_in, c_out, stride if block == 0 else 1, f"layer{stage}.{block}")
            c_in = c_out
    x = b.node("Flatten", [b.node("GlobalAveragePool", [x], "pool")], "flatten")
    w = b.rng.standard_normal((classes, c_in)) * np.sqrt(1.0 / c_in)
    b.nodes.append(helper.make_node("Gemm", [x, b.const("fc.weight", w), b.const("fc.bias", np.zeros(classes))],
                                    ["logits"], name="fc", transB=1))
    graph = helper.make_graph(
        b.nodes, "resnet18",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 224, 224])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", classes])], b.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="nmc-examples")
    onnx.checker.check_model(model)
    return model


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python examples/make_resnet18.py OUT.onnx")
    onnx.save(build_resnet18(), sys.argv[1])
