"""Tree ensembles on analog CAM: agreement with onnxruntime, mapping, device errors, ISA, and
element types at the splits (double inputs refused, double thresholds exact for float32 inputs)."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from nmc.compiler.driver import compile_model
from nmc.compiler.errors import CompileError
from nmc.isa.asm import format_program, parse_program
from nmc.isa.errors import ProgramError
from nmc.isa.validate import validate
from nmc.runtime.cam import ProgrammedCam
from nmc.runtime.crossbar import SimOptions
from nmc.runtime.machine import execute

skl2onnx = pytest.importorskip("skl2onnx")
datasets = pytest.importorskip("sklearn.datasets")
ensemble = pytest.importorskip("sklearn.ensemble")

LOSSLESS = {"cam-mapping": "lossless=true"}
EXACT = SimOptions(noise=False)


def _ort(model: onnx.ModelProto, x: np.ndarray) -> list[np.ndarray]:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"X": x})


def _data(name: str):
    x, y = getattr(datasets, f"load_{name}")(return_X_y=True)
    return x.astype(np.float32), y


def _sklearn(kind: str):
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    e = ensemble
    table = {
        "rf-cancer": (e.RandomForestClassifier(20, max_depth=6, random_state=0), "breast_cancer"),
        "gb-cancer": (e.GradientBoostingClassifier(n_estimators=20, max_depth=3, random_state=0), "breast_cancer"),
        "rf-iris": (e.RandomForestClassifier(10, max_depth=4, random_state=0), "iris"),
        "gb-iris": (e.GradientBoostingClassifier(n_estimators=10, max_depth=2, random_state=0), "iris"),
        "et-wine": (e.ExtraTreesClassifier(10, max_depth=5, random_state=0), "wine"),
        "rf-diabetes": (e.RandomForestRegressor(10, max_depth=5, random_state=0), "diabetes"),
        "gb-diabetes": (e.GradientBoostingRegressor(n_estimators=20, max_depth=3, random_state=0), "diabetes"),
        "scaled-rf-wine": (make_pipeline(StandardScaler(), e.RandomForestClassifier(10, max_depth=4, random_state=0)),
                           "wine"),
    }
    model, data = table[kind]
    x, y = _data(data)
    model.fit(x, y)
    classifier = hasattr(model, "predict_proba")
    options = {id(model): {"zipmap": False}} if classifier else None
    onx = skl2onnx.to_onnx(model, x[:1], options=options, target_opset={"": 17, "ai.onnx.ml": 3})
    return onx, x


MODELS = ["rf-cancer", "gb-cancer", "rf-iris", "gb-iris", "et-wine", "rf-diabetes", "gb-diabetes", "scaled-rf-wine"]


@pytest.fixture(scope="module")
def compiled():
    cache = {}

    def get(kind: str, options=None):
        key = (kind, str(options))
        if key not in cache:
            onx, x = _sklearn(kind)
            cache[key] = (onx, x, compile_model(onx, "acam", pass_options=options))
        return cache[key]

    return get


def _cam(c):
    return next(m.cam for m in c.graph.mapping.values() if m.unit == "cam")


@pytest.mark.parametrize("kind", MODELS)
def test_lossless_noiseless_equals_onnxruntime(compiled, kind):
    onx, x, c = compiled(kind, LOSSLESS)
    ref = _ort(onx, x)
    out = execute(c.program, {"X": x}, options=EXACT)
    names = [o.name for o in onx.graph.output]
    for name, expected in zip(names, ref):
        got = out[name]
        if expected.dtype == np.int64:  # labels: identical on every sample
            np.testing.assert_array_equal(got.astype(np.int64), expected.reshape(got.shape))
        else:
            np.testing.assert_allclose(got, expected.reshape(got.shape), rtol=1e-5, atol=1e-5 * max(1, np.abs(expected).max()))
    cam = _cam(c)
    assert cam.lossless and not cam.warnings
    assert cam.rows == cam.paths  # only LEQ splits: no union needs a second row
    assert cam.cores == len(cam.blocks) * cam.blocks[0].chained
    assert cam.arrays == 2 * cam.cores and 0 < cam.utilization <= 1


def test_mapping_counts(compiled):
    onx, x, c = compiled("rf-cancer", LOSSLESS)
    cam = _cam(c)
    leaves = sum(1 for n in onx.graph.node[0].attribute if n.name == "nodes_modes" for m in n.strings if m == b"LEAF")
    assert cam.paths == leaves
    assert sum(b.rows for b in cam.blocks) == cam.rows
    assert all(b.rows <= 256 for b in cam.blocks)
    assert cam.columns == sum(code.cells for code in cam.codes)


def test_cell_cap_merges_thresholds_and_says_so(compiled):
    onx, x, c = compiled("gb-diabetes", {"cam-mapping": "max_cells=1"})
    cam = _cam(c)
    assert not cam.lossless and cam.warnings
    assert all(code.levels <= 16 for code in cam.codes)
    assert "merged" in cam.warnings[0]
    ref = _ort(onx, x)[0].reshape(-1)
    got = execute(c.program, {"X": x}, options=EXACT)["variable"].reshape(-1)
    # merging moves decisions: the values change, but stay close to the model's
    assert not np.allclose(got, ref)
    assert np.corrcoef(got, ref)[0, 1] > 0.9


def test_device_noise_changes_some_decisions(compiled):
    onx, x, c = compiled("rf-cancer")   # the chip's own coding (2 cells of 4 bits)
    exact = execute(c.program, {"X": x}, options=EXACT)
    noisy = execute(c.program, {"X": x}, options=SimOptions(noise=True, seed=1))
    changed = np.mean(np.abs(noisy["probabilities"] - exact["probabilities"]).max(axis=1) > 1e-6)
    agree = np.mean(noisy["label"] == exact["label"])
    assert changed > 0 and agree > 0.5
    again = execute(c.program, {"X": x}, options=SimOptions(noise=True, seed=1))
    np.testing.assert_array_equal(again["probabilities"], noisy["probabilities"])


def test_target_without_cam_is_an_error():
    onx, _ = _sklearn("rf-iris")
    with pytest.raises(CompileError, match="analog CAM cores.*'ideal' has none"):
        compile_model(onx, "ideal")


def test_program_round_trip_and_timing(compiled):
    from nmc.runtime.timing import estimate

    _, x, c = compiled("rf-iris", LOSSLESS)
    text = format_program(c.program)
    assert "csearch" in text and "cleaf" in text and "cenc" in text
    assert format_program(parse_program(text)) == text
    stats = estimate(c.program, c.target)
    assert stats.energy_pj["cam_search"] > 0 and stats.energy_pj["cam_leaf"] > 0
    assert stats.latency_cycles > c.target.cam.search_cycles


def test_validator_checks_cam_operands(compiled):
    import dataclasses

    from nmc.isa.instructions import Instr
    from nmc.isa.views import Imm

    _, _, c = compiled("rf-iris", LOSSLESS)
    p = c.program
    core = next(k for k, s in p.cores.items() if any(getattr(i, "opcode", "") == "csearch" for i in s))
    stream = list(p.cores[core])
    i = next(k for k, s in enumerate(stream) if s.opcode == "csearch")
    bad = Instr("csearch", stream[i].operands[:5] + (Imm(0.5),), stream[i].layer)
    p2 = dataclasses.replace(p, cores={**p.cores, core: tuple(stream[:i] + [bad] + stream[i + 1:])})
    with pytest.raises(ProgramError, match="whole number of cells"):
        validate(p2)


# ----------------------------------------------------------------------------- CAM search
def test_search_tables_equal_plain_comparison():
    rng = np.random.default_rng(0)
    levels = np.array([9, 17, 5, 33])
    lo = np.stack([rng.integers(0, lv, 300) for lv in levels], axis=1)
    hi = np.stack([rng.integers(0, lv + 1, 300) for lv in levels], axis=1)
    lo[::7] = 0
    hi[::7] = levels  # wildcard rows
    codes = np.stack([rng.integers(0, lv, 500) for lv in levels], axis=1)
    cam = ProgrammedCam(lo, hi, levels)
    np.testing.assert_array_equal(cam.search(codes), cam.search_reference(codes))
    noisy = ProgrammedCam(lo, hi, levels, sigma_levels=lambda v: np.full(v.shape, 0.7), rng=rng)
    np.testing.assert_array_equal(noisy.search(codes), noisy.search_reference(codes))
    assert (noisy.search(codes) != cam.search(codes)).any()


# ----------------------------------------------------------------------------- hand-made ensembles
def _regressor(modes, values, missing, aggregate="SUM", transform="NONE", base=None, n_targets=1):
    """Two trees on two features: tree 0 a three-node split with ``modes[0..1]``, tree 1 one split."""
    attrs = dict(
        nodes_treeids=[0, 0, 0, 0, 0, 1, 1, 1], nodes_nodeids=[0, 1, 2, 3, 4, 0, 1, 2],
        nodes_featureids=[0, 1, 0, 0, 0, 1, 0, 0], nodes_modes=[modes[0], modes[1], "LEAF", "LEAF", "LEAF",
                                                                 modes[2], "LEAF", "LEAF"],
        nodes_values=[values[0], values[1], 0, 0, 0, values[2], 0, 0],
        nodes_truenodeids=[1, 2, 0, 0, 0, 1, 0, 0], nodes_falsenodeids=[4, 3, 0, 0, 0, 2, 0, 0],
        nodes_missing_value_tracks_true=[missing[0], missing[1], 0, 0, 0, missing[2], 0, 0],
        target_treeids=[0, 0, 0, 1, 1] + ([1, 1] if n_targets > 1 else []),
        target_nodeids=[2, 3, 4, 1, 2] + ([1, 2] if n_targets > 1 else []),
        target_ids=[0, 0, 0, 0, 0] + ([1, 1] if n_targets > 1 else []),
        target_weights=[1.0, 2.0, 4.0, 8.0, 16.0] + ([0.5, -3.0] if n_targets > 1 else []),
        n_targets=n_targets, aggregate_function=aggregate, post_transform=transform)
    if base is not None:
        attrs["base_values"] = base
    node = helper.make_node("TreeEnsembleRegressor", ["X"], ["Y"], domain="ai.onnx.ml", **attrs)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, 2])],
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [None, n_targets])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 3)])


def _probe_inputs():
    grid = np.array([-1.0, 0.0, 0.25, 0.5, 0.75, 1.0, 2.0, np.nan], dtype=np.float32)
    return np.array([[a, b] for a in grid for b in grid], dtype=np.float32)


@pytest.mark.parametrize("modes,missing", [
    (("BRANCH_LEQ", "BRANCH_LT", "BRANCH_GTE"), (0, 0, 0)),
    (("BRANCH_GT", "BRANCH_GTE", "BRANCH_LT"), (1, 0, 1)),
    (("BRANCH_EQ", "BRANCH_NEQ", "BRANCH_LEQ"), (0, 1, 0)),
    (("BRANCH_NEQ", "BRANCH_EQ", "BRANCH_NEQ"), (1, 1, 0)),
    (("BRANCH_LEQ", "BRANCH_LEQ", "BRANCH_LEQ"), (1, 1, 1)),
])
def test_node_modes_and_missing_values(modes, missing):
    model = _regressor(modes, [0.5, 0.25, 0.75], missing)
    x = _probe_inputs()
    c = compile_model(model, "acam", pass_options=LOSSLESS)
    got = execute(c.program, {"X": x}, options=EXACT)["Y"]
    np.testing.assert_allclose(got, _ort(model, x)[0], rtol=1e-6)
    cam = _cam(c)
    if any(m == "BRANCH_NEQ" for m in modes) or any(missing):
        assert cam.rows >= cam.paths  # unions may take a second row


@pytest.mark.parametrize("aggregate,transform,base,n_targets", [
    ("AVERAGE", "NONE", [3.0], 1), ("SUM", "PROBIT", None, 1), ("SUM", "LOGISTIC", [0.5], 1),
    ("SUM", "SOFTMAX", [0.1, -0.2], 2), ("AVERAGE", "LOGISTIC", None, 2), ("SUM", "PROBIT", [0.0, 0.0], 2),
])
def test_aggregates_base_values_and_transforms(aggregate, transform, base, n_targets):
    model = _regressor(("BRANCH_LEQ", "BRANCH_LEQ", "BRANCH_LEQ"), [0.5, 0.25, 0.75], (0, 0, 0),
                       aggregate, transform, base, n_targets)
    x = _probe_inputs()
    x = x[~np.isnan(x).any(axis=1)]
    if transform == "PROBIT":  # probit needs scores in (0, 1): scale the weights down
        for a in model.graph.node[0].attribute:
            if a.name == "target_weights":
                a.floats[:] = [w / 40 for w in a.floats]
    c = compile_model(model, "acam", pass_options=LOSSLESS)
    got = execute(c.program, {"X": x}, options=EXACT)["Y"]
    np.testing.assert_allclose(got, _ort(model, x)[0], rtol=1e-5, atol=1e-6)


def _binary_classifier(class_ids, weights, base, transform):
    attrs = dict(
        nodes_treeids=[0, 0, 0], nodes_nodeids=[0, 1, 2], nodes_featureids=[0, 0, 0],
        nodes_modes=["BRANCH_LEQ", "LEAF", "LEAF"], nodes_values=[0.5, 0, 0],
        nodes_truenodeids=[1, 0, 0], nodes_falsenodeids=[2, 0, 0],
        class_treeids=[0] * len(class_ids), class_nodeids=[1, 2, 1, 2][: len(class_ids)], class_ids=class_ids,
        class_weights=weights, classlabels_int64s=[3, 7], post_transform=transform)
    if base is not None:
        attrs["base_values"] = base
    node = helper.make_node("TreeEnsembleClassifier", ["X"], ["label", "prob"], domain="ai.onnx.ml", **attrs)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, 2])],
                              [helper.make_tensor_value_info("label", TensorProto.INT64, [None]),
                               helper.make_tensor_value_info("prob", TensorProto.FLOAT, [None, 2])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 1)])


@pytest.mark.parametrize("class_ids,weights,base,transform", [
    ([0, 0], [0.3, 0.8], None, "NONE"),            # binary case, positive weights: [1 - s, s]
    ([1, 1], [0.3, 0.8], None, "NONE"),
    ([0, 0], [-0.4, 0.9], [0.1], "LOGISTIC"),     # binary case, mixed weights: logistic(∓s)
    ([0, 0], [-0.4, 0.9], [0.2], "NONE"),          # [-s, s]
    ([0, 1, 1, 0], [0.3, 0.8, 0.7, 0.2], None, "NONE"),   # two classes with weights: as multi-class
    ([0, 1, 1, 0], [0.3, -0.8, 0.7, 0.2], [0.1, 0.4], "SOFTMAX"),
    ([0, 0], [0.3, 0.8], [0.1, 0.2], "LOGISTIC"),
    ([0, 1, 1, 0], [0.3, 0.0, 0.7, 0.0], None, "SOFTMAX_ZERO"),   # a zero score stays out of the softmax
])
def test_binary_classifier_conventions(class_ids, weights, base, transform):
    model = _binary_classifier(class_ids, weights, base, transform)
    x = np.array([[0.0, 0], [0.5, 0], [0.6, 1], [2.0, 0]], dtype=np.float32)
    c = compile_model(model, "acam", pass_options=LOSSLESS)
    out = execute(c.program, {"X": x}, options=EXACT)
    label, prob = _ort(model, x)
    np.testing.assert_array_equal(out["label"].astype(np.int64), label)
    np.testing.assert_allclose(out["prob"], prob, rtol=1e-6, atol=1e-7)


def test_zipmap_pipeline_returns_the_probability_matrix():
    x, y = _data("iris")
    model = ensemble.RandomForestClassifier(5, max_depth=3, random_state=0).fit(x, y)
    onx = skl2onnx.to_onnx(model, x[:1])  # with ZipMap
    c = compile_model(onx, "acam", pass_options=LOSSLESS)
    out = execute(c.program, {"X": x}, options=EXACT)
    probabilities = ort.InferenceSession(onx.SerializeToString()).run(None, {"X": x})[1]
    expected = np.array([[row[k] for k in sorted(row)] for row in probabilities], dtype=np.float32)
    np.testing.assert_allclose(out["output_probability"], expected, atol=1e-6)


def test_block_without_the_top_level_still_knows_its_levels():
    """A block of rows none of which reaches a feature's top code (its open bound) must not take
    its largest bound for the feature's levels: codes above it would match the last range."""
    lo = np.array([[0], [2]])
    hi = np.array([[2], [3]])  # levels 5: codes 3 and 4 match no row
    codes = np.arange(5).reshape(-1, 1)
    cam = ProgrammedCam(lo, hi, np.array([5]))
    np.testing.assert_array_equal(cam.search(codes), cam.search_reference(codes))
    assert not cam.search(codes)[3:].any()


