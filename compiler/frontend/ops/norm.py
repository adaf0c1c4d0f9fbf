"""Normalisation and reductions."""
from __future__ import annotations

import numpy as np

from nmc.compiler.frontend.context import NodeContext, norm_axis
from nmc.compiler.frontend.ops import converter
from nmc.compiler.ir import ops
from nmc.compiler.ir.graph import TensorType
from nmc.compiler.ir.verify import BatchAxisError


@converter("BatchNormalization", limits="inference mode; constant scale, bias, mean and variance "
           "(fold-batchnorm folds it into the Conv or Gemm before it)")
def batch_norm(ctx: NodeContext) -> None:
    if ctx.attr("training_mode", 0) or (len(ctx.node.output) > 1 and any(ctx.node.output[1:])):
        raise ctx.fail("training-mode BatchNormalization is not supported (export the model in eval mode)")
    if len(ctx.shape(0)) < 2:
        raise ctx.fail("BatchNormalization needs an input of rank 2 or more")
    for i, what in enumerate(("scale", "bias", "mean", "var"), start=1):
        ctx.need_const(i, what)
    ctx.emit(ops.BatchNorm(float(ctx.attr("epsilon", 1e-5))), [ctx.input(i) for i in range(5)])


@converter("LayerNormalization",
           limits="constant scale and bias; the mean and inverse-deviation outputs computed when read")
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


def reduce_axes(ctx: NodeContext) -> tuple[int, ...] | None:
    """The sorted axes a Reduce* node reduces (an attribute, or input 1 from opset 13 for
    ReduceSum and 18 for the others); None when it reduces nothing (noop_with_empty_axes, or a
    scalar input), and the node is the identity."""
    rank = len(ctx.shape(0))
    if ctx.opset >= _AXES_AS_INPUT.get(ctx.node.op_type, 18):
        axes_value = ctx.optional_const(1, "axes")
        axes = [] if axes_value is None else [int(a) for a in np.asarray(axes_value).reshape(-1)]
        if not axes and ctx.attr("noop_with_empty_axes", 0):
            return None
    else:
        axes = list(ctx.attr("axes", []))
    if rank == 0:
        return None
    return tuple(sorted({norm_axis(a, rank, ctx) for a in axes})) if axes else tuple(range(rank))


@converter("ReduceMean", "ReduceSum", limits="constant axes")
def reduce(ctx: NodeContext) -> None:
    axes = reduce_axes(ctx)
    if axes is None:
        return ctx.alias(ctx.output, ctx.input(0))
    ctx.emit(ops.Reduce(_REDUCE[ctx.node.op_type], axes, bool(ctx.attr("keepdims", 1))), [ctx.input(0)])


@converter("ReduceMax", "ReduceMin", typed=True,
           limits="constant axes; float, integer and bool data (bool: any / all), exact in i32")
def reduce_extreme(ctx: NodeContext) -> None:
    reduce(ctx)


@converter("ReduceSumSquare", "ReduceL2", "ReduceL1", "ReduceLogSum", "ReduceLogSumExp",
           limits="constant axes; compositions of element-wise steps and a sum (LogSumExp: max-shifted)")
def reduce_composite(ctx: NodeContext) -> None:
    """Σx², √Σx², Σ|x|, ln Σx, and ln Σ exp(x − m) + m with m the maximum (no overflow)."""
    kind = ctx.node.op_type
    x, shape = ctx.input(0), ctx.shape(0)
    axes = reduce_axes(ctx)
    if axes is None:
        return ctx.alias(ctx.output, x)
    keepdims = bool(ctx.attr("keepdims", 1))
    out = ctx.out_shape()
    kept = tuple(1 if a in axes else d for a, d in enumerate(shape))
    total = ops.Reduce("sum", axes, keepdims)
    if kind in ("ReduceSumSquare", "ReduceL2"):
        steps = [(ops.Binary("mul"), shape, "square", [x, x]), (total, out, "sum_square")]
        ctx.chain(x, steps + ([(ops.Unary("sqrt"), out, "l2")] if kind == "ReduceL2" else []))
    elif kind == "ReduceL1":
        ctx.chain(x, [(ops.Unary("abs"), shape, "abs"), (total, out, "l1")])
    elif kind == "ReduceLogSum":
        ctx.chain(x, [(total, out, "sum"), (ops.Unary("log"), out, "log_sum")])
    else:
        peak = ctx.emit(ops.Reduce("max", axes, True), [x], ctx.temp("max"), kept)
        log_sum = ctx.chain(x, [(ops.Binary("sub"), shape, "shifted", [None, peak]), (ops.Unary("exp"), shape, "exp"),
                                (total, out, "sum_exp"), (ops.Unary("log"), out, "log_sum_exp")], ctx.temp("log_sum"))
        if out != kept:
            peak = ctx.emit(ops.Reshape(), [peak], ctx.temp("max_out"), out)
        ctx.emit(ops.Binary("add"), [log_sum, peak])


