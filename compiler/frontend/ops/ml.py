"""ONNX-ML operators beyond trees (domain ``ai.onnx.ml``): the linear models, ArrayFeatureExtractor,
Normalizer and Binarizer, so that scikit-learn's linear models, MLPs and preprocessing exported by
skl2onnx with default options compile.

Each follows onnxruntime's kernel (``core/providers/cpu/ml``), not only the spec's text: the
linear models are one ``Dense`` (so they map onto crossbars on crossbar targets) followed by
onnxruntime's binary conventions and post transforms (``batched_update_scores_inplace``); integer
labels are i32 tensors, string labels are refused.
"""
from __future__ import annotations

import numpy as np

from nmc.compiler.frontend.context import NodeContext
from nmc.compiler.frontend.ops import converter
from nmc.compiler.frontend.ops.trees import _Builder, _post_transform, _transform
from nmc.compiler.ir import ops
from nmc.compiler.ir.graph import TensorType

NORMS = ("MAX", "L1", "L2")


def _int_const(ctx: NodeContext, hint: str, value) -> str:
    """An i32 constant (class labels, index tables)."""
    name = ctx.g.fresh(f"{ctx.output}.{hint}")
    ctx.g.constants[name] = np.ascontiguousarray(np.asarray(value), dtype=np.int32)
    ctx.g.tensors[name] = TensorType(tuple(np.shape(value)), "i32")
    return name


def _as_index(b: _Builder, x: str) -> str:
    """``x`` as an i32 index tensor (ArgMax yields float32 integers)."""
    if b.ctx.g.dtype(x) == "i32":
        return x
    return b.ctx.emit(ops.Cast("i32"), [x], b.ctx.temp("index"), b.ctx.g.shape(x), dtype="i32")


def _lookup(b: _Builder, table: str, index: str, output: str, shape: tuple[int, ...]) -> str:
    """``table[index]`` for a constant 1-D table and run-time indices: one gather."""
    flat = b.ctx.emit(ops.Reshape(), [_as_index(b, index)], b.ctx.temp("flat"), (int(np.prod(b.ctx.g.shape(index))),))
    gathered = b.ctx.emit(ops.Gather(0), [table, flat], b.ctx.temp("gathered") if shape != b.ctx.g.shape(flat)
                          else output, b.ctx.g.shape(flat))
    if gathered != output:
        b.ctx.emit(ops.Reshape(), [gathered], output, shape)
    return output


def _samples(ctx: NodeContext) -> tuple[str, int, int]:
    """The input as ``[samples, features]`` (a 1-D input is one sample, as onnxruntime reads it)."""
    x = ctx.input(0)
    shape = ctx.g.shape(x)
    if ctx.g.dtype(x) != "f32":
        raise ctx.fail(f"input {x!r} is {ctx.g.dtype(x)}; nmc's linear models take float inputs (Cast first)")
    if len(shape) == 1:
        return ctx.emit(ops.Reshape(), [x], ctx.temp("row"), (1, shape[0])), 1, shape[0]
    if len(shape) != 2:
        raise ctx.fail(f"input of shape {list(shape)}: expected [samples, features]")
    return x, shape[0], shape[1]


def _linear(ctx: NodeContext, b: _Builder, x: str, rows: int, features: int, outputs: int,
            intercepts: np.ndarray | None) -> str:
    """``x · Wᵀ + b`` with the ``coefficients`` attribute as W[outputs, features]: one Dense."""
    coefficients = np.asarray(ctx.attr("coefficients", []), dtype=np.float32)
    if coefficients.size != outputs * features:
        raise ctx.fail(f"{coefficients.size} coefficients for {outputs} outputs of {features} features "
                       f"(expected {outputs * features})")
    inputs = [x, b.const("coefficients", coefficients.reshape(outputs, features))]
    if intercepts is not None:
        inputs.append(b.const("intercepts", intercepts.astype(np.float32)))
    return b.node(ops.Dense(), inputs, (rows, outputs), hint="scores")