# ----------------------------------------------------------------------------- TreeEnsemble (ai.onnx.ml 5)
def _tree_ensemble_v5(aggregate=1, transform=0, n_targets=3, members=(1.0, 3.0, 40.0)):
    """Two trees on two features. Tree 0: f0 ∈ members (NaN: true) → [f1 <= 0.5 → leaf 0 | leaf 1],
    else leaf 2. Tree 1: f1 > 0.25 → leaf 3, else [f0 != 2 (NaN: true) → leaf 4 | leaf 5]."""
    def tensor(name, kind, values):
        return helper.make_tensor(name, kind, (len(values),), values)

    node = helper.make_node(
        "TreeEnsemble", ["X"], ["Y"], domain="ai.onnx.ml", n_targets=n_targets, aggregate_function=aggregate,
        post_transform=transform, tree_roots=[0, 2],
        nodes_modes=tensor("modes", TensorProto.UINT8, [6, 0, 3, 5]), nodes_featureids=[0, 1, 1, 0],
        nodes_splits=tensor("splits", TensorProto.FLOAT, [0.0, 0.5, 0.25, 2.0]),
        nodes_truenodeids=[1, 0, 3, 4], nodes_trueleafs=[0, 1, 1, 1],
        nodes_falsenodeids=[2, 1, 3, 5], nodes_falseleafs=[1, 1, 0, 1],
        nodes_missing_value_tracks_true=[1, 0, 0, 1],
        membership_values=tensor("members", TensorProto.FLOAT, list(members) + [np.nan]),
        leaf_targetids=[0, 1, 2, 0, 1, 1] if n_targets > 1 else [0] * 6,
        leaf_weights=tensor("weights", TensorProto.FLOAT, [1.5, -2.0, 0.25, 3.0, -0.5, 0.0]))
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, 2])],
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [None, n_targets])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21), helper.make_opsetid("ai.onnx.ml", 5)])


