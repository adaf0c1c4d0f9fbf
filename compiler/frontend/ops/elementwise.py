"""Element-wise operators."""
from __future__ import annotations

import numpy as np
import onnx

from nmc.compiler.frontend.context import NodeContext, norm_axis
from nmc.compiler.frontend.ops import converter
from nmc.compiler.ir import ops
from nmc.compiler.ir.graph import TensorType

_UNARY = {"Relu": "relu", "Sigmoid": "sigmoid", "Tanh": "tanh", "Exp": "exp", "Log": "log", "Sqrt": "sqrt",
          "Neg": "neg", "Abs": "abs", "Reciprocal": "recip", "Erf": "erf", "Floor": "floor", "Ceil": "ceil"}
_BINARY = {"Add": "add", "Sub": "sub", "Mul": "mul", "Div": "div", "Pow": "pow"}


@converter(*_UNARY, limits="element-wise on float32")
def unary(ctx: NodeContext) -> None:
    ctx.emit(ops.Unary(_UNARY[ctx.node.op_type]), [ctx.input(0)])


@converter("Sign", limits="element-wise on float32 (the sign of NaN is NaN)")
def sign(ctx: NodeContext) -> None:
    ctx.emit(ops.Unary("sign"), [ctx.input(0)])


@converter("Softplus", limits="computed as max(x, 0) + ln(1 + exp(-|x|)), exact for large |x|")
def softplus(ctx: NodeContext) -> None:
    ctx.emit(ops.Unary("softplus"), [ctx.input(0)])


@converter("Mish", limits="x · tanh(softplus(x)): three element-wise steps")
def mish(ctx: NodeContext) -> None:
    x, shape = ctx.input(0), ctx.shape(0)
    ctx.chain(x, [(ops.Unary("softplus"), shape, "softplus"), (ops.Unary("tanh"), shape, "tanh"),
                  (ops.Binary("mul"), shape, "mish", [x, None])])


@converter("Elu", limits="any alpha")
def elu(ctx: NodeContext) -> None:
    ctx.emit(ops.Unary("elu", float(ctx.attr("alpha", 1.0))), [ctx.input(0)])


@converter("Selu", limits="any alpha and gamma: gamma · elu(x, alpha)")
def selu(ctx: NodeContext) -> None:
    alpha = float(ctx.attr("alpha", 1.67326319217681884765625))
    gamma = float(ctx.attr("gamma", 1.05070102214813232421875))
    shape = ctx.shape(0)
    ctx.chain(ctx.input(0), [(ops.Unary("elu", alpha), shape, "elu"),
                             (ops.Binary("mul"), shape, "selu", [None, ctx.add_const("gamma", np.float32(gamma))])])


def _hard_sigmoid_steps(ctx: NodeContext, alpha: float, beta: float, shape) -> list[tuple]:
    """clip(alpha · x + beta, 0, 1) as steps for ``ctx.chain``."""
    return [(ops.Binary("mul"), shape, "alpha_x", [None, ctx.add_const("alpha", np.float32(alpha))]),
            (ops.Binary("add"), shape, "plus_beta", [None, ctx.add_const("beta", np.float32(beta))]),
            (ops.Clip(0.0, 1.0), shape, "hard_sigmoid")]


@converter("HardSigmoid", limits="any alpha and beta: clip(alpha · x + beta, 0, 1)")
def hard_sigmoid(ctx: NodeContext) -> None:
    alpha, beta = float(ctx.attr("alpha", 0.2)), float(ctx.attr("beta", 0.5))
    ctx.chain(ctx.input(0), _hard_sigmoid_steps(ctx, alpha, beta, ctx.shape(0)))


@converter("HardSwish", limits="x · clip(x / 6 + 1/2, 0, 1)")
def hard_swish(ctx: NodeContext) -> None:
    x, shape = ctx.input(0), ctx.shape(0)
    ctx.chain(x, _hard_sigmoid_steps(ctx, 1 / 6, 0.5, shape) + [(ops.Binary("mul"), shape, "hard_swish", [x, None])])


