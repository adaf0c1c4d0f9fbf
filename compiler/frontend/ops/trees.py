"""ONNX-ML operators (domain ``ai.onnx.ml``): tree ensembles, Scaler, ZipMap.

A tree ensemble becomes one ``TreeEnsemble`` node (the raw per-target sums over trees, which
analog CAM cores compute) followed by ordinary digital nodes for what onnxruntime does after
the trees: averaging, base values, the post transform, the binary-classifier conventions and
the label. Each step below follows onnxruntime's ``tree_ensemble_aggregator.h`` and
``ml_common.h`` (``write_scores``), so outputs agree with onnxruntime, not only with the spec.

Labels are int64 in ONNX; nmc computes float32 tensors, so a label output holds the integer
label values as float32 (exact below 2^24). Models with string labels are refused, and so are
ensembles reading a double tensor: the program would round it to float32, which moves values
across splits (a model's own Cast to float32 is its rounding, and compiles). Double thresholds
(``*_as_tensor``) with float32 inputs become float32 thresholds that compare the same.
"""
from __future__ import annotations

import numpy as np
from onnx import TensorProto, numpy_helper

from nmc.compiler.frontend.context import NodeContext
from nmc.compiler.frontend.ops import converter
from nmc.compiler.ir import ops

ML_OPS = ("TreeEnsembleClassifier", "TreeEnsembleRegressor", "TreeEnsemble", "Scaler", "ZipMap",
          "LinearClassifier", "LinearRegressor", "ArrayFeatureExtractor", "Normalizer", "Binarizer")  # + ops/ml.py
TRANSFORMS = ("NONE", "SOFTMAX", "LOGISTIC", "SOFTMAX_ZERO", "PROBIT")
AGGREGATES = ("SUM", "AVERAGE", "MIN", "MAX")
# TreeEnsemble (ai.onnx.ml opset 5) numbers its enums. post_transform as onnxruntime reads it
# (its own enum: 1 LOGISTIC, 2 SOFTMAX), which swaps 1 and 2 against the ONNX spec's text
# (1 SOFTMAX, 2 LOGISTIC); nmc follows onnxruntime, and tests/test_trees.py checks it does.
V5_MODES = ("BRANCH_LEQ", "BRANCH_LT", "BRANCH_GTE", "BRANCH_GT", "BRANCH_EQ", "BRANCH_NEQ", "BRANCH_MEMBER")
V5_AGGREGATES = ("AVERAGE", "SUM", "MIN", "MAX")
V5_TRANSFORMS = ("NONE", "LOGISTIC", "SOFTMAX", "SOFTMAX_ZERO", "PROBIT")


# ----------------------------------------------------------------------------- attributes
def _values(ctx: NodeContext, name: str, default=None) -> np.ndarray | None:
    """A float attribute list, or its double ``*_as_tensor`` variant (opset 3)."""
    tensor = ctx.attr(name + "_as_tensor")
    if tensor is not None:
        return numpy_helper.to_array(tensor).astype(np.float64).reshape(-1)
    value = ctx.attr(name, default)
    return None if value is None else np.asarray(value, dtype=np.float32).reshape(-1)


def _float32_threshold(t: np.floating, mode: str) -> np.float32:
    """A float32 threshold that a float32 input compares against exactly as it would against
    the (possibly double) model threshold ``t``."""
    t32 = np.float32(t)
    if float(t32) == float(t):
        return t32
    below = t32 if float(t32) < float(t) else np.nextafter(t32, np.float32(-np.inf))
    above = np.nextafter(below, np.float32(np.inf))
    # x <= t and x > t cut after the largest float32 below t; x < t and x >= t before the next one
    return below if mode in ("BRANCH_LEQ", "BRANCH_GT") else above