def _member_probes():
    grid = np.array([-1.0, 0.0, 0.25, 0.5, 1.0, 2.0, 3.0, 40.0, np.nan], dtype=np.float32)
    return np.array([[a, b] for a in grid for b in grid], dtype=np.float32)


@pytest.mark.parametrize("aggregate", [0, 1, 2, 3])      # AVERAGE, SUM, MIN, MAX
@pytest.mark.parametrize("transform", [0, 1, 2, 3, 4])   # as onnxruntime numbers them: NONE, LOGISTIC, SOFTMAX, ...
@pytest.mark.parametrize("n_targets", [3, 1])
def test_tree_ensemble_v5_equals_onnxruntime(aggregate, transform, n_targets):
    """Set membership, NEQ, missing values, every aggregate and post transform; with three
    targets each leaf weighs one, so per sample some targets have no score (0 under MIN/MAX)."""
    model = _tree_ensemble_v5(aggregate, transform, n_targets)
    x = _member_probes()
    c = compile_model(model, "acam", pass_options=LOSSLESS)
    got = execute(c.program, {"X": x}, options=EXACT)["Y"]
    np.testing.assert_allclose(got, _ort(model, x)[0], rtol=1e-5, atol=1e-6)
    cam = _cam(c)
    assert cam.rows > cam.paths   # the member set {1, 3, 40} and NEQ: unions of ranges, extra rows


