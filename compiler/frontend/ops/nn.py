"""Matrix products, convolution and pooling."""
from __future__ import annotations


import numpy as np

from nmc.compiler.frontend.context import NodeContext, norm_axis
from nmc.compiler.frontend.ops import converter
from nmc.compiler.ir import ops


@converter("Gemm")
def gemm(ctx: NodeContext) -> None:
    alpha, beta = float(ctx.attr("alpha", 1.0)), float(ctx.attr("beta", 1.0))
    trans_a, trans_b = bool(ctx.attr("transA", 0)), bool(ctx.attr("transB", 0))
    a = ctx.input(0)
    if trans_a:
        if ctx.g.is_const(a):
            a = ctx.add_const("a_t", ctx.g.constants[a].T)
        else:
            m, k = ctx.shape(0)
            a = ctx.emit(ops.Transpose((1, 0)), [a], ctx.temp("a_t"), (k, m))
    b_value = ctx.const(1)
    c_value = ctx.optional_const(2, "C")
    out_shape = ctx.out_shape()
    if b_value is not None and not ctx.g.is_const(a):
        b_eff = b_value.T if trans_b else b_value  # [K, N]
        weight = ctx.add_const("weight", alpha * b_eff.T)
        inputs = [a, weight]
        full_bias = None
        if c_value is not None and beta != 0:
            c = beta * np.asarray(c_value, np.float32)
            if c.size == out_shape[1] and (c.ndim == 1 or c.shape[0] == 1):
                inputs.append(ctx.add_const("bias", c.reshape(-1)))
            else:
                full_bias = c
        if full_bias is None:
            ctx.emit(ops.Dense(), inputs)
        else:
            y = ctx.emit(ops.Dense(), inputs, ctx.temp("xw"), out_shape)
            ctx.emit(ops.Binary("add"), [y, ctx.add_const("bias", full_bias)])
        return
    b = ctx.input(1)
    if trans_b:
        if ctx.g.is_const(b):
            b = ctx.add_const("b_t", ctx.g.constants[b].T)
        else:
            k, n = ctx.shape(1)
            b = ctx.emit(ops.Transpose((1, 0)), [b], ctx.temp("b_t"), (n, k))
    has_c = c_value is not None and beta != 0
    y = ctx.emit(ops.MatMul(), [a, b], ctx.temp("ab") if (alpha != 1 or has_c) else None, out_shape)
    if alpha != 1:
        y = ctx.emit(ops.Binary("mul"), [y, ctx.add_const("alpha", np.float32(alpha))],
                     ctx.temp("alpha_ab") if has_c else None, out_shape)
    if has_c:
        ctx.emit(ops.Binary("add"), [y, ctx.add_const("bias", beta * np.asarray(c_value, np.float32))])


@converter("MatMul")
def matmul(ctx: NodeContext) -> None:
    a_shape, b_shape = ctx.shape(0), ctx.shape(1)
    b_value = ctx.const(1)
    a = ctx.input(0)
    if b_value is not None and b_value.ndim == 2 and not ctx.g.is_const(a) and len(a_shape) >= 2:
        ctx.emit(ops.Dense(), [a, ctx.add_const("weight", np.asarray(b_value, np.float32).T)])
        return
    if len(a_shape) < 1 or len(b_shape) < 1:
        raise ctx.fail("MatMul of scalars")
    ctx.emit(ops.MatMul(), [a, ctx.input(1)])


