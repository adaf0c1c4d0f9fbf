"""ONNX-ML operators beyond trees (compiler/frontend/ops/ml.py): scikit-learn models exported by
skl2onnx with default options (label + probabilities, ZipMap) agree with onnxruntime."""
from __future__ import annotations

import warnings

import numpy as np
import onnxruntime as ort
import pytest

from nmc.backends.target import load_target, with_fields
from nmc.compiler.driver import compile_model
from nmc.compiler.errors import UnsupportedOpError
from nmc.runtime.crossbar import SimOptions
from nmc.runtime.machine import execute

skl2onnx = pytest.importorskip("skl2onnx")
datasets = pytest.importorskip("sklearn.datasets")


def _data(name: str):
    x, y = getattr(datasets, f"load_{name}")(return_X_y=True)
    return x.astype(np.float32), y


def _models():
    from sklearn.linear_model import LinearRegression, LogisticRegression
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import Binarizer, Normalizer, StandardScaler
    from sklearn.svm import LinearSVC

    return {
        "mlp-iris": (lambda: MLPClassifier((16,), max_iter=300, random_state=0), "iris"),
        "logistic-iris": (lambda: LogisticRegression(max_iter=500), "iris"),
        "logistic-cancer": (lambda: LogisticRegression(max_iter=5000), "breast_cancer"),
        "linearsvc-wine": (lambda: LinearSVC(max_iter=5000), "wine"),
        "linearsvc-cancer": (lambda: LinearSVC(max_iter=5000), "breast_cancer"),
        "linear-diabetes": (lambda: LinearRegression(), "diabetes"),
        "normalizer-l2": (lambda: Normalizer("l2"), "iris"),
        "normalizer-l1": (lambda: Normalizer("l1"), "iris"),
        "normalizer-max": (lambda: Normalizer("max"), "wine"),
        "binarizer": (lambda: Binarizer(threshold=1.5), "iris"),
        "scaled-logistic-cancer": (lambda: make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)),
                                   "breast_cancer"),
    }


def _export(kind: str):
    make, data = _models()[kind]
    x, y = _data(data)
    if kind == "normalizer-max":
        x = x - x.mean(axis=0)  # negative maxima too
    model = make()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(x, y.astype(np.float32) if kind == "linear-diabetes" else y)
    return skl2onnx.to_onnx(model, x[:1]), x  # default options: ZipMap on classifiers


def _reference(onx, x):
    names = [o.name for o in onx.graph.output]
    values = ort.InferenceSession(onx.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"X": x})
    out = {}
    for name, value in zip(names, values):
        if isinstance(value, list):  # ZipMap: nmc returns the matrix, columns in label order
            value = np.array([[row[k] for k in sorted(row)] for row in value], np.float32)
        out[name] = value
    return out


def _assert_agrees(got: dict, expected: dict) -> None:
    for name, value in expected.items():
        if value.dtype == np.int64:  # labels: identical on every sample
            assert got[name].dtype == np.int32
            np.testing.assert_array_equal(got[name].astype(np.int64).reshape(value.shape), value)
        else:
            np.testing.assert_allclose(got[name].reshape(value.shape), value, rtol=1e-5,
                                       atol=1e-5 * max(1.0, float(np.abs(value).max())))


@pytest.mark.parametrize("kind", list(_models()))
def test_sklearn_default_export_equals_onnxruntime_on_ideal(kind):
    onx, x = _export(kind)
    c = compile_model(onx, "ideal")
    _assert_agrees(execute(c.program, {"X": x}), _reference(onx, x))


def test_mlp_label_path_is_a_gather_of_the_classes():
    onx, x = _export("mlp-iris")
    assert "ArrayFeatureExtractor" in [n.op_type for n in onx.graph.node]
    c = compile_model(onx, "ideal")
    ops = [n.onnx_op for n in c.graph.nodes() if type(n.op).__name__ == "Gather"]
    assert ops == ["ArrayFeatureExtractor"]


