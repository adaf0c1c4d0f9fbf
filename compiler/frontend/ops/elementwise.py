"""Element-wise operators."""
from __future__ import annotations

import numpy as np

from compiler.frontend.context import NodeContext
from compiler.frontend.ops import converter
from compiler.ir import ops

_UNARY = {"Relu": "relu", "Sigmoid": "sigmoid", "Tanh": "tanh", "Exp": "exp", "Log": "log", "Sqrt": "sqrt",
          "Neg": "neg", "Abs": "abs", "Reciprocal": "recip", "Erf": "erf", "Floor": "floor", "Ceil": "ceil"}
_BINARY = {"Add": "add", "Sub": "sub", "Mul": "mul", "Div": "div", "Pow": "pow", "Max": "max", "Min": "min"}


@converter(*_UNARY)
def unary(ctx: NodeContext) -> None:
    ctx.emit(ops.Unary(_UNARY[ctx.node.op_type]), [ctx.input(0)])


@converter("LeakyRelu")
def leaky_relu(ctx: NodeContext) -> None:
    ctx.emit(ops.Unary("leaky", float(ctx.attr("alpha", 0.01))), [ctx.input(0)])


@converter("Gelu")
def gelu(ctx: NodeContext) -> None:
    approximate = ctx.attr("approximate", "none")
    if approximate not in ("none", "tanh"):
        raise ctx.fail(f"approximate={approximate!r}; supported: 'none', 'tanh'")
    ctx.emit(ops.Unary("gelu" if approximate == "none" else "gelu_tanh"), [ctx.input(0)])


@converter("Clip")
def clip(ctx: NodeContext) -> None:
    if ctx.opset < 11:
        lo, hi = ctx.attr("min", -np.inf), ctx.attr("max", np.inf)
    else:
        lo_v, hi_v = ctx.const(1), ctx.const(2)
        if (ctx.has_input(1) and lo_v is None) or (ctx.has_input(2) and hi_v is None):
            raise ctx.fail("min and max must be constants known at compile time")
        lo = -np.inf if lo_v is None else float(np.asarray(lo_v).reshape(-1)[0])
        hi = np.inf if hi_v is None else float(np.asarray(hi_v).reshape(-1)[0])
    ctx.emit(ops.Clip(float(lo), float(hi)), [ctx.input(0)])


@converter(*_BINARY)
def binary(ctx: NodeContext) -> None:
    if ctx.opset < 7 and ctx.attr("broadcast", 0):
        raise ctx.fail("legacy broadcast attribute (opset < 7) is not supported; update the model's opset")
    if ctx.node.op_type in ("Max", "Min") and ctx.n_inputs() != 2:
        if ctx.n_inputs() == 1:
            return ctx.alias(ctx.output, ctx.input(0))
        raise ctx.fail("variadic Max/Min with more than two inputs is not supported")
    ctx.emit(ops.Binary(_BINARY[ctx.node.op_type]), [ctx.input(0), ctx.input(1)])


@converter("Identity", "Dropout")
def identity(ctx: NodeContext) -> None:
    ctx.alias(ctx.output, ctx.input(0))
    if ctx.node.op_type == "Dropout" and len(ctx.node.output) > 1 and ctx.node.output[1]:
        raise ctx.fail("the mask output of Dropout is not supported")


@converter("Cast")
def cast(ctx: NodeContext) -> None:
    to = ctx.attr("to")
    if to not in (1, 10, 11, 16):  # float, float16, double, bfloat16: all computed as f32
        raise ctx.fail(f"Cast to type {to} is not supported; nmc computes in float32")
    ctx.alias(ctx.output, ctx.input(0))