def tree_tables(ctx: NodeContext, prefix: str, n_targets: int):
    """The node table, leaf table and roots of an ONNX tree ensemble (see ``ops.TreeEnsemble``)."""
    tree_ids = list(ctx.attr("nodes_treeids", []))
    node_ids = list(ctx.attr("nodes_nodeids", []))
    features = list(ctx.attr("nodes_featureids", []))
    modes = list(ctx.attr("nodes_modes", []))
    true_ids = list(ctx.attr("nodes_truenodeids", []))
    false_ids = list(ctx.attr("nodes_falsenodeids", []))
    missing = list(ctx.attr("nodes_missing_value_tracks_true", [])) or [0] * len(tree_ids)
    values = _values(ctx, "nodes_values")
    n = len(tree_ids)
    if not n or any(len(a) != n for a in (node_ids, features, modes, true_ids, false_ids, missing)) \
            or values is None or len(values) != n:
        raise ctx.fail("the nodes_* attributes must all be present with the same length")
    row = {(t, i): r for r, (t, i) in enumerate(zip(tree_ids, node_ids))}
    if len(row) != n:
        raise ctx.fail("a (tree id, node id) pair appears twice")
    trees = list(dict.fromkeys(tree_ids))
    tree_index = {t: k for k, t in enumerate(trees)}
    table = np.zeros((n, 7), dtype=np.float32)
    children = set()
    for r in range(n):
        mode = modes[r]
        if mode not in ops.NODE_MODES:
            raise ctx.fail(f"node mode {mode!r} is not supported; supported: {', '.join(ops.NODE_MODES)}")
        table[r, 2] = ops.NODE_MODES.index(mode)
        table[r, 6] = tree_index[tree_ids[r]]
        if mode == "LEAF":
            continue
        for column, child in ((3, true_ids[r]), (4, false_ids[r])):
            key = (tree_ids[r], child)
            if key not in row:
                raise ctx.fail(f"tree {tree_ids[r]} node {node_ids[r]} points to missing node {child}")
            table[r, column] = row[key]
            children.add(row[key])
        threshold = _float32_threshold(values[r], mode)
        if mode in ("BRANCH_EQ", "BRANCH_NEQ") and float(threshold) != float(values[r]):
            raise ctx.fail(f"{mode} threshold {values[r]!r} is not a float32 value")
        table[r, 0] = features[r]
        table[r, 1] = threshold
        table[r, 5] = 1.0 if missing[r] else 0.0
    roots = [r for r in range(n) if r not in children]
    if len(roots) != len(trees):
        raise ctx.fail(f"{len(trees)} trees but {len(roots)} nodes that are no node's child")
    roots.sort(key=lambda r: table[r, 6])
    leaves = np.full((n, n_targets), np.nan, dtype=np.float32)
    w_trees = list(ctx.attr(f"{prefix}_treeids", []))
    w_nodes = list(ctx.attr(f"{prefix}_nodeids", []))
    w_ids = list(ctx.attr(f"{prefix}_ids", []))
    weights = _values(ctx, f"{prefix}_weights", [])
    if not len(w_trees) == len(w_nodes) == len(w_ids) == len(weights):
        raise ctx.fail(f"the {prefix}_* attributes must have the same length")
    for t, i, k, w in zip(w_trees, w_nodes, w_ids, weights):
        if (t, i) not in row or not 0 <= k < n_targets:
            raise ctx.fail(f"weight for tree {t} node {i} target {k} names no leaf or target")
        r = row[(t, i)]
        leaves[r, k] = (0.0 if np.isnan(leaves[r, k]) else leaves[r, k]) + np.float32(w)
    return table, leaves, np.asarray(roots, dtype=np.float32), len(trees)


def _tensor_attr(ctx: NodeContext, name: str) -> np.ndarray | None:
    """A tensor attribute (TreeEnsemble's nodes_splits, leaf_weights, ...) as a flat array."""
    value = ctx.attr(name)
    if value is None:
        return None
    return numpy_helper.to_array(value).reshape(-1) if hasattr(value, "data_type") else np.asarray(value).reshape(-1)