@converter("ArgMax", integer_outputs=True, limits="indices as float32 integers (exact below 2^24); select_last_index")
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


def _normalise_trailing(ctx: NodeContext, x: str, shape: tuple[int, ...], axis: int, epsilon: float,
                        output: str | None = None) -> str:
    """(x − mean) / √(var + ε) over the axes ``axis..`` of ``x`` (a LayerNorm with scale 1)."""
    return ctx.emit(ops.LayerNorm(axis, epsilon), [x, ctx.add_const("one", np.float32(1))],
                    output or ctx.temp("normalised"), shape)


def _per_channel(ctx: NodeContext, i: int, what: str, channels: int, rank: int) -> str:
    """Input ``i`` (``channels`` values, constant or computed) as a ``[C, 1, ...]`` operand."""
    value, shape = ctx.input(i), ctx.shape(i)
    if int(np.prod(shape)) != channels:
        raise ctx.fail(f"{what} has shape {list(shape)}; expected {channels} values, one per channel")
    along = (channels,) + (1,) * (rank - 2)
    if shape == along:
        return value
    if ctx.g.is_const(value):
        return ctx.add_const(what, ctx.g.constants[value].reshape(along))
    return ctx.emit(ops.Reshape(), [value], ctx.temp(what), along)


@converter("InstanceNormalization", limits="scale and bias constant or computed, one per channel")
def instance_norm(ctx: NodeContext) -> None:
    """Normalise each (sample, channel) over the spatial axes (a LayerNorm from axis 2), then
    the per-channel scale and bias."""
    shape = ctx.shape(0)
    if len(shape) < 3:
        raise ctx.fail(f"InstanceNormalization needs an input of rank 3 or more (N, C, spatial...), not {list(shape)}")
    epsilon = float(ctx.attr("epsilon", 1e-5))
    scale, bias = (_per_channel(ctx, i, what, shape[1], len(shape)) for i, what in ((1, "scale"), (2, "bias")))
    ctx.chain(_normalise_trailing(ctx, ctx.input(0), shape, 2, epsilon),
              [(ops.Binary("mul"), shape, "scaled", [None, scale]),
               (ops.Binary("add"), shape, "shifted", [None, bias])])


@converter("GroupNormalization", opsets="21+", limits="scale and bias per channel, constant or computed "
           "(opset 18's per-group form is deprecated, and the ONNX checker refuses it)")