@converter("PRelu", limits="slope constant or computed, broadcast to the input (opset < 7: per channel)")
def prelu(ctx: NodeContext) -> None:
    """A constant slope with one value is LeakyRelu; otherwise relu(x) + slope · min(x, 0)."""
    x, shape = ctx.input(0), ctx.shape(0)
    value = ctx.const(1)
    if value is not None and np.asarray(value).size and np.all(np.asarray(value) == np.asarray(value).flat[0]):
        return ctx.emit(ops.Unary("leaky", float(np.asarray(value).flat[0])), [x])
    slope, slope_shape = ctx.input(1), ctx.shape(1)
    if ctx.opset < 7 and len(slope_shape) == 1 and len(shape) > 2 and slope_shape[0] == shape[1] != 1:
        per_channel = (shape[1],) + (1,) * (len(shape) - 2)  # legacy PRelu: one slope per channel
        slope = (ctx.add_const("slope", ctx.g.constants[slope].reshape(per_channel)) if ctx.g.is_const(slope)
                 else ctx.emit(ops.Reshape(), [slope], ctx.temp("slope"), per_channel))
    try:
        if tuple(np.broadcast_shapes(shape, ctx.g.shape(slope))) != tuple(shape):
            raise ValueError
    except ValueError:
        raise ctx.fail(f"slope of shape {list(ctx.g.shape(slope))} does not broadcast to the input's "
                       f"{list(shape)}") from None
    positive = ctx.emit(ops.Unary("relu"), [x], ctx.temp("positive"), shape)
    ctx.chain(x, [(ops.Binary("min"), shape, "negative", [None, ctx.add_const("zero", np.float32(0))]),
                  (ops.Binary("mul"), shape, "scaled", [None, slope]),
                  (ops.Binary("add"), shape, "prelu", [positive, None])])


@converter("LeakyRelu", limits="any alpha")
def leaky_relu(ctx: NodeContext) -> None:
    ctx.emit(ops.Unary("leaky", float(ctx.attr("alpha", 0.01))), [ctx.input(0)])


@converter("Gelu", limits="approximate none or tanh")
def gelu(ctx: NodeContext) -> None:
    approximate = ctx.attr("approximate", "none")
    if approximate not in ("none", "tanh"):
        raise ctx.fail(f"approximate={approximate!r}; supported: 'none', 'tanh'")
    ctx.emit(ops.Unary("gelu" if approximate == "none" else "gelu_tanh"), [ctx.input(0)])


_EXACT_INT = 2 ** 24  # integers an f32 immediate holds exactly


@converter("Clip", typed=True, limits="constant min and max; float or integer data (integer bounds within 2^24)")
def clip(ctx: NodeContext) -> None:
    if ctx.opset < 11:
        lo, hi = ctx.attr("min", -np.inf), ctx.attr("max", np.inf)
    else:
        lo_v, hi_v = ctx.optional_const(1, "min"), ctx.optional_const(2, "max")
        lo = -np.inf if lo_v is None else float(np.asarray(lo_v).reshape(-1)[0])
        hi = np.inf if hi_v is None else float(np.asarray(hi_v).reshape(-1)[0])
    x = ctx.input(0)
    dtype = ctx.g.dtype(x)
    if dtype == "bool":
        raise ctx.fail("Clip of a bool tensor; Clip takes numbers")
    if dtype == "i32":  # the vector unit clips integers in i32 with f32 immediates: whole values within 2^24
        lo, hi = (-np.inf if lo <= -2 ** 31 else lo), (np.inf if hi >= 2 ** 31 - 1 else hi)
        for name, bound in (("min", lo), ("max", hi)):
            if np.isfinite(bound) and (bound != int(bound) or abs(bound) > _EXACT_INT):
                raise ctx.fail(f"{name} {bound:g} of an integer Clip: nmc clips integers at whole bounds "
                               f"within ±2^24")
    ctx.emit(ops.Clip(float(lo), float(hi)), [x])


@converter(*_BINARY, typed=True,
           limits="float or integer operands, numpy broadcasting (opset < 7: broadcast and axis)")
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
    a = ctx.input(0)
    if ctx.node.op_type == "Pow" and ctx.g.dtype(a) != ctx.g.dtype(b):
        return _mixed_pow(ctx, a, b, shape)
    ctx.emit(ops.Binary(_BINARY[ctx.node.op_type]), [a, b], shape=shape)


