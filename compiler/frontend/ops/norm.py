"""Normalisation and reductions."""
from __future__ import annotations

import numpy as np

from nmc.compiler.frontend.context import NodeContext, norm_axis
from nmc.compiler.frontend.ops import converter
from nmc.compiler.ir import ops


@converter("BatchNormalization")
def batch_norm(ctx: NodeContext) -> None:
    if ctx.attr("training_mode", 0) or (len(ctx.node.output) > 1 and any(ctx.node.output[1:])):
        raise ctx.fail("training-mode BatchNormalization is not supported (export the model in eval mode)")
    if len(ctx.shape(0)) < 2:
        raise ctx.fail("BatchNormalization needs an input of rank 2 or more")
    for i, what in enumerate(("scale", "bias", "mean", "var"), start=1):
        ctx.need_const(i, what)
    ctx.emit(ops.BatchNorm(float(ctx.attr("epsilon", 1e-5))), [ctx.input(i) for i in range(5)])


@converter("LayerNormalization")
def layer_norm(ctx: NodeContext) -> None:
    shape = ctx.shape(0)
    rank = len(shape)
    axis = norm_axis(int(ctx.attr("axis", -1)), rank, ctx)
    epsilon = float(ctx.attr("epsilon", 1e-5))
    inputs = [ctx.input(0)]
    ctx.need_const(1, "the scale")
    inputs.append(ctx.input(1))
    if ctx.has_input(2):
        ctx.need_const(2, "the bias")
        inputs.append(ctx.input(2))
    ctx.emit(ops.LayerNorm(axis, epsilon), inputs)
    mean_out = ctx.node.output[1] if len(ctx.node.output) > 1 else ""
    inv_std_out = ctx.node.output[2] if len(ctx.node.output) > 2 else ""
    if mean_out or inv_std_out:  # the optional statistics outputs, computed beside the fused op
        axes = tuple(range(axis, rank))
        stat = tuple(shape[:axis]) + (1,) * (rank - axis)
        x = ctx.input(0)
        mean = ctx.emit(ops.Reduce("mean", axes, True), [x], mean_out or ctx.temp("mean"), stat)
        if inv_std_out:
            centred = ctx.emit(ops.Binary("sub"), [x, mean], ctx.temp("centred"), shape)
            square = ctx.emit(ops.Binary("mul"), [centred, centred], ctx.temp("square"), shape)
            var = ctx.emit(ops.Reduce("mean", axes, True), [square], ctx.temp("var"), stat)
            var_eps = ctx.emit(ops.Binary("add"), [var, ctx.add_const("epsilon", np.float32(epsilon))],
                               ctx.temp("var_eps"), stat)
            std = ctx.emit(ops.Unary("sqrt"), [var_eps], ctx.temp("std"), stat)
            ctx.emit(ops.Unary("recip"), [std], inv_std_out, stat)


_REDUCE = {"ReduceMean": "mean", "ReduceSum": "sum", "ReduceMax": "max", "ReduceMin": "min"}
_AXES_AS_INPUT = {"ReduceSum": 13}  # the others moved axes to an input at opset 18


@converter(*_REDUCE)
def reduce(ctx: NodeContext) -> None:
    rank = len(ctx.shape(0))
    keepdims = bool(ctx.attr("keepdims", 1))
    if ctx.opset >= _AXES_AS_INPUT.get(ctx.node.op_type, 18):
        axes_value = ctx.optional_const(1, "axes")
        axes = [] if axes_value is None else [int(a) for a in np.asarray(axes_value).reshape(-1)]
        if not axes and ctx.attr("noop_with_empty_axes", 0):
            return ctx.alias(ctx.output, ctx.input(0))
    else:
        axes = list(ctx.attr("axes", []))
    if not axes:
        axes = list(range(rank))
    axes = sorted({norm_axis(a, rank, ctx) for a in axes})
    if rank == 0:
        return ctx.alias(ctx.output, ctx.input(0))
    ctx.emit(ops.Reduce(_REDUCE[ctx.node.op_type], tuple(axes), keepdims), [ctx.input(0)])


@converter("ArgMax", integer_outputs=True)
def argmax(ctx: NodeContext) -> None:
    """The index of the largest element; nmc holds indices as float32 integers (exact below 2^24)."""
    rank = len(ctx.shape(0))
    axis = norm_axis(int(ctx.attr("axis", 0)), rank, ctx)
    keepdims = bool(ctx.attr("keepdims", 1))
    out_shape = ctx.out_shape()
    if not ctx.attr("select_last_index", 0):
        ctx.emit(ops.ArgMax(axis, keepdims), [ctx.input(0)])
        return
    # the last index of the maximum is n - 1 - (the first index of the maximum, axis reversed)
    n = ctx.shape(0)[axis]
    reversed_x = ctx.emit(ops.Slice(tuple(n - 1 if a == axis else 0 for a in range(rank)),
                                    tuple(-1 if a == axis else 1 for a in range(rank))),
                          [ctx.input(0)], ctx.temp("reversed"), ctx.shape(0))
    first = ctx.emit(ops.ArgMax(axis, keepdims), [reversed_x], ctx.temp("first"), out_shape)
    negated = ctx.emit(ops.Binary("mul"), [first, ctx.add_const("minus_one", np.float32(-1))],
                       ctx.temp("negated"), out_shape)
    ctx.emit(ops.Binary("add"), [negated, ctx.add_const("last", np.float32(n - 1))])