def tree_tables_v5(ctx: NodeContext, n_targets: int):
    """The tables of ``tree_tables`` from TreeEnsemble's attributes (ai.onnx.ml opset 5): nodes
    and leaves in separate arrays, children flagged as leaves or nodes, one (target, weight) per
    leaf. Every tree is walked from its root, so a node reached twice gets two rows. A
    BRANCH_MEMBER node becomes a chain of BRANCH_EQ rows, one per member, all sending "true" to
    the node's true child, as onnxruntime does (``TreeEnsembleAttributesV5::convert_to_v3``)."""
    modes = _tensor_attr(ctx, "nodes_modes")
    splits = _tensor_attr(ctx, "nodes_splits")
    features = list(ctx.attr("nodes_featureids", []))
    true_ids, false_ids = list(ctx.attr("nodes_truenodeids", [])), list(ctx.attr("nodes_falsenodeids", []))
    true_leaf, false_leaf = list(ctx.attr("nodes_trueleafs", [])), list(ctx.attr("nodes_falseleafs", []))
    roots = list(ctx.attr("tree_roots", []))
    targets = list(ctx.attr("leaf_targetids", []))
    weights = _tensor_attr(ctx, "leaf_weights")
    n = 0 if modes is None else len(modes)
    if not n or not roots or splits is None or weights is None \
            or any(len(a) != n for a in (splits, features, true_ids, false_ids, true_leaf, false_leaf)):
        raise ctx.fail("nodes_modes, nodes_splits, nodes_featureids, nodes_truenodeids, nodes_trueleafs, "
                       "nodes_falsenodeids, nodes_falseleafs and tree_roots must all be present, the nodes_* of "
                       "one length")
    if len(targets) != len(weights):
        raise ctx.fail("leaf_targetids and leaf_weights must have the same length")
    missing = list(ctx.attr("nodes_missing_value_tracks_true", [])) or [0] * n
    members, values = [], _tensor_attr(ctx, "membership_values")
    values = [] if values is None else values.astype(np.float64).tolist()
    position = 0
    for mode in modes:  # the members of each BRANCH_MEMBER node, in node order, NaN-separated
        if mode >= len(V5_MODES):
            raise ctx.fail(f"node mode {int(mode)} is not supported; supported: "
                           + ", ".join(f"{k} ({m})" for k, m in enumerate(V5_MODES)))
        chunk = []
        if V5_MODES[mode] == "BRANCH_MEMBER":
            while position < len(values) and not np.isnan(values[position]):
                chunk.append(values[position])
                position += 1
            position += 1
            if not chunk:
                raise ctx.fail("a BRANCH_MEMBER node has an empty set in membership_values")
        members.append(chunk)

    rows: list[list[float]] = []
    leaf_rows: list[np.ndarray] = []

    def new_row(tree: int) -> int:
        rows.append([0.0] * 6 + [float(tree)])
        leaf_rows.append(np.full(n_targets, np.nan, np.float32))
        return len(rows) - 1

    def leaf(index: int, tree: int) -> int:
        if not 0 <= index < len(targets) or not 0 <= targets[index] < n_targets:
            raise ctx.fail(f"leaf {index} is no leaf, or names no target of {n_targets}")
        r = new_row(tree)
        leaf_rows[r][targets[index]] = np.float32(weights[index])
        return r

    def branch(r: int, mode: str, feature: int, split, missing_true: int) -> None:
        threshold = _float32_threshold(split, mode)
        if mode in ("BRANCH_EQ", "BRANCH_NEQ") and float(threshold) != float(split):
            raise ctx.fail(f"{mode} value {split!r} is not a float32 value")
        rows[r][:3] = [feature, float(threshold), ops.NODE_MODES.index(mode)]
        rows[r][5] = 1.0 if missing_true else 0.0

    root_rows = []
    for tree, root in enumerate(roots):
        if not 0 <= root < n:
            raise ctx.fail(f"tree root {root} is not a node")
        if true_leaf[root] and false_leaf[root] and true_ids[root] == false_ids[root]:
            root_rows.append(leaf(root, tree))  # onnxruntime reads a one-leaf tree's leaf at the root's index
            continue
        root_rows.append(new_row(tree))
        stack = [(root, root_rows[-1], 0)]
        while stack:
            node, r, depth = stack.pop()
            if depth > n:
                raise ctx.fail(f"tree {tree} has a cycle")
            mode = V5_MODES[modes[node]]
            children = []
            for is_leaf, child in ((true_leaf[node], true_ids[node]), (false_leaf[node], false_ids[node])):
                if is_leaf:
                    children.append(leaf(child, tree))
                else:
                    if not 0 <= child < n:
                        raise ctx.fail(f"node {node} points to node {child}, which does not exist")
                    children.append(new_row(tree))
                    stack.append((child, children[-1], depth + 1))
            chain = [r] + [new_row(tree) for _ in members[node][1:]] if mode == "BRANCH_MEMBER" else [r]
            for k, link in enumerate(chain):
                if mode == "BRANCH_MEMBER":
                    branch(link, "BRANCH_EQ", features[node], members[node][k], missing[node])
                else:
                    branch(link, mode, features[node], splits[node], missing[node])
                rows[link][3] = children[0]
                rows[link][4] = chain[k + 1] if k + 1 < len(chain) else children[1]
    table = np.asarray(rows, dtype=np.float32)
    return table, np.asarray(leaf_rows, dtype=np.float32), np.asarray(root_rows, dtype=np.float32), len(roots)