def test_tree_ensemble_v5_onnx_node_case_set_membership():
    """ONNX's own node test (test_ai_onnx_ml_tree_ensemble_set_membership), with a free batch
    dimension: nmc runs tree ensembles on one sample per run."""
    import warnings

    from onnx.backend.test.case.node import collect_testcases

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the case generators divide by zero on purpose
        case = next(c for c in collect_testcases("TreeEnsemble") if c.name.endswith("set_membership"))
    (x,), (expected,) = case.data_sets[0]
    node = case.model.graph.node[0]
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, 1])],
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [None, 4])])
    model = helper.make_model(graph, opset_imports=list(case.model.opset_import))
    c = compile_model(model, "acam", pass_options=LOSSLESS)
    got = execute(c.program, {"X": x}, options=EXACT)["Y"]
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    np.testing.assert_allclose(got, _ort(model, x)[0], rtol=1e-6)


def test_tree_ensemble_v5_min_max_with_device_noise_runs():
    """MIN/MAX under bound variability: a tree may match no row or several; the result stays
    finite (no FLT_MAX leaks out) and mostly equals the noiseless one."""
    model = _tree_ensemble_v5(aggregate=2, n_targets=3)
    x = _member_probes()
    c = compile_model(model, "acam")
    exact = execute(c.program, {"X": x}, options=EXACT)["Y"]
    noisy = execute(c.program, {"X": x}, options=SimOptions(noise=True, seed=3))["Y"]
    assert np.isfinite(noisy).all() and np.abs(noisy).max() <= np.abs(exact).max() + 1e-6
    assert "cleafmin" in format_program(c.program)