def group_norm(ctx: NodeContext) -> None:
    """x regarded as [N, G, C/G · spatial], normalised over its last axis (a LayerNorm from axis
    2), back to x's shape, then the per-channel scale and bias."""
    shape = ctx.shape(0)
    groups = int(ctx.attr("num_groups"))
    if len(shape) < 2 or groups < 1 or shape[1] % groups:
        raise ctx.fail(f"num_groups={groups} does not divide the {shape[1] if len(shape) > 1 else 0} channels "
                       f"of an input of shape {list(shape)}")
    scale, bias = (_per_channel(ctx, i, what, shape[1], len(shape)) for i, what in ((1, "scale"), (2, "bias")))
    grouped = (shape[0], groups, int(np.prod(shape[1:])) // groups)
    x = ctx.emit(ops.Reshape(), [ctx.input(0)], ctx.temp("grouped"), grouped)
    x = _normalise_trailing(ctx, x, grouped, 2, float(ctx.attr("epsilon", 1e-5)))
    ctx.chain(x, [(ops.Reshape(), shape, "normalised_x"), (ops.Binary("mul"), shape, "scaled", [None, scale]),
                  (ops.Binary("add"), shape, "shifted", [None, bias])])


@converter("LRN", limits="across channels, any size, alpha, beta, bias")
def lrn(ctx: NodeContext) -> None:
    """x / (bias + alpha/size · Σ x²)^beta, the sum over a window of ``size`` channels: an
    average pooling (padding counted, so it divides by ``size``) of x² over the channel axis."""
    shape = ctx.shape(0)
    if len(shape) < 2:
        raise ctx.fail(f"LRN needs an input of rank 2 or more (N, C, ...), not {list(shape)}")
    size = int(ctx.attr("size"))
    alpha, beta, bias = float(ctx.attr("alpha", 1e-4)), float(ctx.attr("beta", 0.75)), float(ctx.attr("bias", 1.0))
    if size < 1:
        raise ctx.fail(f"size={size}; it must be positive")
    x = ctx.input(0)
    rows = (shape[0], 1, shape[1], int(np.prod(shape[2:])))  # channels as a spatial axis of a pooling
    before, after = (size - 1) // 2, size // 2
    pads = (before, 0, after, 0)
    window = ops.Pool("avg", (size, 1), (1, 1), pads, (1, 1), True, pads)
    ctx.chain(x, [(ops.Binary("mul"), shape, "square", [x, x]), (ops.Reshape(), rows, "rows"),
                  (window, rows, "mean_square"), (ops.Reshape(), shape, "window_mean"),
                  (ops.Binary("mul"), shape, "alpha", [None, ctx.add_const("alpha", np.float32(alpha))]),
                  (ops.Binary("add"), shape, "bias", [None, ctx.add_const("bias", np.float32(bias))]),
                  (ops.Binary("pow"), shape, "power", [None, ctx.add_const("beta", np.float32(beta))]),
                  (ops.Binary("div"), shape, "lrn", [x, None])])


@converter("CumSum", typed=True,
           limits="constant axis; exclusive, reverse; float or integer data (exact in i32); a product with a "
                  "triangular constant, O(n²) in the axis length")
def cumsum(ctx: NodeContext) -> None:
    """Cumulative sums along one axis as T @ x', x' the input regarded as [..., n, rest] and T
    the n × n triangle of ones (strict for ``exclusive``, upper for ``reverse``): a matrix product
    with a constant operand on the vector unit. Simple and exact up to summation order; the
    cost is n multiply-adds per element, fine for the short axes models accumulate over."""
    shape = ctx.shape(0)
    axis_value = np.asarray(ctx.need_const(1, "axis")).reshape(-1)
    if axis_value.size != 1:
        raise ctx.fail(f"axis must hold one value, not {axis_value.size}")
    rank = len(shape)
    axis = norm_axis(int(axis_value[0]), rank, ctx)
    if ctx.g.batched and axis == 0:
        raise BatchAxisError(f"node {ctx.label!r} (CumSum): it sums along axis 0, the batch axis of a model that "
                             "nmc runs sample by sample (export with a fixed batch size to sum across samples)")
    n = shape[axis]
    rows, cols = np.indices((n, n))
    exclusive, reverse = bool(ctx.attr("exclusive", 0)), bool(ctx.attr("reverse", 0))
    if reverse:
        ones = cols > rows if exclusive else cols >= rows
    else:
        ones = cols < rows if exclusive else cols <= rows
    if ctx.g.dtype(ctx.input(0)) == "f32":
        triangle = ctx.add_const("triangle", ones.astype(np.float32))
    elif ctx.g.dtype(ctx.input(0)) == "i32":  # integer sums in i32 (wrapping beyond it, as onnxruntime's int32)
        triangle = ctx.g.fresh(f"{ctx.output}.triangle")
        ctx.g.constants[triangle] = ones.astype(np.int32)
        ctx.g.tensors[triangle] = TensorType((n, n), "i32")
    else:
        raise ctx.fail(f"CumSum of a {ctx.g.dtype(ctx.input(0))} tensor; supported: float and integer tensors")
    columns = tuple(shape[:axis]) + (n, int(np.prod(shape[axis + 1:])))
    if columns == tuple(shape):
        return ctx.emit(ops.MatMul(), [triangle, ctx.input(0)])
    ctx.chain(ctx.input(0), [(ops.Reshape(), columns, "columns"), (ops.MatMul(), columns, "cumsum", [triangle, None]),
                             (ops.Reshape(), shape, "cumsum_out")])
