"""QuantizeLinear and DequantizeLinear: models in QDQ format (e.g. onnxruntime's quantizer).

nmc computes float tensors. The loader folds DequantizeLinear of constant integers (int8
weights, int32 biases) into float constants. On an activation, a QuantizeLinear whose integer
output is read by DequantizeLinear with the same parameters is fake quantisation: one
``FakeQuant`` node, exact in float32. The integer tensor in between never exists in the IR.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import onnx

from nmc.compiler.frontend.context import NodeContext, norm_axis
from nmc.compiler.frontend.ops import converter
from nmc.compiler.ir import ops


@dataclass(frozen=True)
class Quantized:
    """The integer output of a QuantizeLinear node: its float source and its parameters."""

    label: str
    source: str
    shape: tuple[int, ...]
    elem_type: int
    params: ops.FakeQuant


def integer_range(elem_type: int, ctx: NodeContext) -> tuple[int, int]:
    """The value range of an ONNX integer element type (int2 … int16, uint2 … uint16)."""
    name = onnx.TensorProto.DataType.Name(elem_type)
    match = re.fullmatch(r"(U?)INT(2|4|8|16)", name)
    if match is None:
        raise ctx.fail(f"quantised element type {name} is not supported; supported: int2/4/8/16 and uint2/4/8/16 "
                       "(float 8 and 4-bit float types are not)")
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
           limits="read only by a DequantizeLinear with the same parameters (fake quantisation); int2-16, uint2-16; "
                  "per tensor or per axis")
def quantize_linear(ctx: NodeContext) -> None:
    """Records the integer output; the DequantizeLinear that reads it emits the node."""
    source = ctx.input(0)
    elem_type = ctx.out_elem_type(0)
    if not elem_type:  # no shape information: the zero point's type, else uint8 (the default)
        zero = ctx.const(2)
        elem_type = onnx.helper.np_dtype_to_tensor_dtype(zero.dtype) if zero is not None else onnx.TensorProto.UINT8
    shape = ctx.shape(0)
    ctx.quantized[ctx.output] = Quantized(ctx.label, source, shape, elem_type, qdq_params(ctx, elem_type, shape))


@converter("DequantizeLinear", limits="of constant integers (folded) or of a QuantizeLinear with the same parameters")
def dequantize_linear(ctx: NodeContext) -> None:
    quantized = ctx.quantized.get(ctx.node.input[0])
    if quantized is None:  # constant integers were folded by the loader; these come from outside
        ctx.need_const(0, "the integer tensor (not produced by a QuantizeLinear in the model; nmc computes "
                          "float tensors, so integer data must be known at compile time)")
        ctx.need_const(1, "the scale")
        ctx.optional_const(2, "the zero point")
        raise ctx.fail("cannot dequantise this input")
    params = qdq_params(ctx, quantized.elem_type, quantized.shape)
    if params != quantized.params:
        raise ctx.fail(f"its scale, zero point or axis differ from those of QuantizeLinear {quantized.label!r}; "
                       "supported: a QuantizeLinear/DequantizeLinear pair with "
                       "the same parameters (fake quantisation)")
    ctx.emit(params, [quantized.source])