@pytest.mark.parametrize("aggregate,base", [("MIN", None), ("MAX", [0.5, -1.0]), ("MIN", [2.0, 1.0])])
def test_regressor_min_max_equals_onnxruntime(aggregate, base):
    """The older regressor's MIN/MAX, with base values (added to leaf memory for two targets)."""
    model = _regressor(("BRANCH_LEQ", "BRANCH_NEQ", "BRANCH_GT"), [0.5, 0.25, 0.75], (0, 1, 0),
                       aggregate, "NONE", base, n_targets=2)
    x = _probe_inputs()
    c = compile_model(model, "acam", pass_options=LOSSLESS)
    got = execute(c.program, {"X": x}, options=EXACT)["Y"]
    np.testing.assert_allclose(got, _ort(model, x)[0], rtol=1e-6)


def test_softmax_zero_leaves_zero_scores_out():
    """SOFTMAX_ZERO on a three-class forest whose class 2 has no leaf weight on some paths: those
    zeros stay 0 and the others share the probability."""
    model = _tree_ensemble_v5(aggregate=1, transform=3, n_targets=3)
    x = _member_probes()
    c = compile_model(model, "acam", pass_options=LOSSLESS)
    got = execute(c.program, {"X": x}, options=EXACT)["Y"]
    ref = _ort(model, x)[0]
    assert (ref == 0).any() and ((ref > 0) & (ref < 1)).any()
    np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-7)