@converter("LinearClassifier", integer_outputs=True, unit="crossbar or vector",
           limits="integer class labels (i32); every post_transform, onnxruntime's binary conventions "
                  "(multi_class is ignored, as onnxruntime does); float inputs")
def linear_classifier(ctx: NodeContext) -> None:
    """onnxruntime's ``LinearClassifier``: scores = x · Wᵀ + b; one score column is the binary case
    (label: score > 0; probabilities [1 − s, s] for two labels), several are ranked by argmax
    of the raw scores and transformed by ``post_transform``."""
    b = _Builder(ctx)
    if ctx.attr("classlabels_strings"):
        raise ctx.fail("string class labels are not supported (nmc outputs numbers); export integer labels")
    labels = np.asarray(ctx.attr("classlabels_ints", []), dtype=np.int64)
    if labels.size and (labels.min() < np.iinfo(np.int32).min or labels.max() > np.iinfo(np.int32).max):
        raise ctx.fail("class labels beyond int32; nmc computes integers in int32")
    x, rows, features = _samples(ctx)
    intercepts = np.asarray(ctx.attr("intercepts", []), dtype=np.float32)
    classes = len(intercepts) if len(intercepts) else len(ctx.attr("coefficients", [])) // max(features, 1)
    if classes < 1:
        raise ctx.fail("no coefficients")
    transform = _post_transform(ctx)
    scores = _linear(ctx, b, x, rows, features, classes, intercepts if len(intercepts) else None)
    label_out = ctx.node.output[0] if ctx.node.output and ctx.node.output[0] else None
    prob_out = ctx.node.output[1] if len(ctx.node.output) > 1 and ctx.node.output[1] else None
    if classes == 1:
        negative, positive = (int(labels[0]), int(labels[1])) if len(labels) == 2 else (0, 1)
        if label_out:
            above = ctx.emit(ops.Compare("gt"), [scores, b.const("zero", 0.0)], ctx.temp("above"), (rows, 1),
                             dtype="bool")
            won = ctx.emit(ops.Cast("i32"), [above], ctx.temp("won"), (rows, 1), dtype="i32")
            flat = ctx.emit(ops.Reshape(), [won], ctx.temp("won_flat"), (rows,))
            table = _int_const(ctx, "labels", [negative, positive])
            _lookup(b, table, flat, label_out, (rows,))
        if not prob_out:
            return
        if len(labels) == 2:
            if transform == "PROBIT":
                raise ctx.fail("PROBIT with one score column and two labels: onnxruntime leaves the second "
                               "probability unwritten")
            first = b.node(ops.Binary("sub"), [b.const("one", [[1.0]]), scores], (rows, 1), hint="negative")
            b.node(ops.Concat(1), [first, scores], (rows, 2), output=prob_out)
        else:  # one column: onnxruntime applies only PROBIT
            _transform(b, scores, "PROBIT" if transform == "PROBIT" else "NONE", prob_out)
        return
    if len(labels) != classes:
        raise ctx.fail(f"{len(labels)} class labels for {classes} score columns")
    if label_out:
        index = b.node(ops.ArgMax(1, False), [scores], (rows,), hint="argmax")
        _lookup(b, _int_const(ctx, "labels", labels), index, label_out, (rows,))
    if prob_out:
        _transform(b, scores, transform, prob_out)


@converter("LinearRegressor", unit="crossbar or vector",
           limits="any number of targets; post_transform as onnxruntime (one target: only PROBIT)")
def linear_regressor(ctx: NodeContext) -> None:
    """onnxruntime's ``LinearRegressor``: y = x · Wᵀ + b (intercepts used when there is one per
    target), then the post transform (with one target onnxruntime applies only PROBIT)."""
    b = _Builder(ctx)
    x, rows, features = _samples(ctx)
    targets = int(ctx.attr("targets", 1))
    intercepts = np.asarray(ctx.attr("intercepts", []), dtype=np.float32)
    transform = _post_transform(ctx)
    scores = _linear(ctx, b, x, rows, features, targets, intercepts if len(intercepts) == targets else None)
    if targets == 1 and transform != "PROBIT":
        transform = "NONE"
    _transform(b, scores, transform, ctx.output)


