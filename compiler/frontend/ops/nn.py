"""Matrix products, convolution and pooling."""
from __future__ import annotations


import numpy as np

from nmc.compiler.frontend.context import NodeContext, norm_axis
from nmc.compiler.frontend.ops import converter
from nmc.compiler.frontend.ops.indexing import _take, _take_const
from nmc.compiler.ir import ops
from nmc.compiler.ir.graph import TensorType
from nmc.compiler.ir.verify import BatchAxisError


@converter("Gemm", unit="crossbar or vector",
           limits="constant B: a crossbar layer (Dense); two activations: a vector matrix product")
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
        scaled = b_eff.T if alpha == 1 and b_eff.dtype == np.float32 else alpha * b_eff.T  # no copy of a large B
        weight = ctx.add_const("weight", scaled)
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


@converter("MatMul", unit="crossbar or vector",
           limits="constant 2-D B: a crossbar layer (Dense); two activations: a vector matrix product (attention)")
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


@converter("Conv", unit="crossbar or vector",
           limits="any rank, strides, pads, auto_pad, dilations, groups; constant weight and bias: a crossbar layer; "
                  "a run-time weight or bias: a vector matrix product of the input's windows (kh·kw strided "
                  "slices, one MatMul), not in a batched model")
def conv(ctx: NodeContext) -> None:
    x_shape = ctx.shape(0)
    if len(x_shape) < 3:
        raise ctx.fail("Conv needs an input of rank 3 or more (N, C, spatial...)")
    rank = len(x_shape) - 2
    weight = ctx.const(1)
    kernel = tuple(int(k) for k in (ctx.shape(1) if weight is None else weight.shape)[2:])
    strides = tuple(ctx.attr("strides", [1] * rank))
    dilations = tuple(ctx.attr("dilations", [1] * rank))
    group = int(ctx.attr("group", 1))
    pads = tuple(int(p) for p in _spatial_pads(ctx, x_shape[2:], kernel, strides, dilations))
    op = ops.Conv(kernel, strides, pads, dilations, group)
    if weight is None or (ctx.has_input(2) and ctx.const(2) is None):
        _windows_matmul(ctx, ctx.input(0), ctx.input(1), ctx.input(2) if ctx.has_input(2) else None, op,
                        ctx.out_shape(), ctx.output)
        return
    inputs = [ctx.input(0), ctx.input(1)]
    if ctx.has_input(2):
        inputs.append(ctx.input(2))
    ctx.emit(op, inputs)