# ----------------------------------------------------------------------------- emitting helpers
class _Builder:
    """Adds the digital nodes after the trees, each on a fresh temporary tensor."""

    def __init__(self, ctx: NodeContext):
        self.ctx = ctx

    def node(self, op, inputs, shape, output=None, hint="t") -> str:
        return self.ctx.emit(op, [str(i) for i in inputs], output=output or self.ctx.temp(hint), shape=tuple(shape))

    def const(self, hint, value) -> str:
        return self.ctx.add_const(hint, np.asarray(value, dtype=np.float32))

    def columns(self, x: str, start: int, count: int) -> str:
        rows, width = self.ctx.g.shape(x)
        if start == 0 and count == width:
            return x
        return self.node(ops.Slice((0, start), (1, 1)), [x], (rows, count), hint="col")

    def label(self, scores: str, labels: np.ndarray, output: str) -> str:
        """``labels[argmax(scores)]`` (first maximum), for labels in arithmetic progression."""
        rows = self.ctx.g.shape(scores)[0]
        index = self.node(ops.ArgMax(1, False), [scores], (rows,), hint="argmax")
        start = float(labels[0])
        step = float(labels[1] - labels[0]) if len(labels) > 1 else 0.0
        if len(labels) > 1 and not np.array_equal(labels, start + step * np.arange(len(labels))):
            raise self.ctx.fail(f"class labels {labels.tolist()} are not evenly spaced; nmc maps the winning "
                                "index to its label arithmetically")
        if step == 1.0 and start == 0.0:
            return self.node(ops.Binary("add"), [index, self.const("zero", 0.0)], (rows,), output=output)
        scaled = self.node(ops.Binary("mul"), [index, self.const("step", step)], (rows,), hint="scaled")
        return self.node(ops.Binary("add"), [scaled, self.const("start", start)], (rows,), output=output)


def _post_transform(ctx: NodeContext) -> str:
    transform = ctx.attr("post_transform", "NONE")
    if transform not in TRANSFORMS:
        raise ctx.fail(f"post_transform {transform!r} is not supported; supported: {', '.join(TRANSFORMS)}")
    return transform


def _transform(b: _Builder, scores: str, transform: str, output: str | None) -> str:
    shape = b.ctx.g.shape(scores)
    if transform == "SOFTMAX":
        return b.node(ops.Softmax((1,)), [scores], shape, output=output)
    if transform == "LOGISTIC":
        return b.node(ops.Unary("sigmoid"), [scores], shape, output=output)
    if transform == "PROBIT":
        return b.node(ops.Unary("probit"), [scores], shape, output=output)
    if transform == "SOFTMAX_ZERO":
        return _softmax_zero(b, scores, output)
    if output is None:
        return scores
    return b.node(ops.Binary("add"), [scores, b.const("zero", 0.0)], shape, output=output)


