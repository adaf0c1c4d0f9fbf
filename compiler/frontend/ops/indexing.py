"""Index and mask tensors (DESIGN.md "Tensor types"): gathers, scatters, comparisons, logic, Where, Mod.

Gather is an embedding lookup when the indices are computed at run time and a view when they are
constants; GatherElements, GatherND, ScatterElements and ScatterND follow the same design (below,
before their converters). Comparisons, logic, Where, Mod and the shape generators that fold at
compile time complete the family. They compute on the vector unit in their own element types:
i32 for every ONNX integer type, bool as 0/1."""
from __future__ import annotations

import numpy as np

from nmc.compiler.errors import ModelError
from nmc.compiler.frontend.context import NodeContext, norm_axis
from nmc.compiler.frontend.ops import converter
from nmc.compiler.ir import ops
from nmc.compiler.ir.graph import TensorType
from nmc.compiler.ir.verify import BatchAxisError

_COMPARE = {"Equal": "eq", "Less": "lt", "Greater": "gt", "LessOrEqual": "le", "GreaterOrEqual": "ge"}


@converter("Gather", typed=True,
           limits="indices computed at run time: one gather (any axis; an embedding lookup of a constant "
                  "table is a memory read); constant indices: a Slice and Reshape (a view) when evenly spaced")
def gather(ctx: NodeContext) -> None:
    shape = ctx.shape(0)
    axis = norm_axis(int(ctx.attr("axis", 0)), len(shape), ctx)
    indices = ctx.const(1)
    if indices is None:
        idx = ctx.input(1)
        if ctx.g.dtype(idx) != "i32":
            raise ctx.fail(f"indices {idx!r} are {ctx.g.dtype(idx)}; Gather takes integer indices")
        ctx.emit(ops.Gather(axis), [ctx.input(0), idx])
        return
    indices = np.asarray(indices).astype(np.int64)
    dim = shape[axis]
    if indices.size and (indices.min() < -dim or indices.max() >= dim):
        raise ctx.fail(f"indices {indices.reshape(-1).tolist()} are outside -{dim}..{dim - 1} on axis {axis}")
    flat = np.where(indices < 0, indices + dim, indices).reshape(-1)
    steps = np.diff(flat)
    if flat.size == 0:
        raise ctx.fail("an empty index list gives an empty tensor; nmc has no empty tensors")
    if flat.size == 1 or (np.all(steps == steps[0]) and steps[0] != 0):
        step = int(steps[0]) if flat.size > 1 else 1
        starts, full_steps = [0] * len(shape), [1] * len(shape)
        starts[axis], full_steps[axis] = int(flat[0]), step
        sliced = list(shape)
        sliced[axis] = flat.size
        ctx.chain(ctx.input(0), [(ops.Slice(tuple(starts), tuple(full_steps)), sliced, "rows"),
                                 (ops.Reshape(), ctx.out_shape(), "gathered")])
        return
    idx = ctx.g.fresh(f"{ctx.output}.indices")  # repeated or uneven constant indices: a constant index table
    ctx.g.constants[idx] = np.ascontiguousarray(flat.reshape(indices.shape), dtype=np.int32)
    ctx.g.tensors[idx] = TensorType(tuple(indices.shape), "i32")
    ctx.emit(ops.Gather(axis), [ctx.input(0), idx])


# ----------------------------------------------------------------------------- gathers and scatters
# GatherElements, GatherND, ScatterElements and ScatterND address the input as its C-ordered
# elements (or rows of its trailing axes). Constant indices are resolved at compile time (range
# checked, negatives counted from the end): a Slice (a view) when they select a regular box, else
# one gather by a constant index table, and a scatter is one gather and select per write depth
# (one unless an index repeats). Indices computed at run time go through the vector unit: each
# index is looked up in a constant table of its axis' positions (a gather: negatives counted
# from the end, out of range a run-time error) and the data are then read by one gather. A
# scatter by run-time indices compares every index with every position it may write (O(positions
# × updates) on the vector unit) and reduces over the updates; the last update wins where
# indices repeat (as onnxruntime), add/mul/max/min combine them in update order.

_REDUCTIONS = {"none": None, "add": "add", "mul": "mul", "max": "max", "min": "min"}


def _int_const(ctx: NodeContext, hint: str, value, dtype: str = "i32") -> str:
    """An i32 (or bool, 0/1) constant: index tables, masks."""
    name = ctx.g.fresh(f"{ctx.output}.{hint}")
    ctx.g.constants[name] = np.ascontiguousarray(np.asarray(value), dtype=np.int32)
    ctx.g.tensors[name] = TensorType(tuple(np.shape(value)), dtype)
    return name