def _spatial_pads(ctx: NodeContext, in_spatial, kernel, strides, dilations) -> tuple[int, ...]:
    rank = len(in_spatial)
    auto_pad = ctx.attr("auto_pad", "NOTSET")
    if auto_pad in ("NOTSET", ""):
        pads = tuple(ctx.attr("pads", [0] * (2 * rank)))
        if len(pads) != 2 * rank:
            raise ctx.fail(f"pads has {len(pads)} values, expected {2 * rank}")
        return pads
    if auto_pad == "VALID":
        return (0,) * (2 * rank)
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        begins, ends = [], []
        for size, k, s, d in zip(in_spatial, kernel, strides, dilations):
            out = -(-size // s)
            total = max(0, (out - 1) * s + (k - 1) * d + 1 - size)
            small = total // 2
            begin = small if auto_pad == "SAME_UPPER" else total - small
            begins.append(begin)
            ends.append(total - begin)
        return tuple(begins + ends)
    raise ctx.fail(f"auto_pad={auto_pad!r}; supported: NOTSET, VALID, SAME_UPPER, SAME_LOWER")


@converter("Conv")
def conv(ctx: NodeContext) -> None:
    x_shape = ctx.shape(0)
    weight = ctx.need_const(1, "the weight")
    if len(x_shape) < 3:
        raise ctx.fail("Conv needs an input of rank 3 or more (N, C, spatial...)")
    rank = len(x_shape) - 2
    kernel = tuple(int(k) for k in weight.shape[2:])
    strides = tuple(ctx.attr("strides", [1] * rank))
    dilations = tuple(ctx.attr("dilations", [1] * rank))
    group = int(ctx.attr("group", 1))
    pads = _spatial_pads(ctx, x_shape[2:], kernel, strides, dilations)
    inputs = [ctx.input(0), ctx.input(1)]
    if ctx.has_input(2):
        ctx.need_const(2, "the bias")
        inputs.append(ctx.input(2))
    ctx.emit(ops.Conv(kernel, strides, tuple(int(p) for p in pads), dilations, group), inputs)


def _pool(ctx: NodeContext, kind: str) -> None:
    if len(ctx.node.output) > 1 and ctx.node.output[1]:
        raise ctx.fail("the Indices output of MaxPool is not supported")
    x_shape = ctx.shape(0)
    rank = len(x_shape) - 2
    kernel = tuple(ctx.attr("kernel_shape"))
    strides = tuple(ctx.attr("strides", [1] * rank))
    dilations = tuple(ctx.attr("dilations", [1] * rank))
    pads = _spatial_pads(ctx, x_shape[2:], kernel, strides, dilations)
    out = ctx.out_shape()
    if ctx.attr("ceil_mode", 0):
        for axis in range(rank):
            # onnxruntime drops a last window that would start in the end padding
            if (out[2 + axis] - 1) * strides[axis] >= x_shape[2 + axis] + pads[axis]:
                raise ctx.fail("ceil_mode makes the last window start in the padding, where ONNX shape "
                               "inference and onnxruntime disagree on the output size")
    ends = []
    for axis in range(rank):
        needed = (out[2 + axis] - 1) * strides[axis] + (kernel[axis] - 1) * dilations[axis] + 1 \
            - x_shape[2 + axis] - pads[axis]
        ends.append(max(pads[rank + axis], needed))
    ctx.emit(ops.Pool(kind, kernel, strides, tuple(pads[:rank]) + tuple(ends), dilations,
                      bool(ctx.attr("count_include_pad", 0)), tuple(pads)), [ctx.input(0)])


@converter("MaxPool")
def max_pool(ctx: NodeContext) -> None:
    _pool(ctx, "max")


@converter("AveragePool")
def average_pool(ctx: NodeContext) -> None:
    _pool(ctx, "avg")


@converter("GlobalAveragePool", "GlobalMaxPool")
def global_pool(ctx: NodeContext) -> None:
    rank = len(ctx.shape(0))
    kind = "mean" if ctx.node.op_type == "GlobalAveragePool" else "max"
    ctx.emit(ops.Reduce(kind, tuple(range(2, rank)), True), [ctx.input(0)])


@converter("Softmax")
def softmax(ctx: NodeContext) -> None:
    rank = len(ctx.shape(0))
    if ctx.opset < 13:
        axis = norm_axis(int(ctx.attr("axis", 1)), rank, ctx)
        axes = tuple(range(axis, rank))
    else:
        axes = (norm_axis(int(ctx.attr("axis", -1)), rank, ctx),)
    ctx.emit(ops.Softmax(axes), [ctx.input(0)])


def pool_divisors(in_spatial, op: ops.Pool, out_spatial) -> np.ndarray:
    """How many elements each average-pooling window divides by, as ONNX defines it."""
    per_axis = []
    rank = len(in_spatial)
    for axis in range(rank):
        size, k, s, d = in_spatial[axis], op.kernel[axis], op.strides[axis], op.dilations[axis]
        begin = op.pads[axis]
        lo, hi = (-op.input_pads[axis], size + op.input_pads[rank + axis]) if op.count_include_pad else (0, size)
        counts = []
        for o in range(out_spatial[axis]):
            taps = o * s - begin + np.arange(k) * d
            counts.append(int(np.sum((taps >= lo) & (taps < hi))))
        per_axis.append(np.array(counts, np.float32))
    table = per_axis[0]
    for extra in per_axis[1:]:
        table = np.multiply.outer(table, extra)
    return np.maximum(table, 1).astype(np.float32)