def _softmax_zero(b: _Builder, scores: str, output: str | None) -> str:
    """onnxruntime's ``ComputeSoftmaxZero``: scores with |s| <= 1e-7 (float32) stay out of the sum
    and become s · exp(-max), the others exp(s - max); all divided by the sum. The mask is
    clip((|s| - 1e-7) · 1e30, 0, 1), exactly 0 or 1 (the smallest float32 step above 1e-7 times
    1e30 is far above 1), so the masked sum adds the same terms as onnxruntime."""
    rows, n = b.ctx.g.shape(scores)
    shape, column = (rows, n), (rows, 1)
    top = b.node(ops.Reduce("max", (1,), True), [scores], column, hint="max")
    exps = b.node(ops.Unary("exp"), [b.node(ops.Binary("sub"), [scores, top], shape, hint="shifted")], shape,
                  hint="exp")
    above = b.node(ops.Binary("sub"), [b.node(ops.Unary("abs"), [scores], shape, hint="abs"),
                                       b.const("eps", np.float32(1e-7))], shape, hint="above")
    keep = b.node(ops.Clip(0.0, 1.0), [b.node(ops.Binary("mul"), [above, b.const("big", 1e30)], shape, hint="steep")],
                  shape, hint="keep")
    kept = b.node(ops.Binary("mul"), [exps, keep], shape, hint="kept")
    total = b.node(ops.Reduce("sum", (1,), True), [kept], column, hint="sum")
    # s · exp(-max) for the near-zero scores; exp's argument capped so that a very negative max
    # (then no score is near zero) gives 0 · finite rather than 0 · inf
    neg_top = b.node(ops.Clip(-3.0e38, 80.0), [b.node(ops.Unary("neg"), [top], column, hint="negmax")], column,
                     hint="capped")
    small = b.node(ops.Binary("mul"), [scores, b.node(ops.Binary("sub"), [b.const("one", 1.0), keep], shape,
                                                      hint="drop")], shape, hint="small")
    small = b.node(ops.Binary("mul"), [small, b.node(ops.Unary("exp"), [neg_top], column, hint="scale")], shape,
                   hint="scaled")
    both = b.node(ops.Binary("add"), [kept, small], shape, hint="both")
    return b.node(ops.Binary("div"), [both, total], shape, output=output, hint="softmax0")


def _rows(ctx: NodeContext) -> tuple[str, int, int]:
    if ctx.in_elem_type(0) == TensorProto.DOUBLE:
        # a double input reaches the program as float32 (its port), and rounding moves values
        # across splits: 1.2 <= 1.2, but float32(1.2) = 1.2000000477 > 1.2
        raise ctx.fail(f"input {ctx.node.input[0]!r} is double, and nmc's programs take float32 inputs: rounding a "
                       "double to float32 can move it across a split (x = 1.2 at 'x <= 1.2' becomes "
                       "1.2000000477 > 1.2) and silently change the leaf; export the ensemble for float32 "
                       "inputs (float thresholds), or cast its input to float32 in the model")
    x = ctx.input(0)
    shape = ctx.g.shape(x)
    if len(shape) != 2 or shape[0] != 1:
        raise ctx.fail(f"input of shape {list(shape)}: tree ensembles take one sample [1, features] per run "
                       "(export with a free batch dimension)")
    return x, shape[0], shape[1]


def _ensemble(ctx: NodeContext, b: _Builder, x: str, tables, n_targets: int, aggregate: str = "SUM") -> str:
    """The ``TreeEnsemble`` node of ``tables`` (``tree_tables``); its raw per-target scores."""
    table, leaves, roots, n_trees = tables
    features = ctx.g.shape(x)[1]
    used = table[table[:, 2] != 0, 0]
    if used.size and (used.min() < 0 or used.max() >= features):
        raise ctx.fail(f"a node tests feature {int(used.max())} but the input has {features} features")
    return b.node(ops.TreeEnsemble(n_trees, n_targets, "SUM" if aggregate == "AVERAGE" else aggregate),
                  [x, b.const("nodes", table), b.const("leaves", leaves), b.const("roots", roots)],
                  (1, n_targets), hint="scores")