def _strides(shape) -> tuple[int, ...]:
    return tuple(int(np.prod(shape[k + 1:], dtype=np.int64)) for k in range(len(shape)))


def _per_sample(ctx: NodeContext, t: str) -> bool:
    """Whether ``t`` holds one sample of a batched model (the runtime stacks the samples)."""
    return ctx.g.batched and not ctx.g.is_const(t)


def _bad_model(ctx: NodeContext, message: str) -> ModelError:
    return ModelError(f"node {ctx.label!r} ({ctx.node.op_type}, opset {ctx.opset}): {message}")


def _batch_refusal(ctx: NodeContext, what: str) -> BatchAxisError:
    return BatchAxisError(f"node {ctx.label!r} ({ctx.node.op_type}): {what}, the batch axis of a model that nmc "
                          "runs sample by sample (export with a fixed batch size to compile the whole tensor)")


def _index_input(ctx: NodeContext, i: int) -> str:
    idx = ctx.input(i)
    if ctx.g.dtype(idx) != "i32":
        raise ctx.fail(f"indices {idx!r} are {ctx.g.dtype(idx)}; {ctx.node.op_type} takes integer indices")
    return idx


def _in_range(ctx: NodeContext, indices, dim: int, axis: int) -> np.ndarray:
    """Constant indices along an axis of ``dim`` positions, negatives counted from the end; one
    outside -dim..dim-1 is a ``ModelError`` naming the node."""
    idx = np.asarray(indices).astype(np.int64)
    bad = (idx < -dim) | (idx >= dim)
    if bad.any():
        raise _bad_model(ctx, f"index {int(idx[bad].flat[0])} is outside -{dim}..{dim - 1} on axis {axis}")
    return np.where(idx < 0, idx + dim, idx)


def _positions(ctx: NodeContext, idx: str, dim: int, scale: int, hint: str) -> str:
    """Run-time indices along an axis of ``dim`` positions as ``position · scale``: one gather from
    the constant table ``arange(dim) · scale``, so negatives count from the end and an index out of
    range is the gather's run-time error."""
    table = _int_const(ctx, f"{hint}_table", np.arange(dim, dtype=np.int64) * scale)
    return ctx.emit(ops.Gather(0), [table, idx], ctx.temp(hint), ctx.g.shape(idx))


def _reshape(ctx: NodeContext, t: str, shape, hint: str, output: str | None = None) -> str:
    """``t`` regarded as ``shape`` (a rename: C order is kept); a constant is reshaped here."""
    shape = tuple(int(d) for d in shape)
    if output is None and ctx.g.shape(t) == shape:
        return t
    if output is None and ctx.g.is_const(t):
        name = ctx.g.fresh(f"{ctx.output}.{hint}")
        ctx.g.constants[name] = ctx.g.constants[t].reshape(shape)
        ctx.g.tensors[name] = TensorType(shape, ctx.g.dtype(t))
        return name
    return ctx.emit(ops.Reshape(), [t], output or ctx.temp(hint), shape)


def _take(ctx: NodeContext, source: str, rows: str, width: int, out_shape, output: str | None = None) -> str:
    """The rows of ``width`` elements of ``source`` (in C order) at the row numbers ``rows`` (an
    i32 tensor), as a tensor of ``out_shape``: one gather. A per-sample source keeps its leading
    batch axis, so the gather reads each sample's own rows."""
    lead = (1,) if _per_sample(ctx, source) else ()
    count = ctx.g.tensors[source].size // width
    trail = (width,) if width > 1 else ()
    table = _reshape(ctx, source, lead + (count,) + trail, "table")
    shape = lead + ctx.g.shape(rows) + trail
    out_shape = tuple(out_shape)
    if shape == out_shape:
        return ctx.emit(ops.Gather(len(lead)), [table, rows], output or ctx.temp("gathered"), shape)
    gathered = ctx.emit(ops.Gather(len(lead)), [table, rows], ctx.temp("gathered"), shape)
    return _reshape(ctx, gathered, out_shape, "gathered", output or ctx.temp("gathered"))


