"""Operators that move or select data without arithmetic."""
from __future__ import annotations

import numpy as np

from nmc.compiler.frontend.context import NodeContext, norm_axis
from nmc.compiler.frontend.ops import converter
from nmc.compiler.ir import ops
from nmc.compiler.ir.graph import TensorType
from nmc.compiler.ir.verify import BatchAxisError


@converter("Reshape", "Flatten", "Squeeze", "Unsqueeze", typed=True, limits="constant shape or axes; no data movement")
def reshape(ctx: NodeContext) -> None:
    """All four keep the data order: one IR Reshape with the inferred output shape."""
    if ctx.has_input(1):  # Reshape's shape (opset 5+), Squeeze/Unsqueeze axes (opset 13+)
        ctx.need_const(1, "shape" if ctx.node.op_type == "Reshape" else "axes")
    out = ctx.out_shape()
    if int(np.prod(out, dtype=np.int64)) != int(np.prod(ctx.shape(0), dtype=np.int64)):
        raise ctx.fail(f"cannot reshape {list(ctx.shape(0))} to {list(out)}")
    ctx.emit(ops.Reshape(), [ctx.input(0)])


@converter("Transpose", typed=True, limits="any permutation (batched models: the batch axis stays first)")
def transpose(ctx: NodeContext) -> None:
    rank = len(ctx.shape(0))
    perm = tuple(int(p) for p in ctx.attr("perm", list(range(rank))[::-1]))
    if sorted(perm) != list(range(rank)):
        raise ctx.fail(f"perm {list(perm)} is not a permutation of {rank} axes")
    ctx.emit(ops.Transpose(perm), [ctx.input(0)])


@converter("Concat", typed=True, limits="any axis but a batched model's batch axis; empty inputs dropped")
def concat(ctx: NodeContext) -> None:
    rank = len(ctx.out_shape())
    axis = norm_axis(int(ctx.attr("axis")), rank, ctx)
    inputs = [ctx.input(i) for i in range(ctx.n_inputs()) if ctx.has_input(i)]
    inputs = [t for t in inputs if ctx.g.tensors[t].size > 0]
    ctx.emit(ops.Concat(axis), inputs)


def _slice_axis(start: int, end: int, step: int, dim: int) -> tuple[int, int]:
    """ONNX clamping rules; returns (start, count)."""
    if step == 0:
        raise ValueError("slice step 0")
    if start < 0:
        start += dim
    if end < 0:
        end += dim
    if step > 0:
        start, end = min(max(start, 0), dim), min(max(end, 0), dim)
    else:
        start, end = min(max(start, 0), dim - 1), min(max(end, -1), dim - 1)
    return start, len(range(start, end, step))


@converter("Slice", typed=True, limits="constant starts, ends, axes, steps (negative steps too); no empty results")
def slice_(ctx: NodeContext) -> None:
    shape = ctx.shape(0)
    rank = len(shape)
    if ctx.opset < 10:
        starts, ends = ctx.attr("starts"), ctx.attr("ends")
        axes = ctx.attr("axes", list(range(len(starts))))
        steps = [1] * len(starts)
    else:
        starts = [int(v) for v in ctx.need_const(1, "starts").reshape(-1)]
        ends = [int(v) for v in ctx.need_const(2, "ends").reshape(-1)]
        axes_value = ctx.optional_const(3, "axes")
        axes = list(range(len(starts))) if axes_value is None else [int(v) for v in axes_value.reshape(-1)]
        steps = [int(v) for v in ctx.need_const(4, "steps").reshape(-1)] if ctx.has_input(4) else [1] * len(starts)
    full_starts, full_steps = [0] * rank, [1] * rank
    out = list(shape)
    for start, end, axis, step in zip(starts, ends, axes, steps):
        axis = norm_axis(int(axis), rank, ctx)
        try:
            full_starts[axis], out[axis] = _slice_axis(int(start), int(end), int(step), shape[axis])
        except ValueError:
            raise ctx.fail("slice step 0") from None
        full_steps[axis] = int(step)
    ctx.emit(ops.Slice(tuple(full_starts), tuple(full_steps)), [ctx.input(0)], shape=tuple(out))