def test_linear_classifier_goes_on_crossbars_on_pcm():
    onx, x = _export("scaled-logistic-cancer")
    c = compile_model(onx, "pcm")
    units = {n.onnx_op: c.graph.mapping[n.name].unit for n in c.graph.nodes() if type(n.op).__name__ == "Dense"}
    assert units == {"LinearClassifier": "crossbar"}
    got = execute(c.program, {"X": x}, options=SimOptions(noise=False))
    expected = _reference(onx, x)
    assert np.mean(got["output_label"] == expected["output_label"]) > 0.95
    assert np.abs(got["output_probability"] - expected["output_probability"]).mean() < 0.05


def test_array_feature_extractor_with_constant_indices_is_a_view():
    from onnx import TensorProto, helper

    def model(indices):
        node = helper.make_node("ArrayFeatureExtractor", ["X", "idx"], ["Y"], domain="ai.onnx.ml")
        graph = helper.make_graph([node], "afe", [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, 6])],
                                  [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [None, len(indices)])],
                                  initializer=[helper.make_tensor("idx", TensorProto.INT64, [len(indices)], indices)])
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 1)])

    x = np.arange(24, dtype=np.float32).reshape(4, 6)
    for indices in ([1, 3, 5], [4], [5, 0, 0, 2]):
        onx = model(indices)
        c = compile_model(onx, "ideal")
        _assert_agrees(execute(c.program, {"X": x}), _reference(onx, x))
    kinds = {type(n.op).__name__ for n in compile_model(model([1, 3, 5]), "ideal").graph.nodes()}
    assert "Gather" not in kinds and "Slice" in kinds


def test_string_labels_are_refused_clearly():
    from sklearn.linear_model import LogisticRegression

    x, y = _data("iris")
    model = LogisticRegression(max_iter=500).fit(x, np.array(["a", "b", "c"])[y])
    with pytest.raises(UnsupportedOpError, match="string class labels"):
        compile_model(skl2onnx.to_onnx(model, x[:1]), "ideal")


def test_forest_probability_ties_round_as_onnxruntime_does():
    """A forest whose trees split evenly on a sample (30 of 60 for each class) sums to 0.5 only
    up to rounding, and the label follows the rounding. nmc adds the trees one after another in
    tree order in float32 (the running sum passes from CAM block to block), as onnxruntime does
    on one thread; with more threads onnxruntime sums groups of trees and rounds differently."""
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.model_selection import train_test_split

    x, y = _data("breast_cancer")
    x_train, x_test, y_train, _ = train_test_split(x, y, test_size=0.3, random_state=0)
    forest = RandomForestClassifier(60, random_state=9).fit(x_train, y_train)
    onx = skl2onnx.to_onnx(forest, x_train[:1], options={id(forest): {"zipmap": False}})
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    label, probabilities = ort.InferenceSession(onx.SerializeToString(), options,
                                                providers=["CPUExecutionProvider"]).run(None, {"X": x_test})
    ties = np.flatnonzero(np.abs(probabilities[:, 1] - 0.5) < 1e-6)
    assert len(x_test) == 171 and len(ties) >= 1
    chain = with_fields(load_target("acam"), {"cores.cam.reduction": "chain"})
    c = compile_model(onx, chain, pass_options={"cam-mapping": "lossless=true"})
    assert len(next(m.cam for m in c.graph.mapping.values() if m.unit == "cam").blocks) > 1
    out = execute(c.program, {"X": x_test}, options=SimOptions(noise=False))
    np.testing.assert_array_equal(out["probabilities"], probabilities)  # bit for bit, ties included
    np.testing.assert_array_equal(out["label"].astype(np.int64), label)
    # the preset's tree-shaped reduction adds the blocks' sums pairwise: the same within rounding
    tree = compile_model(onx, "acam", pass_options={"cam-mapping": "lossless=true"})
    got = execute(tree.program, {"X": x_test}, options=SimOptions(noise=False))["probabilities"]
    np.testing.assert_allclose(got, probabilities, atol=1e-6)
    assert not np.array_equal(got, probabilities)