def _as_slice(flat: np.ndarray, shape) -> tuple[tuple[int, ...], tuple[int, ...]] | None:
    """Starts and steps of the Slice that reads the elements ``flat`` (C-ordered positions in a
    tensor of ``shape``, arranged as the result, of the same rank), or None when they are no box."""
    coords = np.unravel_index(flat, tuple(shape))
    rank = len(shape)
    starts, steps = [], []
    for axis, c in enumerate(coords):
        count = flat.shape[axis]
        start = int(c.flat[0])
        step = int(c[tuple(1 if a == axis else 0 for a in range(rank))]) - start if count > 1 else 1
        if step < 1:
            return None
        line = start + step * np.arange(count).reshape([-1 if a == axis else 1 for a in range(rank)])
        if not np.array_equal(c, np.broadcast_to(line, flat.shape)):
            return None
        starts.append(start)
        steps.append(step)
    return tuple(starts), tuple(steps)


def _take_const(ctx: NodeContext, source: str, rows: np.ndarray, width: int, out_shape,
                output: str | None = None) -> str:
    """``_take`` by constant row numbers: a Slice when they read a box of ``source``, else a
    gather by a constant index table (a constant source is read here, at compile time)."""
    out_shape = tuple(out_shape)
    rows = rows.reshape(-1) if rows.ndim == 0 else rows
    flat = (rows.reshape(-1, 1) * width + np.arange(width)).reshape(out_shape)
    if ctx.g.is_const(source):
        value = ctx.g.constants[source].reshape(-1)[flat]
        name = ctx.g.fresh(f"{ctx.output}.taken")
        ctx.g.constants[name] = np.ascontiguousarray(value)
        ctx.g.tensors[name] = TensorType(out_shape, ctx.g.dtype(source))
        return name
    shape = ctx.g.shape(source)
    if len(shape) == len(out_shape):
        box = _as_slice(flat, shape)
        if box is not None:
            return ctx.emit(ops.Slice(*box), [source], output or ctx.temp("box"), out_shape)
    return _take(ctx, source, _int_const(ctx, "indices", rows), width, out_shape, output)


def _finish(ctx: NodeContext, t: str) -> None:
    if t != ctx.output:
        ctx.alias(ctx.output, t)


def _element_indices(ctx: NodeContext):
    """GatherElements' and ScatterElements' data, its shape, the axis and the indices' shape,
    checked: indices of the data's rank, no larger than the data off the axis, not empty."""
    data = ctx.input(0)
    shape = ctx.g.shape(data)
    rank = len(shape)
    axis = norm_axis(int(ctx.attr("axis", 0)), rank, ctx)
    ishape = ctx.shape(1)
    if len(ishape) != rank:
        raise _bad_model(ctx, f"indices of rank {len(ishape)} for data of rank {rank}; they must be equal")
    if any(ishape[j] > shape[j] for j in range(rank) if j != axis):
        raise _bad_model(ctx, f"indices {list(ishape)} exceed data {list(shape)} on an axis other than {axis}")
    if 0 in ishape:
        raise ctx.fail("empty indices give an empty tensor; nmc has no empty tensors")
    return data, shape, rank, axis, ishape


@converter("GatherElements", typed=True, opsets="11+",
           limits="constant indices: a Slice (a view) when they read a box, else a gather by a constant index "
                  "table; indices computed at run time: a gather of positions and one gather of the elements "
                  "(not along the batch axis of a batched model)")
def gather_elements(ctx: NodeContext) -> None:
    """``y[p] = x[p with p[axis] = indices[p]]``: the element at C-ordered position
    ``Σ_{j≠axis} p_j·stride_j + indices[p]·stride_axis`` of x, so one gather of x's elements."""
    data, shape, rank, axis, ishape = _element_indices(ctx)
    if axis == 0 and _per_sample(ctx, data):
        raise _batch_refusal(ctx, "it gathers along axis 0")
    strides = _strides(shape)
    grid = np.indices(ishape, dtype=np.int64)
    base = sum((grid[j] * strides[j] for j in range(rank) if j != axis), np.zeros(ishape, np.int64))
    indices = ctx.const(1)
    if indices is not None:
        positions = _in_range(ctx, indices, shape[axis], axis)
        _finish(ctx, _take_const(ctx, data, base + positions * strides[axis], 1, ctx.out_shape(), ctx.output))
        return
    flat = _positions(ctx, _index_input(ctx, 1), shape[axis], strides[axis], "offsets")
    if base.any():
        flat = ctx.emit(ops.Binary("add"), [flat, _int_const(ctx, "base", base)], ctx.temp("flat"), ishape)
    _take(ctx, data, flat, 1, ctx.out_shape(), ctx.output)


