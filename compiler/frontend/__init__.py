"""ONNX → graph IR."""
from __future__ import annotations

import os

import numpy as np
import onnx

from nmc.compiler.errors import ModelError, UnsupportedOpError
from nmc.compiler.frontend.context import NodeContext
from nmc.compiler.frontend.loader import check_domains, detect_batched, fix_batch, fold_constants, opset_of, read_model
from nmc.compiler.frontend.ops import CONVERTERS, INTEGER_OUTPUTS, supported_ops
from nmc.compiler.ir.graph import Graph, TensorType
from nmc.compiler.ir.verify import check_batch_axis

_FLOAT_TYPES = {onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16}


def import_onnx(model: str | os.PathLike | onnx.ModelProto, batched: bool | None = None) -> Graph:
    """Read an ONNX model into the graph IR.

    ``batched=None`` decides from the model: batched when every input has a free leading
    dimension. A batched graph computes one sample (leading axis 1); the runtime repeats it
    over any batch size.
    """
    proto = read_model(model)
    if batched is None:
        batched = detect_batched(proto)
    proto = fix_batch(proto, batched)
    supported = set(supported_ops())
    check_domains(proto, supported)
    proto, consts, shapes = fold_constants(proto)
    opset = opset_of(proto)
    g = Graph(batched=batched)
    # Non-float inputs are an error only where they are read as data: an int64 shape or axes input
    # reaches a converter, which then reports that it must be a compile-time constant instead.
    rejected: dict[str, str] = {}
    for vi in proto.graph.input:
        if vi.name in consts:
            continue
        elem = vi.type.tensor_type.elem_type
        if elem not in _FLOAT_TYPES:
            kind = onnx.TensorProto.DataType.Name(elem) if vi.type.HasField("tensor_type") else \
                f"non-tensor type {vi.type.WhichOneof('value')}"
            rejected[vi.name] = f"input {vi.name!r} of element type {kind}; nmc takes float inputs"
            continue
        shape = tuple(d.dim_value for d in vi.type.tensor_type.shape.dim)
        if 0 in shape:
            rejected[vi.name] = f"input {vi.name!r} of zero-size shape {list(shape)}; nmc has no empty tensors"
            continue
        g.inputs.append(vi.name)
        g.tensors[vi.name] = TensorType(shape)
    alias: dict[str, str] = {}
    quantized: dict = {}  # integer outputs of QuantizeLinear, read only by DequantizeLinear
    for index, node in enumerate(proto.graph.node):
        convert = CONVERTERS.get(node.op_type)
        if convert is None:
            raise UnsupportedOpError(
                f"node {node.name or f'#{index}'!r}: operator {node.op_type} (opset {opset}) is not supported; "
                f"supported: {', '.join(sorted(supported))}")
        for out in node.output if node.op_type not in INTEGER_OUTPUTS else ():
            if out and shapes.get(out, (None, None))[1] not in (None, 0, *_FLOAT_TYPES):
                raise UnsupportedOpError(
                    f"node {node.name or f'#{index}'!r} ({node.op_type}): output {out!r} has element type "
                    f"{onnx.TensorProto.DataType.Name(shapes[out][1])}; nmc computes float tensors only")
        convert(NodeContext(g, node, opset, consts, shapes, alias, index, rejected, quantized))
    for out in proto.graph.output:
        name = alias.get(out.name, out.name)
        if name in quantized:
            raise UnsupportedOpError(f"graph output {out.name!r} is the integer output of QuantizeLinear node "
                                     f"{quantized[name].label!r}; nmc computes float tensors: end the model with "
                                     "a DequantizeLinear")
        if name in rejected:
            raise ModelError(f"graph output {out.name!r} is the {rejected[name]}")
        if name not in g.tensors and name in consts:
            g.constants[name] = np.ascontiguousarray(consts[name], dtype=np.float32)
            g.tensors[name] = TensorType(tuple(consts[name].shape))
        g.outputs.append(name)
    g.output_names = [o.name for o in proto.graph.output]
    if g.batched:
        check_batch_axis(g)
    return g


__all__ = ["import_onnx", "supported_ops"]