# ----------------------------------------------------------------------------- converters
def _static_scores(ctx: NodeContext, table: np.ndarray, leaves: np.ndarray) -> None:
    """Under SUM / AVERAGE, onnxruntime writes 0 for a target none of the reached leaves has a
    weight for, base value or not; nmc adds base values unconditionally, so it requires every
    tree to weigh a target on all of its leaves or on none."""
    is_leaf = table[:, 2] == 0
    for tree in np.unique(table[:, 6]):
        weighed = ~np.isnan(leaves[is_leaf & (table[:, 6] == tree)])
        if (weighed.any(axis=0) & ~weighed.all(axis=0)).any():
            raise ctx.fail("a tree weighs a target on some leaves only, and base values are given: onnxruntime then "
                           "outputs 0 or the score plus base depending on the leaf reached, which nmc does not model")


def _regression(ctx: NodeContext, b: _Builder, x: str, tables, n_targets: int, aggregate: str, transform: str,
                base: np.ndarray) -> None:
    """What onnxruntime's TreeAggregator{Sum, Average, Min, Max} do after the trees (the
    regressor and TreeEnsemble)."""
    rows = ctx.g.shape(x)[0]
    table, leaves, roots, n_trees = tables
    extreme = aggregate in ("MIN", "MAX")
    if extreme and n_targets > 1 and len(base) == n_targets:
        # onnxruntime: score + base where a reached leaf has a value, else 0; min(w) + b equals
        # min(w + b) in float32 (rounding is monotonic), so the base goes into leaf memory
        leaves = (leaves + base.astype(np.float32).reshape(1, -1)).astype(np.float32)
        base = np.zeros(0, np.float32)
    raw = _ensemble(ctx, b, x, (table, leaves, roots, n_trees), n_targets, aggregate)
    scores = raw
    if aggregate == "AVERAGE":
        scores = b.node(ops.Binary("div"), [scores, b.const("trees", float(n_trees))], (rows, n_targets), hint="avg")
    if n_targets == 1:  # onnxruntime FinalizeScores1: base only if one value; only PROBIT applies
        if len(base) == 1:
            scores = b.node(ops.Binary("add"), [scores, b.const("base", base.reshape(1, 1))], (rows, 1), hint="base")
        _transform(b, scores, "PROBIT" if transform == "PROBIT" else "NONE", ctx.output)
        return
    if len(base) == n_targets:
        _static_scores(ctx, table, leaves)
        scores = b.node(ops.Binary("add"), [scores, b.const("base", base.reshape(1, -1))], (rows, n_targets),
                        hint="base")
    _transform(b, scores, transform, ctx.output)


@converter("TreeEnsembleRegressor", unit="CAM",
           limits="every node mode, missing values, SUM/AVERAGE/MIN/MAX, every post_transform; float32 inputs")
def tree_ensemble_regressor(ctx: NodeContext) -> None:
    b = _Builder(ctx)
    x, _, _ = _rows(ctx)
    n_targets = int(ctx.attr("n_targets", 1))
    aggregate = ctx.attr("aggregate_function", "SUM")
    if aggregate not in AGGREGATES:
        raise ctx.fail(f"aggregate_function {aggregate!r} is not supported; supported: {', '.join(AGGREGATES)}")
    if aggregate in ("MIN", "MAX"):
        weights = list(zip(ctx.attr("target_treeids", []), ctx.attr("target_nodeids", []), ctx.attr("target_ids", [])))
        if len(set(weights)) != len(weights):
            raise ctx.fail(f"a leaf has two weights for one target under {aggregate}: onnxruntime compares them "
                           "one by one, nmc keeps one value per leaf and target")
    base = _values(ctx, "base_values", [])
    _regression(ctx, b, x, tree_tables(ctx, "target", n_targets), n_targets, aggregate, _post_transform(ctx), base)