def _nd_rows(shape, ishape, batch_dims: int) -> tuple[tuple[int, ...], np.ndarray, int, int]:
    """What GatherND and ScatterND address: data regarded as rows of its trailing axes after the
    ``batch_dims + k`` leading ones (k = ``indices.shape[-1]``). Returns the leading axes' strides
    counted in rows, the row offset of each batch index (shape ``indices.shape[:-1]``), the
    number of rows and the row width."""
    k = ishape[-1]
    lead = tuple(shape[:batch_dims + k])
    strides = _strides(lead)
    grid = np.indices(ishape[:-1], dtype=np.int64)
    base = sum((grid[j] * strides[j] for j in range(batch_dims)), np.zeros(ishape[:-1], np.int64))
    return strides, base, int(np.prod(lead, dtype=np.int64)), int(np.prod(shape[batch_dims + k:], dtype=np.int64))


def _nd_check(ctx: NodeContext, shape, ishape, batch_dims: int) -> None:
    r, q = len(shape), len(ishape)
    if q < 1:
        raise _bad_model(ctx, "indices must have at least one axis")
    if not 0 <= batch_dims < min(q, r):
        raise _bad_model(ctx, f"batch_dims {batch_dims} must be below the ranks of data ({r}) and indices ({q})")
    if not 1 <= ishape[-1] <= r - batch_dims:
        raise _bad_model(ctx, f"indices address {ishape[-1]} axes; data of rank {r} with batch_dims "
                              f"{batch_dims} has 1..{r - batch_dims}")
    if tuple(ishape[:batch_dims]) != tuple(shape[:batch_dims]):
        raise _bad_model(ctx, f"the batch axes of indices {list(ishape)} and data {list(shape)} differ")
    if 0 in ishape:
        raise ctx.fail("empty indices give an empty tensor; nmc has no empty tensors")


def _nd_const_rows(ctx: NodeContext, indices, shape, ishape, batch_dims: int) -> np.ndarray:
    strides, base, _, _ = _nd_rows(shape, ishape, batch_dims)
    idx = np.asarray(indices).astype(np.int64).reshape(ishape)
    rows = base.copy()
    for m in range(ishape[-1]):
        rows = rows + _in_range(ctx, idx[..., m], shape[batch_dims + m], batch_dims + m) * strides[batch_dims + m]
    return rows


def _nd_run_rows(ctx: NodeContext, idx: str, shape, batch_dims: int) -> str:
    """Row numbers of run-time ND indices: each component a gather of its axis' row offsets
    (negatives from the end, out of range a run-time error), summed, plus the batch offsets."""
    ishape = ctx.g.shape(idx)
    if len(ishape) == 1:
        idx = _reshape(ctx, idx, (1,) + ishape, "indices")
        ishape = (1,) + ishape
    strides, base, _, _ = _nd_rows(shape, ishape, batch_dims)
    k, select = ishape[-1], ishape[:-1]
    rows = None
    for m in range(k):
        part = idx if k == 1 else ctx.emit(ops.Slice((0,) * (len(ishape) - 1) + (m,), (1,) * len(ishape)), [idx],
                                           ctx.temp(f"component{m}"), select + (1,))
        part = _reshape(ctx, part, select, f"component{m}")
        axis = batch_dims + m
        offsets = _positions(ctx, part, shape[axis], strides[axis], f"rows{m}")
        rows = offsets if rows is None else ctx.emit(ops.Binary("add"), [rows, offsets], ctx.temp("rows"), select)
    if base.any():
        rows = ctx.emit(ops.Binary("add"), [rows, _int_const(ctx, "batch_rows", base)], ctx.temp("rows"), select)
    return rows


@converter("GatherND", typed=True, opsets="11+",
           limits="any batch_dims (a batched model needs batch_dims ≥ 1); constant indices: a Slice (a view) when "
                  "they read a box, else a gather of rows by a constant index table; indices computed at run "
                  "time: a gather of row offsets per index component and one gather of the rows")
def gather_nd(ctx: NodeContext) -> None:
    """Each index tuple picks a row of data's trailing axes (after the batch axes and the k axes
    it addresses): one gather of rows by their numbers."""
    data = ctx.input(0)
    shape = ctx.g.shape(data)
    ishape = ctx.shape(1)
    batch_dims = int(ctx.attr("batch_dims", 0))
    _nd_check(ctx, shape, ishape, batch_dims)
    if batch_dims == 0 and _per_sample(ctx, data):
        raise _batch_refusal(ctx, "with batch_dims 0 its indices address axis 0")
    _, _, _, width = _nd_rows(shape, ishape, batch_dims)
    indices = ctx.const(1)
    if indices is not None:
        rows = _nd_const_rows(ctx, indices, shape, ishape, batch_dims)
        _finish(ctx, _take_const(ctx, data, rows, width, ctx.out_shape(), ctx.output))
        return
    rows = _nd_run_rows(ctx, _index_input(ctx, 1), shape, batch_dims)
    _take(ctx, data, rows, width, ctx.out_shape(), ctx.output)


