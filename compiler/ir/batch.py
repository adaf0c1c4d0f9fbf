"""Where the batch lives in each tensor of a batched graph whose operations move it.

A batched graph computes one sample and the runtime stacks samples as an outer axis of every
buffer. That is exact when every operation treats samples independently. The strict rule
(``verify.check_batch_axis``) asks for the batch as the leading axis everywhere; PyTorch's
dynamic-batch exports of ``nn.MultiheadAttention`` transpose it inside (``[N, L, E]`` to
``[L, N, E]``) and reshape it into other axes (``[L, N·heads, d]``) and back. This module
follows it instead: per tensor, the axis ``b`` whose model size is N times the per-sample size
and how the samples sit in it: per sample the axis splits into ``outer × inner`` elements and the
model's axis into ``outer × N × inner`` (``[L, N, E]`` reshaped to ``[L·N, E]`` has outer L on
axis 0). Every rule below keeps that true or raises ``BatchAxisError`` naming the node; the
graph outputs must hold the batch as axis 0 again (outer 1), where the runtime stacks it.

A Reshape is followed with the model's own shapes at a second batch size (``shapes_at``: ONNX
tensor → shape with the batch dimension set to ``BATCH_PROBE``): a Reshape that regroups
samples (``[N, 8]`` to ``[8, N]``) looks per-sample like one that does not.
"""
from __future__ import annotations

import numpy as np

from nmc.compiler.ir import ops
from nmc.compiler.ir.graph import Graph, Node

BATCH_PROBE = 3  # the second batch size the frontend infers shapes at


def _prod(dims) -> int:
    return int(np.prod(dims, dtype=np.int64)) if len(dims) else 1


def batch_axes(g: Graph, shapes_at: dict[str, tuple[int, ...]], error) -> dict[str, tuple[int, int]]:
    """The batch axis and its outer size of every activation; ``error(node, why)`` builds the
    exception to raise."""
    axis: dict[str, int] = {t: 0 for t in g.inputs}
    outer: dict[str, int] = {t: 1 for t in g.inputs}
    for node in g.nodes():
        live = [t for t in node.inputs if not g.is_const(t)]
        if isinstance(node.op, ops.Reshape) and live:
            where = _reshape(g, node, axis[live[0]], outer[live[0]], g.shape(live[0]),
                             g.shape(node.outputs[0]), shapes_at)
        else:
            where = _rule(g, node, axis, shapes_at)
            if not isinstance(where, str) and len({outer[t] for t in live}) > 1:
                where = "its operands hold the batch differently"
            elif not isinstance(where, str):
                where = (where, outer[live[0]] if live else 1)
                if where[1] != 1 and not _axis_preserving(node.op):
                    where = f"{type(node.op).__name__} needs whole per-sample axes around the batch"
        if isinstance(where, str):
            raise error(node, where)
        for t in node.outputs:
            axis[t], outer[t] = where
    for t in g.outputs:
        if t in axis and ((axis[t], outer[t]) != (0, 1) or g.shape(t)[0] != 1):
            raise error(g.producer(t), f"its output {t!r} of shape {list(g.shape(t))} per sample holds the batch "
                                       f"on axis {axis[t]} with other elements, not as a leading axis of its own")
    return {t: (axis[t], outer[t]) for t in axis}


_FOLLOWED = (ops.Transpose, ops.Binary, ops.Compare, ops.Select, ops.Expand, ops.Unary, ops.Clip, ops.Cast,
             ops.FakeQuant, ops.Softmax, ops.LayerNorm, ops.Reduce, ops.ArgMax, ops.Dense, ops.MatMul, ops.Slice,
             ops.Pad, ops.Concat, ops.Gather)


def _axis_preserving(op) -> bool:
    """Ops followed axis by axis, which leave the batch axis whole (so a batch that shares its
    axis with per-sample elements stays as it is); the others need the batch first and alone."""
    return isinstance(op, _FOLLOWED)