# ----------------------------------------------------------------------------- element types at the splits
def _single_tree_case():
    """ONNX's node test test_ai_onnx_ml_tree_ensemble_single_tree: double X [3, 2] and double
    splits (3.14, 1.2, 4.2; all ``<=``); its first sample sits exactly on the split ``x <= 1.2``."""
    import warnings

    from onnx.backend.test.case.node import collect_testcases

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the case generators divide by zero on purpose
        case = next(c for c in collect_testcases("TreeEnsemble") if c.name.endswith("single_tree"))
    (x,), (expected,) = case.data_sets[0]
    return case.model, x, expected


def _with_batch(nodes, x_type, y_type, opsets, features=2, targets=2):
    """``nodes`` from X [batch, features] to Y [batch, targets]: nmc runs trees one sample per run."""
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("X", x_type, [None, features])],
                              [helper.make_tensor_value_info("Y", y_type, [None, targets])])
    return helper.make_model(graph, opset_imports=list(opsets))


@pytest.mark.parametrize("target", ["acam", "ideal"])
def test_single_tree_double_input_is_refused_not_rounded(target):
    """float32(1.2) = 1.2000000477 > 1.2: a float32 program would answer −12.23 where the model
    says 5.23. nmc refuses double tree inputs, naming the node, on every target."""
    model, x, expected = _single_tree_case()
    model = _with_batch([model.graph.node[0]], TensorProto.DOUBLE, TensorProto.DOUBLE, model.opset_import)
    np.testing.assert_allclose(_ort(model, x)[0], expected)
    assert x[0, 0] == 1.2 and expected[0, 0] == 5.23
    with pytest.raises(CompileError, match=r"node 'TreeEnsemble_0' \(TreeEnsemble.*input 'X' is double.*float32"):
        compile_model(model, target)