def _reduction(ctx: NodeContext, dtype: str) -> str | None:
    reduction = ctx.attr("reduction", "none")
    if reduction not in _REDUCTIONS:
        raise ctx.fail(f"reduction {reduction!r} is not one of {', '.join(_REDUCTIONS)}")
    if reduction != "none" and dtype == "bool":
        raise ctx.fail(f"reduction {reduction!r} of a bool tensor is not supported")
    return _REDUCTIONS[reduction]


def _updates(ctx: NodeContext, data: str, expected) -> str:
    updates = ctx.input(2)
    if ctx.g.shape(updates) != tuple(expected):
        raise _bad_model(ctx, f"updates {list(ctx.g.shape(updates))} should be {list(expected)}")
    if ctx.g.dtype(updates) != ctx.g.dtype(data):
        raise _bad_model(ctx, f"updates are {ctx.g.dtype(updates)} but data {ctx.g.dtype(data)}")
    return updates


def _scatter_const(ctx: NodeContext, data: str, updates: str, targets: np.ndarray, fn: str | None) -> None:
    """A scatter by constant indices: ``targets`` holds the C-ordered position in data of each
    update element. Per write depth (the d-th update of a position, in update order) one gather
    of the updates by a constant table and, where it does not write every position, one select;
    a reduction combines each depth with what is there."""
    shape = ctx.g.shape(data)
    size = ctx.g.tensors[data].size
    flat = targets.reshape(-1)
    count = flat.size
    order = np.argsort(flat, kind="stable")
    first = np.r_[True, flat[order][1:] != flat[order][:-1]]
    start = np.maximum.accumulate(np.where(first, np.arange(count), 0))
    depth_of = np.empty(count, np.int64)
    depth_of[order] = np.arange(count) - start
    depths = [int(depth_of.max())] if fn is None else range(int(depth_of.max()) + 1)  # none: the last one
    current = data
    for n, depth in enumerate(depths):
        writers = np.flatnonzero(depth_of == depth) if fn is not None else None
        if fn is None:  # the last update of each position wins
            writers = np.full(size, -1, np.int64)
            np.maximum.at(writers, flat, np.arange(count))
            written = writers >= 0
            source = np.where(written, writers, 0)
        else:
            written = np.zeros(size, bool)
            written[flat[writers]] = True
            source = np.zeros(size, np.int64)
            source[flat[writers]] = writers
        last = n == len(depths) - 1
        whole = bool(written.all())
        out = ctx.output if last and whole and fn is None else None
        values = _take_const(ctx, updates, source, 1, shape, out)
        if fn is not None:
            values = ctx.emit(ops.Binary(fn), [current, values], ctx.output if last and whole else ctx.temp("combined"),
                              shape)
        if whole:
            current = values
        else:
            mask = _int_const(ctx, f"written{depth}", written.reshape(shape), "bool")
            current = ctx.emit(ops.Select(), [mask, values, current], ctx.output if last else ctx.temp("scattered"),
                               shape, dtype=ctx.g.dtype(data))
    _finish(ctx, current)


def _product_tree(ctx: NodeContext, x: str, fn: str, identity: float) -> str:
    """``fn`` (add, mul) over the last axis of ``x`` as a tree of element-wise steps on its two
    halves (the axis padded with ``identity`` to a power of two); the last axis is dropped."""
    shape = ctx.g.shape(x)
    lead, length = tuple(shape[:-1]), shape[-1]
    width = 1 << max(length - 1, 0).bit_length()
    if width != length:
        pads = (0,) * len(shape) + (0,) * len(lead) + (width - length,)
        x = ctx.emit(ops.Pad(pads, identity), [x], ctx.temp("padded"), lead + (width,))
    while width > 1:
        width //= 2
        low = ctx.emit(ops.Slice((0,) * len(shape), (1,) * len(shape)), [x], ctx.temp("low"), lead + (width,))
        high = ctx.emit(ops.Slice((0,) * len(lead) + (width,), (1,) * len(shape)), [x], ctx.temp("high"),
                        lead + (width,))
        x = ctx.emit(ops.Binary(fn), [low, high], ctx.temp("tree"), lead + (width,))
    return _reshape(ctx, x, lead, "reduced")