@converter("TreeEnsemble", unit="CAM",
           limits="every node mode (BRANCH_MEMBER as chains of BRANCH_EQ), aggregates, transforms; float32 inputs")
def tree_ensemble(ctx: NodeContext) -> None:
    """ai.onnx.ml opset 5: a regressor without base values; onnxruntime turns it into the older
    form (BRANCH_MEMBER as chains of BRANCH_EQ) and aggregates it the same way."""
    b = _Builder(ctx)
    x, _, _ = _rows(ctx)
    n_targets = int(ctx.attr("n_targets", 0))
    if n_targets < 1:
        raise ctx.fail("n_targets must be positive")
    aggregate, transform = int(ctx.attr("aggregate_function", 1)), int(ctx.attr("post_transform", 0))
    if not 0 <= aggregate < len(V5_AGGREGATES):
        raise ctx.fail(f"aggregate_function {aggregate} is not supported; supported: "
                       + ", ".join(f"{k} ({a})" for k, a in enumerate(V5_AGGREGATES)))
    if not 0 <= transform < len(V5_TRANSFORMS):
        raise ctx.fail(f"post_transform {transform} is not supported; supported: "
                       + ", ".join(f"{k} ({t})" for k, t in enumerate(V5_TRANSFORMS)))
    _regression(ctx, b, x, tree_tables_v5(ctx, n_targets), n_targets, V5_AGGREGATES[aggregate],
                V5_TRANSFORMS[transform], np.zeros(0, np.float32))


@converter("TreeEnsembleClassifier", integer_outputs=True, unit="CAM",
           limits="integer class labels (as float32), every node mode and post_transform; float32 inputs")