def _rule(g: Graph, node: Node, axis: dict[str, int], shapes_at) -> int | str:
    """The batch axis of ``node``'s outputs, or why the node would mix samples."""
    op = node.op
    live = [t for t in node.inputs if not g.is_const(t)]
    if not live:
        return 0 if isinstance(op, ops.LoopCarried) else "it computes an activation from constants only"
    x = live[0]
    b, shape = axis[x], g.shape(x)
    out = g.shape(node.outputs[0])
    if isinstance(op, ops.Transpose):
        return op.perm.index(b)
    if isinstance(op, (ops.Binary, ops.Compare, ops.Select, ops.Expand)):
        return _broadcast(g, node, axis, out)
    if isinstance(op, (ops.Unary, ops.Clip, ops.Cast)):
        return b
    if isinstance(op, ops.FakeQuant):
        return "its scales run along the batch axis" if op.per_axis and op.axis == b else b
    if isinstance(op, ops.Softmax):
        return "it normalises along the batch axis" if b in op.axes else b
    if isinstance(op, ops.LayerNorm):
        return "it normalises over the batch axis" if b >= op.axis else b
    if isinstance(op, ops.Reduce):
        if b in op.axes:
            return "it reduces over the batch axis"
        return b if op.keepdims else b - sum(a < b for a in op.axes)
    if isinstance(op, ops.ArgMax):
        if op.axis == b:
            return "it works along the batch axis"
        return b if op.keepdims or op.axis > b else b - 1
    if isinstance(op, ops.Dense):
        return "its product runs along the batch axis" if b == len(shape) - 1 else b
    if isinstance(op, ops.MatMul):
        return _matmul(g, node, axis, out)
    if isinstance(op, ops.Slice):
        whole = op.starts[b] == 0 and op.steps[b] == 1 and out[b] == shape[b]
        return b if whole else "it slices the batch axis"
    if isinstance(op, ops.Pad):
        return "it pads the batch axis" if op.pads[b] or op.pads[len(shape) + b] else b
    if isinstance(op, ops.Concat):
        if any(axis[t] != b for t in live):
            return "its inputs hold the batch on different axes"
        return "it works along the batch axis" if op.axis == b else b
    if isinstance(op, ops.Gather):
        table, idx = node.inputs
        if not g.is_const(table) and not g.is_const(idx):
            return "both the table and the indices are per sample"
        if g.is_const(table):
            return op.axis + axis[idx]
        if b == op.axis:
            return "it gathers along the batch axis"
        return b if b < op.axis else b - 1 + len(g.shape(idx))
    if any(axis[t] != 0 for t in live):  # convolutions, pooling, recurrences, trees: batch first only
        return f"{type(op).__name__} needs the batch on axis 0, not {max(axis[t] for t in live)}"
    from nmc.compiler.ir.verify import _mixes_batch

    return _mixes_batch(g, node) or 0


def _reshape(g: Graph, node: Node, b: int, outer: int, shape, out, shapes_at) -> tuple[int, int] | str:
    """C order is kept, so the per-sample elements before the batch stay before it: the output's
    batch axis q and outer size k have prod(out[:q]) · k = prod(shape[:b]) · outer."""
    before = _prod(shape[:b]) * outer

    def split(q: int) -> int | None:
        k, rest = divmod(before, _prod(out[:q]))
        return k if rest == 0 and out[q] % k == 0 else None

    candidates = [(q, split(q)) for q in range(len(out)) if split(q) is not None]
    probe = shapes_at.get(node.outputs[0])
    if probe is not None and len(probe) == len(out):
        grown = [q for q, (s, t) in enumerate(zip(out, probe)) if s != t]
        if len(grown) == 1 and probe[grown[0]] == BATCH_PROBE * out[grown[0]] and split(grown[0]) is not None:
            return grown[0], split(grown[0])
        return f"it regroups the samples of a batch (shape {list(out)} per sample, {list(probe)} for {BATCH_PROBE})"
    whole = [c for c in candidates if c[1] == 1 and out[c[0]] == shape[b]]
    return (whole or candidates or [f"it splits the batch axis ({list(shape)} to {list(out)})"])[0]


def _broadcast(g: Graph, node: Node, axis: dict[str, int], out) -> int | str:
    rank, where = len(out), set()
    for t in node.inputs:
        shape = g.shape(t)
        if not g.is_const(t):
            where.add(axis[t] + rank - len(shape))
    if len(where) != 1:
        return "its operands hold the batch on different axes"
    (b,) = where
    for t in node.inputs:
        shape = g.shape(t)
        pos = b - (rank - len(shape))
        if g.is_const(t) and 0 <= pos and shape[pos] != 1:
            return f"constant {t!r} has {shape[pos]} entries along the batch axis"
        if not g.is_const(t) and shape[pos] != out[b]:
            return "it broadcasts along the batch axis"
    return b


def _matmul(g: Graph, node: Node, axis: dict[str, int], out) -> int | str:
    a, w = node.inputs[:2]
    rank = len(out)
    if g.is_const(a):
        return "its left operand is a constant and its right one per sample"
    sa = g.shape(a)
    ba = axis[a] + rank - max(len(sa), 2)
    if len(sa) == 1 or axis[a] == len(sa) - 1:
        return "its product runs along the batch axis"
    if g.is_const(w):
        return ba
    sw = g.shape(w)
    bw = axis[w] + rank - max(len(sw), 2)
    if len(sw) < 3 or axis[w] >= len(sw) - 2 or bw != ba:
        return "its operands hold the batch on different axes"
    return ba