def _windows_matmul(ctx: NodeContext, x: str, w: str, bias: str | None, op: ops.Conv, out: tuple[int, ...],
                    output: str) -> str:
    """A convolution whose weight (or bias) is computed at run time: no stationary weights, so a
    product of two activations on the vector unit. Each of the K = Π kernel taps is one strided
    Slice of the zero-padded input, ``[N, C, *out_spatial]``; stacked per group they are the
    input's windows ``[N, g, C/g · K, P]`` (im2col, P output positions), and one MatMul by the
    weight viewed as ``[g, M/g, C/g · K]`` gives every output. The program grows with K, not
    with pixels. A run-time weight in a batched model would be one weight per sample (its
    leading axis is the batch), not the one weight of every sample ONNX means: refused."""
    if ctx.g.batched:
        raise BatchAxisError(f"node {ctx.label!r} ({ctx.node.op_type}): its weight is computed at run time, so in a "
                             "model with a free batch it holds the batch axis (a weight per sample); export with a "
                             "fixed batch size or a constant weight")
    x_shape, w_shape = ctx.g.shape(x), ctx.g.shape(w)
    rank = len(op.kernel)
    n, c = x_shape[:2]
    m, group = w_shape[0], op.group
    if len(w_shape) != rank + 2 or c != w_shape[1] * group or m % group:
        raise ctx.fail(f"weight of shape {list(w_shape)} does not fit an input of shape {list(x_shape)} "
                       f"with group={group}")
    if ctx.g.dtype(x) != "f32" or ctx.g.dtype(w) != "f32":
        raise ctx.fail("a convolution of integer tensors; supported: float input and weight")
    o_spatial = tuple(out[2:])
    taps, positions, per_group = int(np.prod(op.kernel)), int(np.prod(o_spatial)), c // group
    padded = x
    if any(op.pads):
        spatial = tuple(d + b + e for d, b, e in zip(x_shape[2:], op.pads[:rank], op.pads[rank:]))
        padded = ctx.emit(ops.Pad((0, 0) + op.pads[:rank] + (0, 0) + op.pads[rank:], 0.0), [x], ctx.temp("padded"),
                          (n, c) + spatial)
    windows = []
    for tap in np.ndindex(*op.kernel):
        starts = (0, 0) + tuple(int(t) * d for t, d in zip(tap, op.dilations))
        sliced = ctx.emit(ops.Slice(starts, (1, 1) + tuple(op.strides)), [padded], ctx.temp("tap"),
                          (n, c) + o_spatial)
        windows.append(ctx.emit(ops.Reshape(), [sliced], ctx.temp("tap_rows"), (n, group, per_group, 1, positions)))
    stacked = windows[0] if taps == 1 else ctx.emit(ops.Concat(3), windows, ctx.temp("windows"),
                                                    (n, group, per_group, taps, positions))
    columns = ctx.emit(ops.Reshape(), [stacked], ctx.temp("columns"), (n, group, per_group * taps, positions))
    matrix = ctx.emit(ops.Reshape(), [w], ctx.temp("weight_rows"), (group, m // group, per_group * taps))
    product = ctx.emit(ops.MatMul(), [matrix, columns], ctx.temp("product"), (n, group, m // group, positions))
    if bias is None:
        return ctx.emit(ops.Reshape(), [product], output, out)
    y = ctx.emit(ops.Reshape(), [product], ctx.temp("no_bias"), out)
    per_channel = (m,) + (1,) * rank
    b = ctx.add_const("bias", np.asarray(ctx.g.constants[bias], np.float32).reshape(per_channel)) \
        if ctx.g.is_const(bias) else ctx.emit(ops.Reshape(), [bias], ctx.temp("bias"), per_channel)
    return ctx.emit(ops.Binary("add"), [y, b], output, out)


@converter("ConvTranspose", unit="crossbar or vector",
           limits="any rank, strides, pads, auto_pad, output_padding, output_shape, dilations, groups; a Conv over "
                  "the zero-upsampled input (stride^rank times the reads): constant weight and bias on crossbars, "
                  "a run-time weight or bias as Conv's (flipped by a Slice), not in a batched model")
def conv_transpose(ctx: NodeContext) -> None:
    """A transposed convolution is a convolution, with stride 1, of the input upsampled with
    zeros (stride − 1 between neighbours), padded by dilation · (kernel − 1) less the node's pads
    (output_padding more at the end), with the kernel flipped and its in/out channels swapped
    per group. It stays a Conv, so partition and tile-mapping put it on crossbars like any
    other; the price is the zeros, which the crossbar reads too. Pads follow onnxruntime (with
    output_shape: total padding split with the extra at the start, SAME_UPPER at the end)."""
    x_shape = ctx.shape(0)
    weight = ctx.const(1)
    w_shape = tuple(ctx.shape(1)) if weight is None else tuple(weight.shape)
    if len(x_shape) < 3:
        raise ctx.fail("ConvTranspose needs an input of rank 3 or more (N, C, spatial...)")
    rank = len(x_shape) - 2
    spatial = x_shape[2:]
    group = int(ctx.attr("group", 1))
    kernel = tuple(int(k) for k in w_shape[2:])
    if tuple(ctx.attr("kernel_shape", kernel)) != kernel:
        raise ctx.fail(f"kernel_shape {list(ctx.attr('kernel_shape'))} differs from the weight's {list(kernel)}")
    if len(w_shape) != rank + 2 or x_shape[1] != w_shape[0] or x_shape[1] % group:
        raise ctx.fail(f"weight of shape {list(w_shape)} does not fit an input of shape {list(x_shape)} "
                       f"with group={group}")
    strides = tuple(int(v) for v in ctx.attr("strides", [1] * rank))
    dilations = tuple(int(v) for v in ctx.attr("dilations", [1] * rank))
    extra = tuple(int(v) for v in ctx.attr("output_padding", [0] * rank))
    if not len(strides) == len(dilations) == len(extra) == rank:
        raise ctx.fail(f"strides, dilations and output_padding need {rank} values each")
    full = [s * (n - 1) + e + (k - 1) * d + 1 for s, n, e, k, d in zip(strides, spatial, extra, kernel, dilations)]
    auto_pad = ctx.attr("auto_pad", "NOTSET") or "NOTSET"
    if auto_pad not in ("NOTSET", "VALID", "SAME_UPPER", "SAME_LOWER"):
        raise ctx.fail(f"auto_pad={auto_pad!r}; supported: NOTSET, VALID, SAME_UPPER, SAME_LOWER")
    wanted = ctx.attr("output_shape")
    if wanted is None and auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        wanted = [n * s for n, s in zip(spatial, strides)]
    if wanted is not None:
        wanted = [int(v) for v in wanted][-rank:]
        totals = [f - w for f, w in zip(full, wanted)]
        if auto_pad == "SAME_UPPER":
            begins, ends = [t // 2 for t in totals], [t - t // 2 for t in totals]
        else:
            begins, ends = [t - t // 2 for t in totals], [t // 2 for t in totals]
    elif auto_pad == "VALID":
        begins, ends = [0] * rank, [0] * rank
    else:
        pads = [int(v) for v in ctx.attr("pads", [0] * (2 * rank))]
        if len(pads) != 2 * rank:
            raise ctx.fail(f"pads has {len(pads)} values, expected {2 * rank}")
        begins, ends = pads[:rank], pads[rank:]
    # the equivalent convolution's padding of the input upsampled to n · s (s − 1 zeros after each element)
    conv_begin = [d * (k - 1) - b for d, k, b in zip(dilations, kernel, begins)]
    conv_end = [d * (k - 1) - e + x - (s - 1) for d, k, e, x, s in zip(dilations, kernel, ends, extra, strides)]
    steps = []
    n, c = x_shape[:2]
    upsampled = [n_ * s for n_, s in zip(spatial, strides)]
    if any(s > 1 for s in strides):
        pairs = (n, c) + tuple(d for n_, s in zip(spatial, strides) for d in ((n_, 1) if s > 1 else (n_,)))
        gaps = tuple(d for s in strides for d in ((0, s - 1) if s > 1 else (0,)))
        padded = (n, c) + tuple(d for n_, s in zip(spatial, strides) for d in ((n_, s) if s > 1 else (n_,)))
        steps += [(ops.Reshape(), pairs, "pairs"), (ops.Pad((0,) * len(pairs) + (0, 0) + gaps, 0.0), padded, "gaps"),
                  (ops.Reshape(), (n, c) + tuple(upsampled), "upsampled")]
    crop_begin, crop_end = [max(0, -p) for p in conv_begin], [max(0, -p) for p in conv_end]
    if any(crop_begin) or any(crop_end):
        cropped = tuple(u - b - e for u, b, e in zip(upsampled, crop_begin, crop_end))
        if min(cropped) < 1:
            raise ctx.fail(f"pads {begins + ends} leave no output")
        steps.append((ops.Slice((0, 0) + tuple(crop_begin), (1,) * (rank + 2)), (n, c) + cropped, "cropped"))
    in_group, out_group = w_shape[0] // group, w_shape[1]
    pads = tuple(max(0, p) for p in conv_begin) + tuple(max(0, p) for p in conv_end)
    out = ctx.out_shape()
    if list(out[2:]) != [f - b - e for f, b, e in zip(full, begins, ends)]:
        raise ctx.fail(f"pads {begins + ends} give an output of {[f - b - e for f, b, e in zip(full, begins, ends)]}, "
                       f"but shape inference says {list(out[2:])}")
    conv_op = ops.Conv(kernel, (1,) * rank, pads, dilations, group)
    if weight is None or (ctx.has_input(2) and ctx.const(2) is None):
        # the same kernel flip and channel swap, computed at run time: a Transpose and a reversing Slice
        grouped = (group, in_group, out_group) + kernel
        swapped = (group, out_group, in_group) + kernel
        flipped = ctx.chain(ctx.input(1), [
            (ops.Reshape(), grouped, "weight_groups"),
            (ops.Transpose((0, 2, 1) + tuple(range(3, 3 + rank))), swapped, "weight_swapped"),
            (ops.Slice((0, 0, 0) + tuple(k - 1 for k in kernel), (1, 1, 1) + (-1,) * rank), swapped, "weight_flipped"),
            (ops.Reshape(), (group * out_group, in_group) + kernel, "weight_conv")], ctx.temp("weight_conv"))
        upsampled_x = ctx.chain(ctx.input(0), steps, ctx.temp("conv_input")) if steps else ctx.input(0)
        _windows_matmul(ctx, upsampled_x, flipped, ctx.input(2) if ctx.has_input(2) else None, conv_op, out,
                        ctx.output)
        return
    weight = np.asarray(weight, np.float32)
    flipped = weight.reshape((group, in_group, out_group) + kernel).swapaxes(1, 2)
    flipped = flipped[(slice(None),) * 3 + (slice(None, None, -1),) * rank]
    flipped = flipped.reshape((group * out_group, in_group) + kernel)
    inputs = [None, ctx.add_const("weight", np.ascontiguousarray(flipped))]
    if ctx.has_input(2):
        inputs.append(ctx.input(2))
    steps.append((conv_op, out, "conv", inputs))
    ctx.chain(ctx.input(0), steps)


def _pool(ctx: NodeContext, kind: str) -> None:
    x = ctx.input(0)
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
    begins = tuple(int(p) for p in pads[:rank])
    with_indices = len(ctx.node.output) > 1 and bool(ctx.node.output[1])
    padded = x
    if (ctx.g.dtype(x) != "f32" or with_indices) and (any(begins) or any(ends)):
        # an explicit pad by a value no element exceeds: integers have no -inf, and the windows of
        # the Indices read the padded tensor; the pooling then pads nothing
        low = -np.inf if ctx.g.dtype(x) == "f32" else -2.0 ** 31
        spatial = tuple(n + b + e for n, b, e in zip(x_shape[2:], begins, ends))
        padded = ctx.emit(ops.Pad((0, 0) + begins + (0, 0) + tuple(ends), low), [x], ctx.temp("padded"),
                          tuple(x_shape[:2]) + spatial)
        begins, ends = (0,) * rank, [0] * rank
    ctx.emit(ops.Pool(kind, kernel, strides, begins + tuple(ends), dilations,
                      bool(ctx.attr("count_include_pad", 0)), tuple(pads)), [padded])
    if with_indices:
        _max_pool_indices(ctx, padded, x_shape, pads[:rank], kernel, strides, dilations, out)


def _max_pool_indices(ctx: NodeContext, padded: str, x_shape, begins, kernel, strides, dilations, out) -> None:
    """MaxPool's Indices: for each window, the position of its (first) largest element in the
    input's flat view, ``(n · C + c) · Π spatial`` plus the spatial position in row-major order
    (storage_order 0) or column-major (1). The windows are one gather of the padded input by a
    constant table (a window per row), an ArgMax picks the element, and one gather of a constant
    table of input positions by ``window · K + argmax`` turns it into the index."""
    if ctx.g.batched:
        raise BatchAxisError(f"node {ctx.label!r} (MaxPool): its Indices count the elements of the samples before "
                             "(n · C · spatial), so they need the whole batch: export with a fixed batch size")
    order = int(ctx.attr("storage_order", 0))
    if order not in (0, 1):
        raise ctx.fail(f"storage_order={order}; supported: 0 (row-major), 1 (column-major)")
    rank = len(kernel)
    spatial, p_spatial = tuple(x_shape[2:]), ctx.g.shape(padded)[2:]
    o_spatial, taps = tuple(out[2:]), int(np.prod(kernel))
    # coordinates in the padded input of every tap of every window: [*o_spatial, *kernel] per axis
    grid = np.indices(o_spatial + tuple(kernel)).reshape(2 * rank, -1)
    coords = [grid[a] * strides[a] + grid[rank + a] * dilations[a] for a in range(rank)]
    within = np.ravel_multi_index(coords, p_spatial).reshape(o_spatial + (taps,))
    planes = int(np.prod(x_shape[:2]))
    plane = np.arange(planes).reshape(tuple(x_shape[:2]) + (1,) * (rank + 1))
    windows = ctx.g.tensors[padded].size // planes * plane + within  # [N, C, *o_spatial, K]
    taps_shape = tuple(out) + (taps,)
    gathered = _take_const(ctx, padded, windows, 1, taps_shape, ctx.temp("windows"))
    best = ctx.emit(ops.ArgMax(len(taps_shape) - 1, False), [gathered], ctx.temp("argmax"), tuple(out), "i32")
    source = [np.clip(c - b, 0, n - 1) for c, b, n in zip(coords, begins, spatial)]  # pads never win
    position = np.ravel_multi_index(source, spatial, order="C" if order == 0 else "F")
    table = (int(np.prod(spatial)) * plane + position.reshape(o_spatial + (taps,))).reshape(-1)
    table_name = ctx.g.fresh(f"{ctx.node.output[1]}.positions")
    ctx.g.constants[table_name] = table.astype(np.int32)
    ctx.g.tensors[table_name] = TensorType(table.shape, "i32")
    first = ctx.g.fresh(f"{ctx.node.output[1]}.first")
    ctx.g.constants[first] = (np.arange(int(np.prod(out))) * taps).reshape(out).astype(np.int32)
    ctx.g.tensors[first] = TensorType(tuple(out), "i32")
    rows = ctx.emit(ops.Binary("add"), [best, first], ctx.temp("tap"), tuple(out), "i32")
    _take(ctx, table_name, rows, 1, out, ctx.node.output[1])


@converter("MaxPool", typed=True,
           limits="float or integer data; the Indices output (not in a batched model: they count the samples "
                  "before); ceil_mode unless the last window starts in the padding")
def max_pool(ctx: NodeContext) -> None:
    _pool(ctx, "max")


@converter("AveragePool", limits="count_include_pad; ceil_mode unless the last window starts in the padding")
def average_pool(ctx: NodeContext) -> None:
    _pool(ctx, "avg")


@converter("GlobalAveragePool", "GlobalMaxPool", limits="any rank")
def global_pool(ctx: NodeContext) -> None:
    rank = len(ctx.shape(0))
    kind = "mean" if ctx.node.op_type == "GlobalAveragePool" else "max"
    ctx.emit(ops.Reduce(kind, tuple(range(2, rank)), True), [ctx.input(0)])


@converter("Softmax", limits="any axis (opset < 13: the trailing axes from axis)")
def softmax(ctx: NodeContext) -> None:
    rank = len(ctx.shape(0))
    if ctx.opset < 13:
        axis = norm_axis(int(ctx.attr("axis", 1)), rank, ctx)
        axes = tuple(range(axis, rank))
    else:
        axes = (norm_axis(int(ctx.attr("axis", -1)), rank, ctx),)
    ctx.emit(ops.Softmax(axes), [ctx.input(0)])


@converter("LogSoftmax", limits="any axis (opset < 13: the trailing axes from axis); x − m − ln Σ exp(x − m)")
def log_softmax(ctx: NodeContext) -> None:
    """x − m − ln Σ exp(x − m) with m the maximum over the axes: no overflow, and exact where
    softmax would underflow to 0."""
    shape = ctx.shape(0)
    rank = len(shape)
    if ctx.opset < 13:
        axes = tuple(range(norm_axis(int(ctx.attr("axis", 1)), rank, ctx), rank))
    else:
        axes = (norm_axis(int(ctx.attr("axis", -1)), rank, ctx),)
    kept = tuple(1 if a in axes else d for a, d in enumerate(shape))
    peak = ctx.emit(ops.Reduce("max", axes, True), [ctx.input(0)], ctx.temp("max"), kept)
    shifted = ctx.emit(ops.Binary("sub"), [ctx.input(0), peak], ctx.temp("shifted"), shape)
    ctx.chain(shifted, [(ops.Unary("exp"), shape, "exp"), (ops.Reduce("sum", axes, True), kept, "sum_exp"),
                        (ops.Unary("log"), kept, "log_sum_exp"),
                        (ops.Binary("sub"), shape, "log_softmax", [shifted, None])])


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