@converter("ArrayFeatureExtractor", typed=True,
           limits="constant indices: a view (Slice) or a gather by a constant index table; indices computed "
                  "at run time: a gather (the label of classifiers: classes[argmax]; in a batched model only "
                  "from a constant table)")
def array_feature_extractor(ctx: NodeContext) -> None:
    """``x[..., indices]`` over the last axis (indices flattened; a 1-D x gives [1, n])."""
    b = _Builder(ctx)
    x = ctx.input(0)
    shape = ctx.g.shape(x)
    indices = ctx.const(1)
    count = int(np.prod(ctx.g.shape(ctx.input(1)) if indices is None else np.shape(indices)))
    out_shape = (1, count) if len(shape) == 1 else shape[:-1] + (count,)  # onnxruntime's shape
    axis = len(shape) - 1
    if indices is None:
        if len(shape) == 1 and ctx.g.is_const(x):  # a classifier's label: classes[argmax]
            _lookup(b, x, ctx.input(1), ctx.output, out_shape)
            return
        if ctx.g.batched:
            raise ctx.fail("indices computed at run time need a constant 1-D table (such as a classifier's "
                           "classes) in a batched model; a per-sample table is not supported")
        flat = ctx.emit(ops.Reshape(), [_as_index(b, ctx.input(1))], ctx.temp("flat"), (count,))
        gathered = shape[:-1] + (count,)
        if gathered == out_shape:
            ctx.emit(ops.Gather(axis), [x, flat], shape=out_shape)
        else:
            ctx.chain(x, [(ops.Gather(axis), gathered, "columns", [None, flat]),
                          (ops.Reshape(), out_shape, "extracted")])
        return
    flat = np.asarray(indices).astype(np.int64).reshape(-1)
    dim = shape[axis]
    if flat.size == 0 or flat.min() < 0 or flat.max() >= dim:
        raise ctx.fail(f"indices {flat.tolist()} are outside 0..{dim - 1} (onnxruntime refuses them)")
    gathered = shape[:-1] + (flat.size,)
    steps = np.diff(flat)
    if flat.size == 1 or (np.all(steps == steps[0]) and steps[0] > 0):
        starts, strides = [0] * len(shape), [1] * len(shape)
        starts[axis], strides[axis] = int(flat[0]), int(steps[0]) if flat.size > 1 else 1
        ctx.chain(x, [(ops.Slice(tuple(starts), tuple(strides)), gathered, "columns"),
                      (ops.Reshape(), out_shape, "extracted")])
        return
    table = _int_const(ctx, "indices", flat)
    if gathered == out_shape:
        ctx.emit(ops.Gather(axis), [x, table], shape=out_shape)
        return
    ctx.chain(x, [(ops.Gather(axis), gathered, "columns", [None, table]), (ops.Reshape(), out_shape, "extracted")])


@converter("Normalizer", limits="MAX, L1, L2 over the last axis of a [samples, features] input, in "
                                "onnxruntime's arithmetic (a zero norm leaves the row as it is)")
