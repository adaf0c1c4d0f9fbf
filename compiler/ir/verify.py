"""``verify(graph)``: well-formedness and per-op invariants, run after every pass in tests."""
from __future__ import annotations

import networkx as nx

from nmc.compiler.errors import CompileError
from nmc.compiler.ir import ops
from nmc.compiler.ir.graph import Graph, Node


class VerifyError(CompileError):
    """The IR broke an invariant (a compiler bug, reported with the node and the pass)."""


def verify(g: Graph, after: str = "") -> None:
    where = f" after pass {after}" if after else ""
    if not nx.is_directed_acyclic_graph(g.dag):
        raise VerifyError(f"graph has a cycle{where}")
    produced: dict[str, str] = {}
    for node in g.nodes():
        for t in node.outputs:
            if t in produced or t in g.inputs or t in g.constants:
                raise VerifyError(f"{node.describe()}: tensor {t} has two definitions{where}")
            produced[t] = node.name
    defined = set(g.inputs) | set(g.constants)
    for node in g.nodes():
        for t in node.inputs:
            if t not in defined:
                raise VerifyError(f"{node.describe()}: reads {t!r}, which is not defined before it{where}")
            if t not in g.tensors:
                raise VerifyError(f"{node.describe()}: input {t!r} has no type{where}")
        for t in node.outputs:
            if t not in g.tensors:
                raise VerifyError(f"{node.describe()}: output {t!r} has no type{where}")
            defined.add(t)
        _check_op(g, node, where)
    for t in g.outputs:
        if t not in defined:
            raise VerifyError(f"graph output {t!r} is never computed{where}")
    if g.batched:
        check_batch_axis(g, where)


_BATCH_HINT = ("nmc runs a model with a free leading batch dimension sample by sample, so no operation may "
               "act across axis 0 (export with a fixed batch size to compile the whole tensor as one sample)")


class BatchAxisError(CompileError):
    """A batched model moves or mixes the batch axis."""


def check_batch_axis(g: Graph, where: str = "") -> None:
    """In a batched graph every activation keeps the batch as its leading axis of size 1 and no
    operation acts across it, so running the graph per sample is exact."""
    for t, ty in g.tensors.items():
        if t not in g.constants and (not ty.shape or ty.shape[0] != 1):
            raise BatchAxisError(f"activation {t!r} of shape {list(ty.shape)} lost its leading batch axis"
                                 f"{where}; {_BATCH_HINT}")
    for node in g.nodes():
        reason = _mixes_batch(g, node)
        if reason:
            raise BatchAxisError(f"{node.describe()}: {reason}{where}; {_BATCH_HINT}")


def _mixes_batch(g: Graph, node: Node) -> str:
    """Why ``node`` would mix samples of a batch (empty if it does not)."""
    op = node.op
    if isinstance(op, ops.Transpose) and op.perm[0] != 0:
        return f"perm {list(op.perm)} moves the batch axis"
    if isinstance(op, (ops.Softmax, ops.Reduce)) and 0 in op.axes:
        return "it reduces over the batch axis"
    if isinstance(op, (ops.Concat, ops.ArgMax)) and op.axis == 0:
        return "it works along the batch axis"
    if isinstance(op, ops.LayerNorm) and op.axis == 0:
        return "it normalises over the batch axis"
    if isinstance(op, ops.Slice) and (op.starts[0] != 0 or op.steps[0] != 1):
        return "it slices the batch axis"
    if isinstance(op, ops.Pad) and (op.pads[0] or op.pads[len(op.pads) // 2]):
        return "it pads the batch axis"
    if isinstance(op, ops.MatMul) and not g.is_const(node.inputs[1]) and len(g.shape(node.inputs[1])) < 3:
        return "its right operand is a per-sample matrix of rank 2, so the batch axis is a matrix axis"
    return ""


def _check_op(g: Graph, node: Node, where: str) -> None:
    op = node.op

    def fail(msg: str):
        raise VerifyError(f"{node.describe()}: {msg}{where}")

    if isinstance(op, (ops.Dense, ops.Conv, ops.BatchNorm, ops.LayerNorm)):
        for t in node.inputs[1:]:
            if not g.is_const(t):
                fail(f"{type(op).__name__} parameter {t!r} must be a constant")
    if isinstance(op, ops.Dense):
        w = g.shape(node.inputs[1])
        if len(w) != 2 or g.shape(node.inputs[0])[-1] != w[1]:
            fail(f"weight {list(w)} does not match input {list(g.shape(node.inputs[0]))}")
        if len(node.inputs) > 2 and g.shape(node.inputs[2]) != (w[0],):
            fail("bias length differs from the weight's output count")
    if isinstance(op, ops.Conv):
        x, w = g.shape(node.inputs[0]), g.shape(node.inputs[1])
        if x[1] != w[1] * op.group or w[0] % op.group:
            fail(f"channels {x[1]} / weight {list(w)} do not agree with group={op.group}")
    if isinstance(op, ops.FakeQuant):
        if len(op.scale) != len(op.zero_point) or not all(s > 0 for s in op.scale):
            fail(f"{len(op.scale)} scales (all positive) need as many zero points, not {len(op.zero_point)}")
        if not op.qmin <= min(op.zero_point) <= max(op.zero_point) <= op.qmax:
            fail(f"zero points {list(op.zero_point)} outside [{op.qmin}, {op.qmax}]")
        if op.per_axis and g.shape(node.inputs[0])[op.axis] != len(op.scale):
            fail(f"{len(op.scale)} scales along axis {op.axis} of {list(g.shape(node.inputs[0]))}")
    if len(node.outputs) != 1:
        fail("every IR node has exactly one output")
