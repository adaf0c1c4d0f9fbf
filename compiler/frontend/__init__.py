"""ONNX → graph IR."""
from __future__ import annotations

import os

import onnx

from nmc.compiler.errors import ModelError, UnsupportedOpError
from nmc.compiler.frontend.context import NodeContext
from nmc.compiler.frontend.loader import (check_domains, detect_batched, fix_batch, fold_constants, opset_of,
                                         read_weights_apart)
from nmc.compiler.frontend.dtypes import array_dtype, ir_dtype, out_of_int32, storage, type_name
from nmc.compiler.frontend.ops import CONVERTERS, INTEGER_OUTPUTS, TYPED_OPS, supported_ops
from nmc.compiler.frontend.ops.quant import QuantizedOutputs
from nmc.compiler.ir.graph import Graph, TensorType
from nmc.compiler.ir.batch import BATCH_PROBE
from nmc.compiler.ir.verify import BatchAxisError, check_batch_axis

def import_onnx(model: str | os.PathLike | onnx.ModelProto, batched: bool | None = None) -> Graph:
    """Read an ONNX model into the graph IR.

    ``batched=None`` decides from the model: batched when every input has a free leading
    dimension. A batched graph computes one sample (leading axis 1); the runtime repeats it
    over any batch size.
    """
    proto, weights = read_weights_apart(model)  # the graph (stubs for the weights), the weights as arrays
    original = proto
    if batched is None:
        batched = detect_batched(proto)
    proto = fix_batch(proto, batched)
    supported = set(supported_ops())
    check_domains(proto, supported)
    proto, consts, shapes = fold_constants(proto, weights)
    opset = opset_of(proto)
    g = Graph(batched=batched)
    # Non-float inputs are an error only where they are read as data: an int64 shape or axes input
    # reaches a converter, which then reports that it must be a compile-time constant instead.
    rejected: dict[str, str] = {}
    for vi in proto.graph.input:
        if vi.name in consts:
            continue
        elem = vi.type.tensor_type.elem_type
        dtype = ir_dtype(elem) if vi.type.HasField("tensor_type") else None
        if dtype is None:
            kind = type_name(elem) if vi.type.HasField("tensor_type") else \
                f"non-tensor type {vi.type.WhichOneof('value')}"
            rejected[vi.name] = (f"input {vi.name!r} of element type {kind}; nmc takes float, integer "
                                 "(held as int32) and boolean inputs")
            continue
        shape = tuple(d.dim_value for d in vi.type.tensor_type.shape.dim)
        if 0 in shape:
            rejected[vi.name] = f"input {vi.name!r} of zero-size shape {list(shape)}; nmc has no empty tensors"
            continue
        g.inputs.append(vi.name)
        g.tensors[vi.name] = TensorType(shape, dtype)
    alias: dict[str, str] = {}
    quantized = QuantizedOutputs(_escaping_codes(proto))  # integer outputs of QuantizeLinear (ops/quant.py)
    for index, node in enumerate(proto.graph.node):
        convert = CONVERTERS.get(node.op_type)
        if convert is None:
            raise UnsupportedOpError(
                f"node {node.name or f'#{index}'!r}: operator {node.op_type} (opset {opset}) is not supported; "
                f"supported: {', '.join(sorted(supported))}")
        for out in node.output if node.op_type not in INTEGER_OUTPUTS else ():
            elem = shapes.get(out, (None, 0))[1] if out else 0
            dtype = ir_dtype(elem)
            if dtype is None or (dtype != "f32" and node.op_type not in TYPED_OPS):
                what = ("nmc computes float, integer (int32) and boolean tensors" if dtype is None else
                        f"nmc computes {node.op_type} on float tensors; integer and boolean tensors: "
                        f"{', '.join(sorted(TYPED_OPS))}")
                raise UnsupportedOpError(f"node {node.name or f'#{index}'!r} ({node.op_type}): output {out!r} has "
                                         f"element type {type_name(elem)}; {what}")
        convert(NodeContext(g, node, opset, consts, shapes, alias, index, rejected, quantized))
    for out in proto.graph.output:
        name = alias.get(out.name, out.name)
        if name in quantized:
            raise UnsupportedOpError(f"graph output {out.name!r} is the integer output of QuantizeLinear node "
                                     f"{quantized[name].label!r}, which only its DequantizeLinear pair reads "
                                     "(the codes were not computed)")
        if name in rejected:
            raise ModelError(f"graph output {out.name!r} is the {rejected[name]}")
        if name not in g.tensors and name in consts:
            dtype = array_dtype(consts[name])
            if dtype is None or out_of_int32(consts[name]):
                raise UnsupportedOpError(f"graph output {out.name!r} is a constant of type {consts[name].dtype} "
                                         "that nmc cannot hold (float, int32 and bool)")
            g.constants[name] = storage(consts[name], dtype)
            g.tensors[name] = TensorType(tuple(consts[name].shape), dtype)
        g.outputs.append(name)
    g.output_names = [o.name for o in proto.graph.output]
    if g.batched:
        try:
            check_batch_axis(g)
        except BatchAxisError:
            g.batch_shapes = _probe_shapes(original, weights)
            check_batch_axis(g)
    return g


def _escaping_codes(model: onnx.ModelProto) -> set[str]:
    """Outputs of QuantizeLinear nodes the model needs as integers: graph outputs and tensors read
    by an op other than DequantizeLinear (read by DequantizeLinear only, they stay fake quantisation)."""
    readers: dict[str, set[str]] = {}
    for node in model.graph.node:
        for name in node.input:
            readers.setdefault(name, set()).add(node.op_type)
    outputs = {o.name for o in model.graph.output}
    return {node.output[0] for node in model.graph.node if node.op_type == "QuantizeLinear"
            and (node.output[0] in outputs or readers.get(node.output[0], set()) - {"DequantizeLinear"})}


def _probe_shapes(model: onnx.ModelProto, weights: dict) -> dict[str, tuple[int, ...]]:
    """The model's tensor shapes at batch size ``BATCH_PROBE``, to follow a batch axis that its
    operations move (``compiler/ir/batch.py``); empty when the model does not fold at that size."""
    try:
        _, _, shapes = fold_constants(fix_batch(model, True, size=BATCH_PROBE), weights)
    except ModelError:
        return {}
    return {name: tuple(shape) for name, (shape, _) in shapes.items() if shape is not None}


__all__ = ["import_onnx", "supported_ops"]
