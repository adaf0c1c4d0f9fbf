"""Element-wise operators."""
from __future__ import annotations

import numpy as np
import onnx

from nmc.compiler.frontend.context import NodeContext, norm_axis
from nmc.compiler.frontend.ops import converter
from nmc.compiler.ir import ops

_UNARY = {"Relu": "relu", "Sigmoid": "sigmoid", "Tanh": "tanh", "Exp": "exp", "Log": "log", "Sqrt": "sqrt",
          "Neg": "neg", "Abs": "abs", "Reciprocal": "recip", "Erf": "erf", "Floor": "floor", "Ceil": "ceil"}
_BINARY = {"Add": "add", "Sub": "sub", "Mul": "mul", "Div": "div", "Pow": "pow"}


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
        lo_v, hi_v = ctx.optional_const(1, "min"), ctx.optional_const(2, "max")
        lo = -np.inf if lo_v is None else float(np.asarray(lo_v).reshape(-1)[0])
        hi = np.inf if hi_v is None else float(np.asarray(hi_v).reshape(-1)[0])
    ctx.emit(ops.Clip(float(lo), float(hi)), [ctx.input(0)])


@converter(*_BINARY)
def binary(ctx: NodeContext) -> None:
    b = ctx.input(1)
    rank, b_shape = len(ctx.shape(0)), ctx.shape(1)
    if ctx.opset < 7 and ctx.attr("broadcast", 0) and b_shape:  # legacy: B's axes align with A's from ``axis``
        axis = norm_axis(int(ctx.attr("axis", rank - len(b_shape))), rank, ctx)
        if axis + len(b_shape) > rank:
            raise ctx.fail(f"broadcast axis {axis} does not fit B of shape {list(b_shape)} into rank {rank}")
        aligned = tuple(b_shape) + (1,) * (rank - axis - len(b_shape))
        if aligned != tuple(b_shape):
            b = ctx.emit(ops.Reshape(), [b], ctx.temp("aligned"), aligned)
    # the shape from the IR operands: ONNX infers none after ai.onnx.ml ops (LightGBM's Mul by one)
    shape = tuple(np.broadcast_shapes(ctx.shape(0), ctx.g.shape(b)))
    ctx.emit(ops.Binary(_BINARY[ctx.node.op_type]), [ctx.input(0), b], shape=shape)


@converter("Max", "Min", "Sum", "Mean")
def variadic(ctx: NodeContext) -> None:
    """Any number of inputs (broadcast together): a chain of binary ops, then /n for Mean."""
    fn = {"Max": "max", "Min": "min", "Sum": "add", "Mean": "add"}[ctx.node.op_type]
    n = ctx.n_inputs()
    divide = ctx.node.op_type == "Mean" and n > 1
    acc = ctx.input(0)
    for i in range(1, n):
        last = i == n - 1 and not divide
        shape = tuple(np.broadcast_shapes(ctx.g.shape(acc), ctx.shape(i)))
        acc = ctx.emit(ops.Binary(fn), [acc, ctx.input(i)], None if last else ctx.temp(fn), shape)
    if divide:
        ctx.emit(ops.Binary("div"), [acc, ctx.add_const("count", np.float32(n))])
    elif n == 1:
        ctx.alias(ctx.output, acc)


@converter("Identity", integer_outputs=True)
def identity(ctx: NodeContext) -> None:
    """An alias; an integer output only when it passes a tree classifier's label on (LightGBM's
    converter puts Identity nodes after the classifier)."""
    if ctx.out_elem_type() not in (0, *_FLOAT_ELEM_TYPES) and not _is_class_label(ctx, ctx.input(0)):
        raise ctx.fail(f"output {ctx.output!r} has element type {onnx.TensorProto.DataType.Name(ctx.out_elem_type())}; "
                       "nmc computes float tensors only")
    ctx.alias(ctx.output, ctx.input(0))


_FLOAT_ELEM_TYPES = (1, 10, 11, 16)  # float, float16, double, bfloat16: all computed as f32


def _is_class_label(ctx: NodeContext, tensor: str) -> bool:
    """Whether ``tensor`` is the label output of a tree classifier (integer values held as f32)."""
    producer = ctx.g.producer(tensor)
    return producer is not None and producer.onnx_op in ("TreeEnsembleClassifier",)


@converter("Dropout")
def dropout(ctx: NodeContext) -> None:
    """Inference Dropout is the identity; training mode with a non-zero ratio is random."""
    if len(ctx.node.output) > 1 and ctx.node.output[1]:
        raise ctx.fail("the mask output of Dropout is not supported")
    training = ctx.optional_const(2, "training_mode") if ctx.opset >= 12 else None
    if training is not None and bool(np.asarray(training).reshape(-1)[0]):
        ratio = ctx.optional_const(1, "ratio")
        if ratio is None or float(np.asarray(ratio).reshape(-1)[0]) != 0.0:
            raise ctx.fail("training-mode Dropout (random) is not supported; export the model in eval mode")
    ctx.alias(ctx.output, ctx.input(0))


@converter("Cast", integer_outputs=True)
def cast(ctx: NodeContext) -> None:
    to = ctx.attr("to")
    if to in (6, 7) and _is_class_label(ctx, ctx.input(0)):
        ctx.alias(ctx.output, ctx.input(0))  # a class label: integer values, held as float32
        return
    if to not in _FLOAT_ELEM_TYPES:
        raise ctx.fail(f"Cast to type {to} is not supported; nmc computes in float32")
    ctx.alias(ctx.output, ctx.input(0))


@converter("CastLike")
def cast_like(ctx: NodeContext) -> None:
    """Cast to the element type of input 1 (whose values are not read); the frontend has
    already rejected non-float results, and floats are all computed as float32."""
    ctx.alias(ctx.output, ctx.input(0))
