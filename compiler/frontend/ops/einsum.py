"""Einsum in its matrix-product forms: one or two operands, each label used once per operand.

Labels fall into classes by where they appear: in both operands and the output (batch), in
both operands only (contracted), in one operand and the output (free), in one operand only
(summed first, a Reduce). Each operand is transposed to [batch, free, contracted] (the second
to [batch, contracted, free]) and regarded as a matrix, one MatMul (or, when the second
operand is a constant without batch labels, a Dense: a crossbar layer) computes every
product, and a Reshape and a Transpose give the output its order. This covers attention's
"bhid,bhjd->bhij", "bhij,bhjd->bhid", batched "bij,bjk->bik", "...ij,...jk->...ik" and their
transposed variants, inner and outer products, and single-operand transposes and sums. A
label twice in one operand (a diagonal, "...ii->...i", or a trace) first reads the diagonal:
a constant gather of its elements (computed at compile time for a constant operand). Three or
more operands are refused.
"""
from __future__ import annotations

import numpy as np

from nmc.compiler.frontend.context import NodeContext
from nmc.compiler.frontend.ops import converter
from nmc.compiler.frontend.ops.indexing import _batch_refusal, _take_const
from nmc.compiler.ir import ops


def _parse(ctx: NodeContext, equation: str, ranks: list[int]) -> tuple[list[str], str]:
    """The operands' labels and the output's, with each "..." spelled out as capital letters
    (aligned to the right, as numpy broadcasts them)."""
    def refuse(why: str):
        return ctx.fail(f"equation {equation!r}: {why}; supported: one or two operands (matrix products, "
                        "transposes, sums, diagonals), e.g. 'bhid,bhjd->bhij'")

    text = equation.replace(" ", "")
    lhs, arrow, rhs = text.partition("->")
    terms = lhs.split(",")
    if len(terms) != len(ranks):
        raise refuse(f"{len(terms)} operand terms for {len(ranks)} inputs")
    if len(terms) > 2:
        raise refuse(f"{len(terms)} operands")
    ellipsis_rank = max((rank - len(term.replace("...", "")) for term, rank in zip(terms, ranks) if "..." in term),
                        default=0)
    spare = [chr(c) for c in range(ord("A"), ord("Z") + 1) if chr(c) not in text][:ellipsis_rank]
    labels = []
    for term, rank in zip(terms, ranks):
        letters = term.replace("...", "")
        if term.count("...") > 1 or (letters and not letters.isalpha()):
            raise refuse(f"term {term!r} is not letters with at most one '...'")
        own = rank - len(term.replace("...", ""))
        if "..." not in term and own:
            raise refuse(f"term {term!r} has {len(term)} labels for an operand of rank {rank}")
        if own < 0:
            raise refuse(f"term {term!r} has more labels than its operand's rank {rank}")
        labels.append(term.replace("...", "".join(spare[ellipsis_rank - own:])))
    if arrow:
        letters = rhs.replace("...", "")
        if rhs.count("...") > 1 or (letters and not letters.isalpha()):
            raise refuse(f"output term {rhs!r} is not letters with at most one '...'")
        output = rhs.replace("...", "".join(spare))
    else:  # implicit output: the ellipsis, then the labels used once, in alphabetical order
        counts = {label: sum(term.count(label) for term in labels) for label in set("".join(labels))}
        output = "".join(spare) + "".join(sorted(label for label, n in counts.items() if n == 1 and label not in spare))
    if len(set(output)) != len(output) or not set(output) <= set("".join(labels)):
        raise refuse(f"output term {rhs!r} repeats a label or names one no operand has")
    return labels, output


class _Operand:
    """One operand on its way to the product: its IR tensor and the label of each axis."""

    def __init__(self, ctx: NodeContext, index: int, labels: str):
        self.ctx, self.labels = ctx, labels
        self.tensor = ctx.input(index)
        self.shape = ctx.g.shape(self.tensor)
        self.value = ctx.const(index)

    def diagonal(self, equation: str) -> None:
        """Read the diagonal of the axes that share a label (their sizes must agree): each
        output element is the input element whose coordinates repeat the label's, so one
        gather of elements by a constant table (a constant operand is read here)."""
        if len(set(self.labels)) == len(self.labels):
            return
        ctx = self.ctx
        labels = "".join(dict.fromkeys(self.labels))
        for label in labels:
            sizes = {self.shape[a] for a, other in enumerate(self.labels) if other == label}
            if len(sizes) > 1:
                raise ctx.fail(f"equation {equation!r}: label {label!r} has sizes {sorted(sizes)} in one operand")
        if ctx.g.batched and not ctx.g.is_const(self.tensor) and self.labels.count(self.labels[0]) > 1:
            raise _batch_refusal(ctx, "it reads a diagonal across axis 0")
        shape = tuple(self.size(label) for label in labels)
        grid = np.indices(shape).reshape(len(shape), -1)
        flat = np.ravel_multi_index([grid[labels.index(label)] for label in self.labels], self.shape).reshape(shape)
        if self.value is not None:
            self.value = np.asarray(self.value).reshape(-1)[flat]
        self.tensor = _take_const(ctx, self.tensor, flat, 1, shape, None if self.value is not None else
                                  ctx.temp("diagonal"))
        self.labels, self.shape = labels, shape

    def size(self, label: str) -> int:
        return self.shape[self.labels.index(label)]

    def sum_out(self, keep: set[str]) -> None:
        """Sum the axes whose labels nothing else uses."""
        axes = tuple(a for a, label in enumerate(self.labels) if label not in keep)
        if not axes:
            return
        labels = "".join(label for label in self.labels if label in keep)
        shape = tuple(self.size(label) for label in labels)
        if self.value is not None:
            self.value = np.asarray(self.value, np.float32).sum(axis=axes)
            self.tensor = self.ctx.add_const("summed", self.value)
        else:
            self.tensor = self.ctx.emit(ops.Reduce("sum", axes, False), [self.tensor], self.ctx.temp("summed"), shape)
        self.labels, self.shape = labels, shape

    def arranged(self, order: str, shape: tuple[int, ...]) -> str:
        """The operand with its axes in ``order``, regarded as ``shape`` (constants folded)."""
        perm = tuple(self.labels.index(label) for label in order)
        if self.value is not None:
            return self.ctx.add_const("arranged", np.transpose(np.asarray(self.value, np.float32), perm).reshape(shape))
        x = self.tensor
        if perm != tuple(range(len(perm))):
            x = self.ctx.emit(ops.Transpose(perm), [x], self.ctx.temp("transposed"),
                              tuple(self.shape[p] for p in perm))
        if tuple(shape) != self.ctx.g.shape(x):
            x = self.ctx.emit(ops.Reshape(), [x], self.ctx.temp("matrix"), tuple(shape))
        return x