@converter("Split", typed=True, limits="constant split sizes, or equal parts")
def split(ctx: NodeContext) -> None:
    """One IR Slice per output."""
    shape = ctx.shape(0)
    axis = norm_axis(int(ctx.attr("axis", 0)), len(shape), ctx)
    n_out = len(ctx.node.output)
    if ctx.opset >= 13 and ctx.has_input(1):
        sizes = [int(v) for v in ctx.need_const(1, "split").reshape(-1)]
    elif ctx.opset < 13 and ctx.attr("split") is not None:
        sizes = [int(v) for v in ctx.attr("split")]
    else:
        chunk = -(-shape[axis] // n_out)
        sizes = [min(chunk, shape[axis] - i * chunk) for i in range(n_out)]
    if len(sizes) != n_out or sum(sizes) != shape[axis]:
        raise ctx.fail(f"split sizes {sizes} do not cover axis {axis} of size {shape[axis]} in {n_out} outputs")
    start = 0
    for name, size in zip(ctx.node.output, sizes):
        starts = [0] * len(shape)
        starts[axis] = start
        out = list(shape)
        out[axis] = size
        if name:
            ctx.emit(ops.Slice(tuple(starts), (1,) * len(shape)), [ctx.input(0)], output=name, shape=tuple(out))
        start += size


_PAD_MODES = ("constant", "edge", "reflect", "wrap")


def pad_sources(mode: str, dim: int, begin: int, end: int) -> np.ndarray:
    """For each of the ``begin + dim + end`` positions of a padded axis, the input position it
    copies (``edge``: the nearest end; ``reflect``: mirrored on the end values, which are not
    repeated; ``wrap``: circular), at any pad width, as ``numpy.pad`` and ONNX's reference do."""
    positions = np.arange(-begin, dim + end, dtype=np.int64)
    if mode == "edge":
        return np.clip(positions, 0, dim - 1)
    if mode == "wrap":
        return positions % dim
    if dim == 1:  # reflect: nothing to mirror on
        return np.zeros_like(positions)
    period = 2 * (dim - 1)
    folded = positions % period
    return np.where(folded < dim, folded, period - folded)


@converter("Pad", typed=True,
           limits="constant pads (non-negative) and value; mode constant (a fill and a copy), edge, reflect or "
                  "wrap (one gather by a constant index table per padded axis); float or integer data")
def pad(ctx: NodeContext) -> None:
    """Constant padding is one IR Pad. The other modes copy input elements, so each padded axis
    is one gather by the constant table of the input positions its output positions read
    (``pad_sources``); reflect pads wider than the axis less one reflect again, as in ONNX's
    reference (onnxruntime refuses them)."""
    mode = ctx.attr("mode", "constant")
    if mode not in _PAD_MODES:
        raise ctx.fail(f"mode={mode!r}; supported: {', '.join(map(repr, _PAD_MODES))}")
    shape = ctx.shape(0)
    rank = len(shape)
    dtype = ctx.g.dtype(ctx.input(0))
    if ctx.opset < 11:
        pads = list(ctx.attr("pads", ctx.attr("paddings", [])))  # "paddings" in Pad-1
        value = float(ctx.attr("value", 0.0))
    else:
        pads = [int(v) for v in ctx.need_const(1, "pads").reshape(-1)]
        value_arr = ctx.optional_const(2, "constant_value")
        value_arr = np.zeros(1) if value_arr is None else np.asarray(value_arr)
        value = value_arr.reshape(-1)[0].item() if value_arr.size else 0
        if ctx.has_input(3):
            axes = [norm_axis(int(a), rank, ctx) for a in ctx.need_const(3, "axes").reshape(-1)]
            if len(pads) != 2 * len(axes):
                raise ctx.fail(f"{len(pads)} pads for {len(axes)} axes; expected {2 * len(axes)}")
            full = [0] * (2 * rank)
            for i, a in enumerate(axes):
                full[a], full[rank + a] = pads[i], pads[len(axes) + i]
            pads = full
    pads = [int(p) for p in pads]
    if len(pads) != 2 * rank:
        raise ctx.fail(f"{len(pads)} pads for an input of rank {rank}; expected {2 * rank}")
    if any(p < 0 for p in pads):
        raise ctx.fail("negative pads (cropping) are not supported")
    if mode == "constant":
        if dtype != "f32" and (value != int(value) or abs(value) > 2 ** 24):
            raise ctx.fail(f"constant_value {value} for {dtype} data: nmc fills integer pads with whole "
                           "values up to 2^24")
        ctx.emit(ops.Pad(tuple(pads), float(value)), [ctx.input(0)])
        return
    if ctx.g.batched and not ctx.g.is_const(ctx.input(0)) and (pads[0] or pads[rank]):
        raise BatchAxisError(f"node {ctx.label!r} (Pad): it pads the batch axis, the batch axis of a model that "
                             "nmc runs sample by sample (export with a fixed batch size to compile the whole tensor)")
    padded = [axis for axis in range(rank) if pads[axis] or pads[rank + axis]]
    if any(shape[axis] == 0 for axis in padded):
        raise ctx.fail(f"{mode} padding of an empty axis")
    current, now = ctx.input(0), list(shape)
    if not padded:
        ctx.alias(ctx.output, current)
        return
    for axis in padded:  # one gather per padded axis, by the input positions each output position copies
        sources = pad_sources(mode, shape[axis], pads[axis], pads[rank + axis])
        table = ctx.g.fresh(f"{ctx.output}.{mode}_axis{axis}")
        ctx.g.constants[table] = sources.astype(np.int32)
        ctx.g.tensors[table] = TensorType(sources.shape, "i32")
        now[axis] = sources.size
        last = axis == padded[-1]
        current = ctx.emit(ops.Gather(axis), [current, table], None if last else ctx.temp(f"{mode}{axis}"),
                           tuple(now))


@converter("Expand", typed=True, limits="constant shape; a copy through a broadcast view")
def expand(ctx: NodeContext) -> None:
    ctx.need_const(1, "the shape")
    out, shape = ctx.out_shape(), ctx.shape(0)
    if out == shape:
        return ctx.alias(ctx.output, ctx.input(0))
    ctx.emit(ops.Expand(), [ctx.input(0)])


@converter("Tile", typed=True, opsets="6+", limits="constant repeats; a copy through a broadcast view")
def tile(ctx: NodeContext) -> None:
    """x regarded with a new axis of size 1 before each repeated axis (or that axis itself when
    its size is 1), broadcast to the repeats, and regarded as the output: one copy."""
    if ctx.opset < 6:
        raise ctx.fail("Tile before opset 6 (tiles and axis inputs) is not supported; supported: opset 6+ (repeats)")
    shape = ctx.shape(0)
    repeats = [int(r) for r in np.asarray(ctx.need_const(1, "repeats")).reshape(-1)]
    if len(repeats) != len(shape) or min(repeats, default=1) < 1:
        raise ctx.fail(f"repeats {repeats} must be {len(shape)} positive values, one per axis of {list(shape)}")
    inserted, broadcast = [], []
    for size, times in zip(shape, repeats):
        if times > 1 and size > 1:
            inserted += [1, size]
            broadcast += [times, size]
        else:
            inserted.append(size)
            broadcast.append(size * times)
    out = tuple(s * r for s, r in zip(shape, repeats))
    steps = [] if tuple(inserted) == tuple(shape) else [(ops.Reshape(), inserted, "inserted")]
    if broadcast != inserted:
        steps.append((ops.Expand(), broadcast, "repeated"))
    if tuple(broadcast) != out:
        steps.append((ops.Reshape(), out, "tiled"))
    ctx.chain(ctx.input(0), steps)