@pytest.mark.parametrize("target", ["acam", "ideal"])
def test_single_tree_in_float32_at_the_split(target):
    """The same tree with float32 splits, weights and input: x = 1.2 meets ``x <= 1.2`` in the
    same precision and takes the true branch (5.23) on acam; ideal has no CAM and says so."""
    model, x, expected = _single_tree_case()
    node = onnx.NodeProto()
    node.CopyFrom(model.graph.node[0])
    for attribute in node.attribute:
        if attribute.type == onnx.AttributeProto.TENSOR and attribute.t.data_type == TensorProto.DOUBLE:
            attribute.t.CopyFrom(onnx.numpy_helper.from_array(
                onnx.numpy_helper.to_array(attribute.t).astype(np.float32), attribute.t.name))
    model = _with_batch([node], TensorProto.FLOAT, TensorProto.FLOAT, model.opset_import)
    x = x.astype(np.float32)
    if target == "ideal":
        with pytest.raises(CompileError, match="analog CAM cores.*'ideal' has none"):
            compile_model(model, target)
        return
    got = execute(compile_model(model, target, pass_options=LOSSLESS).program, {"X": x}, options=EXACT)["Y"]
    np.testing.assert_array_equal(got, _ort(model, x)[0])
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    assert got[0, 0] == np.float32(5.23)


ML3 = [helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 3)]


def _double_regressor():
    """TreeEnsembleRegressor (ai.onnx.ml 3) on a double input with double thresholds: ``x0 <= t0``
    → leaf 5.23, else ``x1 < t1`` → −12.23 | 7.21."""
    def double(name, values):
        return helper.make_tensor(name, TensorProto.DOUBLE, [len(values)], list(values))

    return helper.make_node(
        "TreeEnsembleRegressor", ["X"], ["Y"], domain="ai.onnx.ml", n_targets=1,
        nodes_treeids=[0] * 5, nodes_nodeids=[0, 1, 2, 3, 4], nodes_featureids=[0, 0, 1, 0, 0],
        nodes_modes=["BRANCH_LEQ", "LEAF", "BRANCH_LT", "LEAF", "LEAF"],
        nodes_values_as_tensor=double("splits", [1.2, 0, 3.14, 0, 0]),
        nodes_truenodeids=[1, 0, 3, 0, 0], nodes_falsenodeids=[2, 0, 4, 0, 0],
        target_treeids=[0, 0, 0], target_nodeids=[1, 3, 4], target_ids=[0, 0, 0],
        target_weights_as_tensor=double("weights", [5.23, -12.23, 7.21]))