def _ordered(ctx: NodeContext, labels: str, shape: tuple[int, ...], output: str) -> list[tuple]:
    """Steps (for ``ctx.chain``) that give a tensor with axes ``labels`` of ``shape`` the output's
    axis order and shape."""
    perm = tuple(labels.index(label) for label in output)
    out_shape = ctx.out_shape()
    steps = []
    if perm != tuple(range(len(perm))):
        steps.append((ops.Transpose(perm), tuple(shape[p] for p in perm), "ordered"))
    if tuple(shape[p] for p in perm) != tuple(out_shape):
        steps.append((ops.Reshape(), out_shape, "shaped"))
    return steps


@converter("Einsum", unit="crossbar or vector",
           limits="one or two operands (matrix-product forms, transposes, sums; a label twice in an operand reads "
                  "the diagonal by a constant gather); a constant second operand without batch labels: a crossbar layer")
def einsum(ctx: NodeContext) -> None:
    equation = str(ctx.attr("equation"))
    n = ctx.n_inputs()
    labels, output = _parse(ctx, equation, [len(ctx.shape(i)) for i in range(n)])
    operands = [_Operand(ctx, i, term) for i, term in enumerate(labels)]
    for operand in operands:
        operand.diagonal(equation)
    if n == 1:
        (a,) = operands
        a.sum_out(set(output))
        return ctx.chain(a.tensor, _ordered(ctx, a.labels, a.shape, output))
    a, b = operands
    if a.value is not None and b.value is None:  # the constant second, so it can be a weight
        a, b = b, a
    a.sum_out(set(output) | set(b.labels))
    b.sum_out(set(output) | set(a.labels))
    batch = [label for label in a.labels if label in b.labels and label in output]
    contracted = [label for label in a.labels if label in b.labels and label not in output]
    free_a = [label for label in a.labels if label not in b.labels]
    free_b = [label for label in b.labels if label not in a.labels]
    for label in batch + contracted:
        sizes = (a.size(label), b.size(label))
        if sizes[0] != sizes[1] and (label in contracted or 1 not in sizes):
            raise ctx.fail(f"equation {equation!r}: label {label!r} has sizes {sizes[0]} and {sizes[1]}")
    k = int(np.prod([a.size(label) for label in contracted], dtype=np.int64))
    cols = int(np.prod([b.size(label) for label in free_b], dtype=np.int64))
    a_free = tuple(a.size(label) for label in free_a)
    free_shape = a_free + tuple(b.size(label) for label in free_b)
    product_labels = "".join(batch + free_a + free_b)
    if b.value is not None and not batch and free_a:
        # a crossbar layer: x · Wᵀ over the last axis, the contracted labels merged into it
        x = a.arranged("".join(free_a + contracted), a_free + (k,))
        weight = b.arranged("".join(free_b + contracted), (cols, k))
        steps = [(ops.Dense(), a_free + (cols,), "dense", [None, weight])]
        if a_free + (cols,) != free_shape:
            steps.append((ops.Reshape(), free_shape, "product"))
        return ctx.chain(x, steps + _ordered(ctx, product_labels, free_shape, output))
    rows = int(np.prod(a_free, dtype=np.int64))
    batch_shape = tuple(max(a.size(label), b.size(label)) for label in batch)
    x = a.arranged("".join(batch + free_a + contracted), tuple(a.size(label) for label in batch) + (rows, k))
    w = b.arranged("".join(batch + contracted + free_b), tuple(b.size(label) for label in batch) + (k, cols))
    steps = [(ops.MatMul(), batch_shape + (rows, cols), "matmul", [None, w])]
    if batch_shape + free_shape != batch_shape + (rows, cols):
        steps.append((ops.Reshape(), batch_shape + free_shape, "product"))
    ctx.chain(x, steps + _ordered(ctx, product_labels, batch_shape + free_shape, output))
