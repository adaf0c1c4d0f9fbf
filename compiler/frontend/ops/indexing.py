"""Index and mask tensors (DESIGN.md "Tensor types"): Gather (an embedding lookup when the
indices are computed at run time, a view when they are constants), comparisons, logic, Where,
Mod, and the shape generators that fold at compile time. They compute on the vector unit in
their own element types: i32 for every ONNX integer type, bool as 0/1."""
from __future__ import annotations

import numpy as np

from nmc.compiler.frontend.context import NodeContext, norm_axis
from nmc.compiler.frontend.ops import converter
from nmc.compiler.ir import ops
from nmc.compiler.ir.graph import TensorType

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
