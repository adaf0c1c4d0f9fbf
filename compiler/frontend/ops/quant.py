"""QuantizeLinear and DequantizeLinear: models in QDQ format (e.g. onnxruntime's quantizer).

The loader folds DequantizeLinear of constant integers (int8 weights, int32 biases) into float
constants. On an activation, a QuantizeLinear whose integer output is read by DequantizeLinear
with the same parameters is fake quantisation: one ``FakeQuant`` node, exact in float32, and the
integer tensor in between never exists in the IR. Integer codes the model needs as such (a graph
output, or read by another op) are computed in i32 on the vector unit, and DequantizeLinear of
any other integer tensor (a program input) is ``(x − zero_point) · scale``, in i32 then f32.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import onnx

from nmc.compiler.frontend.context import NodeContext, norm_axis
from nmc.compiler.frontend.dtypes import INTEGER_TYPES, type_name
from nmc.compiler.frontend.ops import converter
from nmc.compiler.ir import ops
from nmc.compiler.ir.graph import TensorType


@dataclass(frozen=True)
class Quantized:
    """The integer output of a QuantizeLinear node: its float source and its parameters."""

    label: str
    source: str
    shape: tuple[int, ...]
    elem_type: int
    params: ops.FakeQuant


class QuantizedOutputs(dict):
    """The integer outputs of QuantizeLinear nodes that exist only as their float source, name →
    ``Quantized`` (``NodeContext.input`` refuses them: only a DequantizeLinear pair reads them).
    ``escaping``: the outputs the model needs as integers (a graph output, or read by an op
    other than DequantizeLinear), computed as i32 codes where their QuantizeLinear stands;
    ``records``: every QuantizeLinear output, computed or not, so that a DequantizeLinear pair
    of computed codes is still one ``FakeQuant`` of the float source."""

    def __init__(self, escaping=()):
        super().__init__()
        self.escaping = set(escaping)
        self.records: dict[str, Quantized] = {}


def integer_range(elem_type: int, ctx: NodeContext) -> tuple[int, int]:
    """The value range of an ONNX integer element type (int2 … int16, uint2 … uint16)."""
    name = onnx.TensorProto.DataType.Name(elem_type)
    match = re.fullmatch(r"(U?)INT(2|4|8|16)", name) or re.fullmatch(r"()INT(32)", name)
    if match is None:
        raise ctx.fail(f"quantised element type {name} is not supported; supported: int2/4/8/16, uint2/4/8/16 "
                       "and (dequantised) int32 (float 8 and 4-bit float types are not)")
    bits = int(match.group(2))
    return (0, (1 << bits) - 1) if match.group(1) else (-(1 << (bits - 1)), (1 << (bits - 1)) - 1)


def qdq_params(ctx: NodeContext, elem_type: int, shape: tuple[int, ...]) -> ops.FakeQuant:
    """Scale (input 1), zero point (input 2) and axis of a QuantizeLinear or DequantizeLinear
    node acting on a tensor of ``shape`` with integer element type ``elem_type``."""
    if ctx.opset >= 21 and ctx.attr("block_size", 0):
        raise ctx.fail(f"blocked quantisation (block_size={ctx.attr('block_size')}) is not supported; "
                       "supported: one scale per tensor or per axis")
    scale = np.asarray(ctx.need_const(1, "the scale")).astype(np.float32)
    if scale.ndim > 1:
        raise ctx.fail(f"a scale of shape {list(scale.shape)} (blocked quantisation) is not supported; "
                       "supported: one scale per tensor or per axis")
    zero = ctx.optional_const(2, "the zero point")
    zero = np.zeros(scale.shape, np.int64) if zero is None else np.asarray(zero).astype(np.int64)
    if zero.shape != scale.shape and not (zero.size == scale.size == 1):
        raise ctx.fail(f"zero point of shape {list(zero.shape)} does not match scale of shape {list(scale.shape)}")
    if not (np.isfinite(scale).all() and (scale > 0).all()):
        raise ctx.fail("every scale must be positive and finite")
    qmin, qmax = integer_range(elem_type, ctx)
    axis = 0
    if scale.size > 1:
        axis = norm_axis(int(ctx.attr("axis", 1)), len(shape), ctx)
        if shape[axis] != scale.size:
            raise ctx.fail(f"{scale.size} scales along axis {axis} of a tensor of shape {list(shape)}")
    return ops.FakeQuant(tuple(float(s) for s in scale.reshape(-1)), tuple(int(z) for z in zero.reshape(-1)),
                         qmin, qmax, axis)


@converter("QuantizeLinear", integer_outputs=True,
           limits="int2-16, uint2-16 (int4/uint4/int2/uint2: read by their DequantizeLinear pair only); per tensor "
                  "or per axis; read only by a DequantizeLinear with the same parameters: one FakeQuant, else "
                  "i32 codes (round half to even, saturated) on the vector unit")
def quantize_linear(ctx: NodeContext) -> None:
    """Records the integer output; the DequantizeLinear pair that reads it emits the node. Codes
    the model needs as integers are computed here."""
    source = ctx.input(0)
    elem_type = ctx.out_elem_type(0)
    if not elem_type:  # no shape information: the zero point's type, else uint8 (the default)
        zero = ctx.const(2)
        elem_type = onnx.helper.np_dtype_to_tensor_dtype(zero.dtype) if zero is not None else onnx.TensorProto.UINT8
    shape = ctx.shape(0)
    record = Quantized(ctx.label, source, shape, elem_type, qdq_params(ctx, elem_type, shape))
    records = getattr(ctx.quantized, "records", None)
    if records is not None:
        records[ctx.output] = record
    if ctx.output in getattr(ctx.quantized, "escaping", ()):
        _codes(ctx, record, ctx.output)
    else:
        ctx.quantized[ctx.output] = record


def _codes(ctx: NodeContext, q: Quantized, output: str) -> str:
    """The integer codes of ``q`` as an i32 tensor ``output``: ``x / scale`` (the division
    onnxruntime does), rounded half to even and saturated by a FakeQuant of unit scale (exact:
    ``clip(round(v) + zp, qmin, qmax) − zp``), plus the zero point, cast to i32 (whole numbers)."""
    p = q.params
    if q.elem_type not in INTEGER_TYPES:
        raise ctx.fail(f"the integer output of QuantizeLinear {q.label!r} is read as {type_name(q.elem_type)} codes, "
                       "an element type nmc does not compute; supported: int8/uint8/int16/uint16 codes, or "
                       "a DequantizeLinear with the same parameters as the only reader")
    if ctx.g.dtype(q.source) != "f32":
        raise ctx.fail(f"quantising a {ctx.g.dtype(q.source)} tensor to codes; supported: float inputs")
    shape = q.shape
    along = tuple(len(p.scale) if a == p.axis else 1 for a in range(len(shape))) if p.per_axis else ()
    scaled = ctx.emit(ops.Binary("div"), [q.source, ctx.add_const("scale", np.asarray(p.scale, np.float32)
                                                                  .reshape(along))], ctx.temp("over_scale"), shape)
    uniform = len(set(p.zero_point)) == 1
    unit = ops.FakeQuant((1.0,) if uniform else (1.0,) * len(p.scale),
                         p.zero_point[:1] if uniform else p.zero_point, p.qmin, p.qmax, p.axis)
    steps = ctx.emit(unit, [scaled], ctx.temp("steps"), shape)  # q − zp, whole numbers in f32
    if any(p.zero_point):
        zero = np.asarray(p.zero_point[:1] if uniform else p.zero_point, np.float32).reshape(() if uniform else along)
        steps = ctx.emit(ops.Binary("add"), [steps, ctx.add_const("zero_point", zero)], ctx.temp("codes_f32"), shape)
    return ctx.emit(ops.Cast("i32"), [steps], output, shape, "i32")


def _int_const(ctx: NodeContext, hint: str, value: np.ndarray) -> str:
    name = ctx.g.fresh(f"{ctx.output}.{hint}")
    ctx.g.constants[name] = np.ascontiguousarray(value, np.int32)
    ctx.g.tensors[name] = TensorType(tuple(value.shape), "i32")
    return name


@converter("DequantizeLinear",
           limits="of constant integers (folded), of a QuantizeLinear with the same parameters (one FakeQuant), or "
                  "of an integer tensor (int8/uint8/int16/uint16/int32 program inputs, codes): (x − zero_point) · "
                  "scale in i32 then f32; per tensor or per axis")
def dequantize_linear(ctx: NodeContext) -> None:
    quantized = ctx.quantized.get(ctx.node.input[0])
    if quantized is not None:
        params = qdq_params(ctx, quantized.elem_type, quantized.shape)
        if params == quantized.params:
            ctx.emit(params, [quantized.source])
            return
        # another grid than its QuantizeLinear's: the codes are needed as integers
        del ctx.quantized[ctx.node.input[0]]
        _codes(ctx, quantized, ctx.node.input[0])
    x = ctx.input(0)
    record = getattr(ctx.quantized, "records", {}).get(x)
    if record is not None:
        params = qdq_params(ctx, record.elem_type, record.shape)
        if params == record.params:  # the pair of codes also read elsewhere: fake quantisation all the same
            ctx.emit(params, [record.source])
            return
        elem_type = record.elem_type
    else:
        elem_type = ctx.in_elem_type(0)
    if ctx.g.dtype(x) != "i32":
        raise ctx.fail(f"dequantising a {ctx.g.dtype(x)} tensor; supported: integer tensors")
    shape = ctx.shape(0)
    p = qdq_params(ctx, elem_type or onnx.TensorProto.INT32, shape)
    along = tuple(len(p.scale) if a == p.axis else 1 for a in range(len(shape))) if p.per_axis else ()
    if any(p.zero_point):
        zero = _int_const(ctx, "zero_point", np.asarray(p.zero_point, np.int32).reshape(along))
        x = ctx.emit(ops.Binary("sub"), [x, zero], ctx.temp("minus_zero_point"), shape, "i32")
    steps = ctx.emit(ops.Cast("f32"), [x], ctx.temp("f32"), shape, "f32")
    ctx.emit(ops.Binary("mul"), [steps, ctx.add_const("scale", np.asarray(p.scale, np.float32).reshape(along))],
             dtype="f32")
