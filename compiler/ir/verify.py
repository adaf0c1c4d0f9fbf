"""``verify(graph)``: well-formedness and per-op invariants, run after every pass in tests."""
from __future__ import annotations

import networkx as nx

from compiler.errors import CompileError
from compiler.ir import ops
from compiler.ir.graph import Graph, Node


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
        for t, ty in g.tensors.items():
            if t not in g.constants and (not ty.shape or ty.shape[0] != 1):
                raise VerifyError(f"activation {t!r} of shape {list(ty.shape)} lost its leading batch axis{where}")


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
    if len(node.outputs) != 1:
        fail("every IR node has exactly one output")
