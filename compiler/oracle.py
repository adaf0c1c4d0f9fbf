"""onnxruntime as the oracle: the model's ONNX meaning, never nmc's engine.

Sessions run with basic graph optimisations only (constant folding, redundant-node removal).
The extended level fuses QuantizeLinear/DequantizeLinear groups into integer kernels
(QLinearConv, QLinearMatMul, QLinearSoftmax) whose rounding is onnxruntime's own: on the digits
CNN quantised per channel, onnxruntime 1.32's fused kernels differ from the QDQ graph as
written by up to 8.0 in a logit and change 2.8 % of the top-1 classes. The oracle answers what
the model means, so it evaluates the graph as written.
"""
from __future__ import annotations

import onnx


def session(proto: onnx.ModelProto):
    """An onnxruntime CPU session of ``proto`` that evaluates the graph as written."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    return ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])