def _scatter_run(ctx: NodeContext, region: str, targets: str, updates: str, fn: str | None) -> str:
    """A scatter by run-time indices within groups: ``region`` [*G, D, W] holds D rows of W
    elements per group, ``targets`` [*G, I] the row (0..D-1) each of the group's I updates
    ``updates`` [*G, I, W] writes. Every target is compared with every row; ``none``: the last
    update per row (the largest update number that matches) is gathered, ``add``/``mul``/``max``/
    ``min``: the matching updates (elsewhere the identity, or for max and min the row itself)
    are reduced over the updates and combined with the row."""
    groups = ctx.g.shape(targets)[:-1]
    count = ctx.g.shape(targets)[-1]
    rows, width = ctx.g.shape(region)[-2:]
    dtype = ctx.g.dtype(region)
    g = len(groups)
    column = _reshape(ctx, targets, groups + (1, count), "targets")
    match = ctx.emit(ops.Compare("eq"), [column, _int_const(ctx, "rows", np.arange(rows).reshape(rows, 1))],
                     ctx.temp("match"), groups + (rows, count), dtype="bool")
    if fn is None:
        numbers = ctx.emit(ops.Select(), [match, _int_const(ctx, "numbers", np.arange(count)),
                                          _int_const(ctx, "none", np.array(-1))],
                           ctx.temp("writer"), groups + (rows, count), dtype="i32")
        last = ctx.emit(ops.Reduce("max", (g + 1,), False), [numbers], ctx.temp("last"), groups + (rows,))
        zero = _int_const(ctx, "zero", np.array(0))
        hit = ctx.emit(ops.Compare("ge"), [last, zero], ctx.temp("hit"), groups + (rows,), dtype="bool")
        source = ctx.emit(ops.Binary("max"), [last, zero], ctx.temp("source"), groups + (rows,))
        group_rows = np.arange(int(np.prod(groups, dtype=np.int64))).reshape(groups + (1,)) * count
        if group_rows.any():
            source = ctx.emit(ops.Binary("add"), [source, _int_const(ctx, "group_rows", group_rows)],
                              ctx.temp("source"), groups + (rows,))
        values = _take(ctx, updates, source, width, groups + (rows, width))
        hit = _reshape(ctx, hit, groups + (rows, 1), "hit")
        return ctx.emit(ops.Select(), [hit, values, region], ctx.temp("scattered"), groups + (rows, width), dtype=dtype)
    if width > 1:
        updates = ctx.emit(ops.Transpose(tuple(range(g)) + (g + 1, g)), [updates], ctx.temp("updates_t"),
                           groups + (width, count))
    updates = _reshape(ctx, updates, groups + (1, width, count), "updates")
    match = _reshape(ctx, match, groups + (rows, 1, count), "match")
    full = groups + (rows, width, count)
    if fn in ("max", "min"):
        fill = _reshape(ctx, region, groups + (rows, width, 1), "region")
    else:
        one = np.array(1.0 if fn == "mul" else 0.0)
        fill = _int_const(ctx, "identity", one) if dtype == "i32" else ctx.add_const("identity", one)
    spread = ctx.emit(ops.Select(), [match, updates, fill], ctx.temp("spread"), full, dtype=dtype)
    if fn in ("max", "min") or (fn == "add" and dtype == "f32"):
        reduced = ctx.emit(ops.Reduce("sum" if fn == "add" else fn, (g + 2,), False), [spread], ctx.temp("reduced"),
                           groups + (rows, width))
    else:  # a product, or an integer sum (exact in i32): a tree of element-wise steps
        reduced = _product_tree(ctx, spread, fn, 1.0 if fn == "mul" else 0.0)
    return ctx.emit(ops.Binary(fn), [region, reduced], ctx.temp("combined"), groups + (rows, width))


_SCATTER_LIMITS = ("constant indices: a gather and select per write depth; indices computed at run time: every "
                   "index compared with every position of its axis (O(axis length × updates)), reduced over the "
                   "updates; not along the batch axis of a batched model")