def _mixed_pow(ctx: NodeContext, a: str, b: str, shape) -> None:
    """Pow's exponent may have another type than its base: both as f32, then the base's type."""
    as_float = [t if ctx.g.dtype(t) == "f32" else
                ctx.emit(ops.Cast("f32"), [t], ctx.temp("as_f32"), ctx.g.shape(t), "f32") for t in (a, b)]
    if ctx.g.dtype(a) == "f32":
        ctx.emit(ops.Binary("pow"), as_float, shape=shape, dtype="f32")
        return
    power = ctx.emit(ops.Binary("pow"), as_float, ctx.temp("pow"), shape, "f32")
    ctx.emit(ops.Cast(ctx.g.dtype(a)), [power], shape=shape, dtype=ctx.g.dtype(a))


@converter("Max", "Min", "Sum", "Mean", typed=True, limits="any number of inputs, broadcast together")
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


@converter("Identity", integer_outputs=True, limits="tensors (no optional or sequence types)")
def identity(ctx: NodeContext) -> None:
    """An alias, of any element type (LightGBM's converter puts Identity nodes after a tree
    classifier's label, a float32 tensor holding integers)."""
    ctx.alias(ctx.output, ctx.input(0))


_FLOAT_ELEM_TYPES = (1, 10, 11, 16)  # float, float16, double, bfloat16: all computed as f32


def _is_class_label(ctx: NodeContext, tensor: str) -> bool:
    """Whether ``tensor`` is the label output of a tree classifier (integer values held as f32)."""
    producer = ctx.g.producer(tensor)
    return producer is not None and producer.onnx_op in ("TreeEnsembleClassifier",)


@converter("Dropout", integer_outputs=True,
           limits="inference only (training mode with ratio > 0 refused); the mask output is a constant, all true "
                  "(ones before opset 10)")
def dropout(ctx: NodeContext) -> None:
    """Inference Dropout is the identity and keeps every element: its mask output (declared by
    the exports of SqueezeNet, VGG and others, opset 7-9, and read by few) is a constant, all
    true (bool from opset 10, ones of the data's type before), that costs nothing unless a node
    or graph output reads it. Training mode with a non-zero ratio is random."""
    if ctx.out_elem_type(0) not in (0, *_FLOAT_ELEM_TYPES):
        raise ctx.fail(f"output {ctx.output!r} has element type "
                       f"{onnx.TensorProto.DataType.Name(ctx.out_elem_type(0))}; nmc computes float tensors only")
    training = ctx.optional_const(2, "training_mode") if ctx.opset >= 12 else None
    if training is not None and bool(np.asarray(training).reshape(-1)[0]):
        ratio = ctx.optional_const(1, "ratio")
        if ratio is None or float(np.asarray(ratio).reshape(-1)[0]) != 0.0:
            raise ctx.fail("training-mode Dropout (random) is not supported; export the model in eval mode")
    data = ctx.input(0)
    ctx.alias(ctx.output, data)
    if len(ctx.node.output) > 1 and ctx.node.output[1]:
        mask = ctx.node.output[1]
        boolean = ctx.opset >= 10  # before opset 10 the mask has the data's (float) type: ones
        ctx.g.constants[mask] = np.ones(ctx.g.shape(data), np.int32 if boolean else np.float32)
        ctx.g.tensors[mask] = TensorType(ctx.g.shape(data), "bool" if boolean else "f32")


@converter("Cast", integer_outputs=True,
           limits="between float (all computed as float32), integer (int32) and bool; float to integer "
                  "truncates toward zero; a tree classifier's label to int64 stays float32")
def cast(ctx: NodeContext) -> None:
    from nmc.compiler.frontend.ops.indexing import cast_typed

    to = ctx.attr("to")
    if to in (6, 7) and _is_class_label(ctx, ctx.input(0)):
        ctx.alias(ctx.output, ctx.input(0))  # a class label: integer values, held as float32
        return
    cast_typed(ctx, to)


@converter("CastLike", limits="to a float type (all computed as float32)")
def cast_like(ctx: NodeContext) -> None:
    """Cast to the element type of input 1 (whose values are not read); the frontend has
    already rejected non-float results, and floats are all computed as float32."""
    ctx.alias(ctx.output, ctx.input(0))