def normalizer(ctx: NodeContext) -> None:
    b = _Builder(ctx)
    x, rows, features = _samples(ctx)
    norm = ctx.attr("norm", "MAX")
    if norm not in NORMS:
        raise ctx.fail(f"norm {norm!r} is not supported; supported: {', '.join(NORMS)}")
    shape, column = (rows, features), (rows, 1)
    output = ctx.output if ctx.g.shape(ctx.input(0)) == shape else None

    def nonzero_divisor(total: str) -> tuple[str, str]:
        """total, or 1 where it is 0 (onnxruntime then copies the row); and that 0/1 mask."""
        zero = ctx.emit(ops.Compare("eq"), [total, b.const("zero", 0.0)], ctx.temp("is_zero"), column, dtype="bool")
        as_float = ctx.emit(ops.Cast("f32"), [zero], ctx.temp("zero_f32"), column, dtype="f32")
        return b.node(ops.Binary("add"), [total, as_float], column, hint="divisor"), as_float

    if norm in ("MAX", "L1"):
        magnitude = x if norm == "MAX" else b.node(ops.Unary("abs"), [x], shape, hint="abs")
        total = b.node(ops.Reduce("max" if norm == "MAX" else "sum", (1,), True), [magnitude], column, hint="norm")
        divisor, _ = nonzero_divisor(total)
        y = b.node(ops.Binary("div"), [x, divisor], shape, output=output, hint="normalized")
    else:  # sign(x) · sqrt(x² / Σx²), as onnxruntime computes it
        square = b.node(ops.Binary("mul"), [x, x], shape, hint="square")
        total = b.node(ops.Reduce("sum", (1,), True), [square], column, hint="norm")
        divisor, zero = nonzero_divisor(total)
        root = b.node(ops.Unary("sqrt"), [b.node(ops.Binary("div"), [square, divisor], shape, hint="ratio")], shape,
                      hint="root")
        signed = b.node(ops.Binary("mul"), [root, b.node(ops.Unary("sign"), [x], shape, hint="sign")], shape,
                        hint="signed")
        kept = b.node(ops.Binary("mul"), [x, zero], shape, hint="kept")
        y = b.node(ops.Binary("add"), [signed, kept], shape, output=output, hint="normalized")
    if output is None:
        ctx.emit(ops.Reshape(), [y], ctx.output, ctx.g.shape(ctx.input(0)))


@converter("Binarizer", limits="any threshold: 1.0 where x > threshold, else 0.0")
def binarizer(ctx: NodeContext) -> None:
    x = ctx.input(0)
    shape = ctx.g.shape(x)
    threshold = ctx.add_const("threshold", np.float32(ctx.attr("threshold", 0.0)))
    above = ctx.emit(ops.Compare("gt"), [x, threshold], ctx.temp("above"), shape, dtype="bool")
    ctx.emit(ops.Cast("f32"), [above], shape=shape, dtype="f32")


def output_shapes(node, shapes: dict[str, tuple]) -> list[tuple | None]:
    """(shape, ONNX element type) of each output of an ONNX-ML node of this file, as onnxruntime
    computes them, or None; the loader seeds ONNX shape inference with them (it leaves
    ArrayFeatureExtractor, and with some opsets the linear models, without static shapes)."""
    from onnx import TensorProto, helper

    known = [shapes.get(name, (None, 0)) for name in node.input]
    if not known or known[0][0] is None:
        return []
    shape, elem = tuple(known[0][0]), known[0][1]
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    rows = 1 if len(shape) == 1 else shape[0]
    if node.op_type == "ArrayFeatureExtractor" and len(known) > 1 and known[1][0] is not None:
        count = int(np.prod(known[1][0]))
        return [((1, count) if len(shape) == 1 else shape[:-1] + (count,), elem)]
    if node.op_type in ("Normalizer", "Binarizer"):
        return [(shape, TensorProto.FLOAT)]
    if node.op_type == "LinearRegressor":
        return [((rows, int(attrs.get("targets", 1))), TensorProto.FLOAT)]
    if node.op_type == "LinearClassifier":
        classes = len(attrs.get("intercepts", [])) or 1
        labels = attrs.get("classlabels_ints") or attrs.get("classlabels_strings") or []
        columns = 2 if classes == 1 and len(labels) == 2 else classes
        label_type = TensorProto.STRING if attrs.get("classlabels_strings") else TensorProto.INT64
        return [((rows,), label_type), ((rows, columns), TensorProto.FLOAT)]
    return []