@converter("ScatterElements", typed=True, opsets="11+", limits="reduction none, add, mul, max, min; " + _SCATTER_LIMITS)
@converter("Scatter", typed=True, opsets="9-10", limits=_SCATTER_LIMITS)
def scatter_elements(ctx: NodeContext) -> None:
    """``y = x`` with ``y[p with p[axis] = indices[p]] = updates[p]`` (or combined by the
    reduction, in update order); Scatter is its old name (opsets 9 and 10)."""
    data, shape, rank, axis, ishape = _element_indices(ctx)
    updates = _updates(ctx, data, ishape)
    fn = _reduction(ctx, ctx.g.dtype(data))
    if axis == 0 and _per_sample(ctx, data):
        raise _batch_refusal(ctx, "it scatters along axis 0")
    indices = ctx.const(1)
    if indices is not None:
        strides = _strides(shape)
        grid = np.indices(ishape, dtype=np.int64)
        positions = _in_range(ctx, indices, shape[axis], axis)
        targets = sum((grid[j] * strides[j] for j in range(rank) if j != axis), positions * strides[axis])
        _scatter_const(ctx, data, updates, targets, fn)
        return
    targets = _positions(ctx, _index_input(ctx, 1), shape[axis], 1, "targets")
    perm = tuple(j for j in range(rank) if j != axis) + (axis,)  # the scattered axis last
    moved = tuple(shape[j] for j in perm)
    groups = tuple(ishape[j] for j in perm[:-1])
    if axis != rank - 1:
        data = ctx.emit(ops.Transpose(perm), [data], ctx.temp("data_t"), moved)
        targets = ctx.emit(ops.Transpose(perm), [targets], ctx.temp("targets_t"), groups + (ishape[axis],))
        updates = ctx.emit(ops.Transpose(perm), [updates], ctx.temp("updates_t"), groups + (ishape[axis],))
    region = data
    if groups != moved[:-1]:  # the indices cover a box of the other axes
        region = ctx.emit(ops.Slice((0,) * rank, (1,) * rank), [data], ctx.temp("region"), groups + (shape[axis],))
    region = _reshape(ctx, region, groups + (shape[axis], 1), "region")
    updates = _reshape(ctx, updates, groups + (ishape[axis], 1), "updates")
    result = _reshape(ctx, _scatter_run(ctx, region, targets, updates, fn), groups + (shape[axis],), "scattered")
    if groups != moved[:-1]:  # back into the whole tensor: padded to its shape, selected inside the box
        pads = (0,) * rank + tuple(m - g for m, g in zip(moved[:-1], groups)) + (0,)
        padded = ctx.emit(ops.Pad(pads, 0.0), [result], ctx.temp("padded"), moved)
        inside = np.zeros(moved[:-1] + (1,), bool)
        inside[tuple(slice(0, g) for g in groups)] = True
        result = ctx.emit(ops.Select(), [_int_const(ctx, "box", inside, "bool"), padded, data], ctx.temp("pasted"),
                          moved, dtype=ctx.g.dtype(data))
    if axis != rank - 1:
        ctx.emit(ops.Transpose(tuple(int(p) for p in np.argsort(perm))), [result], ctx.output, shape)
    else:
        _finish(ctx, result)


@converter("ScatterND", typed=True, opsets="11+",
           limits="reduction none, add, mul, max, min; not in a batched model (its indices address the batch axis); "
                  "constant indices: a gather and select per write depth; indices computed at run time: every "
                  "index compared with every row (O(rows × updates)), reduced over the updates")
def scatter_nd(ctx: NodeContext) -> None:
    """``y = x`` with the row ``y[indices[u]]`` (of x's axes after the k that an index tuple
    addresses) set to, or combined with, ``updates[u]``, in update order."""
    data = ctx.input(0)
    shape = ctx.g.shape(data)
    ishape = ctx.shape(1)
    _nd_check(ctx, shape, ishape, 0)
    updates = _updates(ctx, data, tuple(ishape[:-1]) + tuple(shape[ishape[-1]:]))
    fn = _reduction(ctx, ctx.g.dtype(data))
    if ctx.g.batched and any(_per_sample(ctx, t) for t in (data, ctx.input(1), updates)):
        raise _batch_refusal(ctx, "its indices address axis 0")
    _, _, rows, width = _nd_rows(shape, ishape, 0)
    indices = ctx.const(1)
    if indices is not None:
        row = _nd_const_rows(ctx, indices, shape, ishape, 0)
        targets = row[..., None] * width + np.arange(width)
        _scatter_const(ctx, data, updates, targets.reshape(ctx.g.shape(updates)), fn)
        return
    count = int(np.prod(ishape[:-1], dtype=np.int64))
    targets = _reshape(ctx, _nd_run_rows(ctx, _index_input(ctx, 1), shape, 0), (count,), "targets")
    region = _reshape(ctx, data, (rows, width), "rows")
    updates = _reshape(ctx, updates, (count, width), "updates")
    _reshape(ctx, _scatter_run(ctx, region, targets, updates, fn), shape, "scattered", ctx.output)


def _check_same(ctx: NodeContext, a: str, b: str) -> None:
    if ctx.g.dtype(a) != ctx.g.dtype(b) and not (ctx.g.is_const(b) and ctx.g.tensors[b].size == 1):
        raise ctx.fail(f"operands {a!r} ({ctx.g.dtype(a)}) and {b!r} ({ctx.g.dtype(b)}) differ in element type")