def test_double_inputs_exactly_at_thresholds_are_refused():
    """onnxruntime compares double inputs with double thresholds; inputs exactly at them give
    its answer only in double, so nmc refuses rather than round them."""
    model = _with_batch([_double_regressor()], TensorProto.DOUBLE, TensorProto.FLOAT, ML3, targets=1)
    x = np.array([[1.2, 0.0], [2.0, 3.14], [2.0, 3.0]])
    rounded = x.astype(np.float32).astype(np.float64)
    assert (_ort(model, x)[0] != _ort(model, rounded)[0]).any()   # rounding changes leaves
    with pytest.raises(CompileError, match=r"\(TreeEnsembleRegressor.*input 'X' is double"):
        compile_model(model, "acam")


def test_a_cast_to_float32_in_the_model_is_its_own_rounding():
    """Double X, Cast to float in the model, float thresholds: onnxruntime rounds where the model
    says, as nmc's float32 port does, so the program computes the model's answer."""
    node = helper.make_node(
        "TreeEnsembleRegressor", ["Xf"], ["Y"], domain="ai.onnx.ml", n_targets=1,
        nodes_treeids=[0, 0, 0], nodes_nodeids=[0, 1, 2], nodes_featureids=[0, 0, 0],
        nodes_modes=["BRANCH_LEQ", "LEAF", "LEAF"], nodes_values=[1.2, 0, 0],
        nodes_truenodeids=[1, 0, 0], nodes_falsenodeids=[2, 0, 0],
        target_treeids=[0, 0], target_nodeids=[1, 2], target_ids=[0, 0], target_weights=[5.23, -12.23])
    cast = helper.make_node("Cast", ["X"], ["Xf"], to=TensorProto.FLOAT)
    model = _with_batch([cast, node], TensorProto.DOUBLE, TensorProto.FLOAT, ML3, features=1, targets=1)
    x = np.array([[1.2], [1.2000000476837158], [1.2000001], [1.1999999]])
    got = execute(compile_model(model, "acam", pass_options=LOSSLESS).program, {"X": x}, options=EXACT)["Y"]
    np.testing.assert_array_equal(got, _ort(model, x)[0])


@pytest.mark.parametrize("mode,compare", [("BRANCH_LEQ", np.less_equal), ("BRANCH_LT", np.less),
                                          ("BRANCH_GTE", np.greater_equal), ("BRANCH_GT", np.greater)])
@pytest.mark.parametrize("threshold", [1.2, 0.5, -3.0000001])
def test_float32_inputs_next_to_a_double_threshold(mode, compare, threshold):
    """A double threshold (``nodes_values_as_tensor``) with float32 inputs: every float32 next to
    it takes the branch the exact comparison in double gives (the oracle is that comparison)."""
    node = helper.make_node(
        "TreeEnsembleRegressor", ["X"], ["Y"], domain="ai.onnx.ml", n_targets=1,
        nodes_treeids=[0, 0, 0], nodes_nodeids=[0, 1, 2], nodes_featureids=[0, 0, 0],
        nodes_modes=[mode, "LEAF", "LEAF"],
        nodes_values_as_tensor=helper.make_tensor("splits", TensorProto.DOUBLE, [3], [threshold, 0, 0]),
        nodes_truenodeids=[1, 0, 0], nodes_falsenodeids=[2, 0, 0],
        target_treeids=[0, 0], target_nodeids=[1, 2], target_ids=[0, 0], target_weights=[1.0, 2.0])
    model = _with_batch([node], TensorProto.FLOAT, TensorProto.FLOAT, ML3, features=1, targets=1)
    near = np.float32(threshold)
    x = np.array([near, np.nextafter(near, np.float32(-np.inf)), np.nextafter(near, np.float32(np.inf)),
                  np.nextafter(np.nextafter(near, np.float32(-np.inf)), np.float32(-np.inf))], np.float32)
    got = execute(compile_model(model, "acam", pass_options=LOSSLESS).program, {"X": x.reshape(-1, 1)},
                  options=EXACT)["Y"].reshape(-1)
    np.testing.assert_array_equal(got, np.where(compare(x.astype(np.float64), threshold), 1.0, 2.0))