def tree_ensemble_classifier(ctx: NodeContext) -> None:
    b = _Builder(ctx)
    x, rows, _ = _rows(ctx)
    if ctx.attr("classlabels_strings"):
        raise ctx.fail("string class labels are not supported (nmc outputs numbers); export integer labels")
    labels = np.asarray(ctx.attr("classlabels_int64s", []), dtype=np.int64)
    n = len(labels)
    if n < 2:
        raise ctx.fail("a classifier needs at least two class labels")
    transform = _post_transform(ctx)
    base = _values(ctx, "base_values", [])
    base = np.zeros(0, np.float32) if base is None else base
    class_ids = np.asarray(ctx.attr("class_ids", []), dtype=np.int64)
    weights = _values(ctx, "class_weights", [])
    raw = _ensemble(ctx, b, x, tree_tables(ctx, "class", n), n)
    label_out = ctx.node.output[0] if len(ctx.node.output) > 0 and ctx.node.output[0] else None
    prob_out = ctx.node.output[1] if len(ctx.node.output) > 1 and ctx.node.output[1] else None
    # has_score: onnxruntime tracks per sample whether a reached leaf had a weight for the class;
    # here it is decided per model (a class has a score when any leaf has a weight for it), which
    # is the same whenever every leaf of a tree carries the weights of the classes it carries.
    has = np.zeros(n, dtype=bool)
    has[np.unique(class_ids)] = True
    if n > 2:
        scores = raw
        if len(base):
            padded = np.zeros(n, np.float32)
            padded[: len(base)] = base[:n]
            has[: len(base)] = True
            scores = b.node(ops.Binary("add"), [raw, b.const("base", padded.reshape(1, -1))], (rows, n), hint="base")
        if label_out:
            ranked = scores
            if not has.all():
                mask = np.where(has, 0.0, -np.inf).astype(np.float32).reshape(1, -1)
                ranked = b.node(ops.Binary("add"), [scores, b.const("mask", mask)], (rows, n), hint="ranked")
            b.label(ranked, labels, label_out)
        if prob_out:
            _transform(b, scores, transform, prob_out)
        return
    # ---- two classes: onnxruntime's binary conventions
    binary_case = len(set(class_ids.tolist())) == 1
    all_positive = bool(np.all(weights >= 0))
    s0, s1 = _Lazy(b, raw, 0), _Lazy(b, raw, 1)
    write_second = -1
    single = False
    if len(base) == 2:
        if has[1]:
            s1 = b.node(ops.Binary("add"), [s0, b.const("base1", base[1].reshape(1, 1))], (rows, 1), hint="s1")
            s0 = b.node(ops.Unary("neg"), [s1], (rows, 1), hint="s0")
        else:  # onnxruntime adds base[1] but class 1 keeps has_score = 0, so it is written as 0
            s0 = b.node(ops.Binary("add"), [s0, b.const("base0", base[0].reshape(1, 1))], (rows, 1), hint="s0")
    elif len(base) == 1:
        s0 = b.node(ops.Binary("add"), [s0, b.const("base0", base[0].reshape(1, 1))], (rows, 1), hint="s0")
        single = not has[1]
    elif len(base) == 0:
        write_second = 3
        single = not has[1]
    else:
        single = False
    # the label: _set_score_binary
    positive = s1 if has[1] else s0
    if binary_case:
        threshold = 0.5 if all_positive else 0.0
        write_second = (0 if all_positive else 2)  # 0/1 and 2/3 write the same scores
        negative_label, positive_label = labels[0], labels[1]
    else:
        threshold = 0.0
        negative_label, positive_label = 0, 1
    if label_out:
        pair = b.node(ops.Concat(1), [b.const("threshold", [[threshold]]), positive], (rows, 2), hint="vs")
        b.label(pair, np.asarray([negative_label, positive_label]), label_out)
    if not prob_out:
        return
    if not single:
        both = raw if isinstance(s0, _Lazy) and isinstance(s1, _Lazy) else \
            b.node(ops.Concat(1), [str(s0), str(s1)], (rows, 2), hint="scores")
        _transform(b, both, transform, prob_out)
        return
    if transform == "PROBIT" or write_second < 0:
        raise ctx.fail("a binary classifier whose onnxruntime output leaves the second probability unwritten "
                       f"(post_transform {transform}, one class with weights, not a binary case) is not supported")
    if write_second in (0, 1):
        first = b.node(ops.Binary("sub"), [b.const("one", [[1.0]]), s0], (rows, 1), hint="neg")
        second = s0
    elif transform == "LOGISTIC":
        minus = b.node(ops.Unary("neg"), [s0], (rows, 1), hint="minus")
        first = b.node(ops.Unary("sigmoid"), [minus], (rows, 1), hint="p0")
        second = b.node(ops.Unary("sigmoid"), [s0], (rows, 1), hint="p1")
    else:
        first = b.node(ops.Unary("neg"), [s0], (rows, 1), hint="neg")
        second = s0
    b.node(ops.Concat(1), [first, second], (rows, 2), output=prob_out)


class _Lazy:
    """Column ``index`` of ``raw``, sliced out only when a node reads it (``str()``)."""

    def __init__(self, b: _Builder, raw: str, index: int):
        self.b, self.raw, self.index, self.name = b, raw, index, None

    def __str__(self) -> str:
        if self.name is None:
            self.name = self.b.columns(self.raw, self.index, 1)
        return self.name


@converter("Scaler", limits="any offset and scale")
def scaler(ctx: NodeContext) -> None:
    """``y = (x − offset) · scale`` on a vector unit."""
    b = _Builder(ctx)
    x = ctx.input(0)
    shape = ctx.g.shape(x)
    offset = np.asarray(ctx.attr("offset", [0.0]), dtype=np.float32)
    scale = np.asarray(ctx.attr("scale", [1.0]), dtype=np.float32)
    shifted = b.node(ops.Binary("sub"), [x, b.const("offset", offset)], shape, hint="shifted")
    b.node(ops.Binary("mul"), [shifted, b.const("scale", scale)], shape, output=ctx.output)


@converter("ZipMap", limits="the probability matrix itself, columns in label order (no sequence of maps)")
def zipmap(ctx: NodeContext) -> None:
    """ONNX returns a sequence of maps {label: probability}; nmc returns the probability matrix
    itself, its columns in the order of the classifier's labels."""
    ctx.alias(ctx.output, ctx.input(0))