@converter(*_COMPARE, typed=True, limits="float, integer or boolean operands, numpy broadcasting; a bool (0/1) result")
def compare(ctx: NodeContext) -> None:
    a, b = ctx.input(0), ctx.input(1)
    _check_same(ctx, a, b)
    shape = tuple(np.broadcast_shapes(ctx.g.shape(a), ctx.g.shape(b)))
    ctx.emit(ops.Compare(_COMPARE[ctx.node.op_type]), [a, b], shape=shape, dtype="bool")


@converter("IsNaN", typed=True, limits="float input: x != x (NaN is the one value unequal to itself); a bool result")
def isnan(ctx: NodeContext) -> None:
    x = ctx.input(0)
    if ctx.g.dtype(x) != "f32":
        raise ctx.fail(f"input {x!r} is {ctx.g.dtype(x)}; IsNaN takes a float tensor")
    ctx.emit(ops.Compare("ne"), [x, x], dtype="bool")


@converter("Not", typed=True, limits="bool: x == 0")
def not_(ctx: NodeContext) -> None:
    ctx.emit(ops.Compare("eq"), [ctx.input(0), ctx.add_const("zero", np.float32(0))], dtype="bool")


@converter("And", "Or", "Xor", typed=True, limits="bools with numpy broadcasting: min, max, not-equal of 0/1")
def logic(ctx: NodeContext) -> None:
    a, b = ctx.input(0), ctx.input(1)
    shape = tuple(np.broadcast_shapes(ctx.g.shape(a), ctx.g.shape(b)))
    op = {"And": ops.Binary("min"), "Or": ops.Binary("max"), "Xor": ops.Compare("ne")}[ctx.node.op_type]
    ctx.emit(op, [a, b], shape=shape, dtype="bool")


@converter("Where", typed=True, limits="a bool condition; float, integer or boolean values, numpy broadcasting")
def where(ctx: NodeContext) -> None:
    cond, a, b = ctx.input(0), ctx.input(1), ctx.input(2)
    if ctx.g.dtype(cond) != "bool":
        raise ctx.fail(f"condition {cond!r} is {ctx.g.dtype(cond)}, not bool")
    value = ctx.g.dtype(b) if ctx.g.is_const(a) and ctx.g.tensors[a].size == 1 else ctx.g.dtype(a)
    shape = tuple(np.broadcast_shapes(ctx.g.shape(cond), ctx.g.shape(a), ctx.g.shape(b)))
    ctx.emit(ops.Select(), [cond, a, b], shape=shape, dtype=value)


@converter("Mod", typed=True, limits="fmod 0 (the divisor's sign) or 1 (the dividend's sign); numpy broadcasting")
def mod(ctx: NodeContext) -> None:
    a, b = ctx.input(0), ctx.input(1)
    fmod = int(ctx.attr("fmod", 0))
    shape = tuple(np.broadcast_shapes(ctx.g.shape(a), ctx.g.shape(b)))
    ctx.emit(ops.Binary("fmod" if fmod else "mod"), [a, b], shape=shape)


@converter("ConstantOfShape", "Range", typed=True, limits="constant inputs: folded at compile time")
def shape_generator(ctx: NodeContext) -> None:
    """The loader folds these whenever their inputs are constant; a run-time shape or bound would
    give a tensor whose size is not known at compile time."""
    for i in range(ctx.n_inputs()):
        ctx.need_const(i, "the shape" if ctx.node.op_type == "ConstantOfShape" else ("start", "limit", "delta")[i])
    raise ctx.fail("its inputs are constant but it did not fold at compile time")


_TO = {1: "f32", 10: "f32", 11: "f32", 6: "i32", 7: "i32", 5: "i32", 3: "i32", 2: "i32", 4: "i32", 12: "i32",
       13: "i32", 9: "bool"}


def cast_typed(ctx: NodeContext, to: int) -> None:
    """Cast between float, integer and bool tensors (ONNX: float → int truncates toward zero;
    to bool is x != 0); within one IR type it is an alias."""
    dtype = _TO.get(to)
    if dtype is None:
        raise ctx.fail(f"Cast to element type {to} is not supported; nmc computes float32, int32 and bool")
    x = ctx.input(0)
    if ctx.g.dtype(x) == dtype:
        ctx.alias(ctx.output, x)
        return
    ctx.emit(ops.Cast(dtype), [x], dtype=dtype)
