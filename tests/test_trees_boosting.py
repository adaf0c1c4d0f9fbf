"""Gradient-boosted trees as users make them: XGBoost and LightGBM through onnxmltools, and
scikit-learn's HistGradientBoosting through skl2onnx, compiled for ``acam`` with lossless
coding and run without device noise: labels equal onnxruntime's on every sample, probabilities
and values agree to float tolerance (the trees' sums run in another order)."""
from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from nmc.compiler.driver import compile_model
from nmc.runtime.crossbar import SimOptions
from nmc.runtime.machine import execute

datasets = pytest.importorskip("sklearn.datasets")

LOSSLESS = {"cam-mapping": "lossless=true"}
EXACT = SimOptions(noise=False)


def _data(name: str):
    x, y = getattr(datasets, f"load_{name}")(return_X_y=True)
    return x.astype(np.float32), y


def _check(onx, x: np.ndarray) -> None:
    """Every output of the compiled program against onnxruntime's, on every sample of ``x``."""
    session = ort.InferenceSession(onx.SerializeToString(), providers=["CPUExecutionProvider"])
    feed = session.get_inputs()[0].name
    expected = session.run(None, {feed: x})
    c = compile_model(onx, "acam", pass_options=LOSSLESS)
    got = execute(c.program, {feed: x}, options=EXACT)
    for output, ref in zip(onx.graph.output, expected):
        value = got[output.name].reshape(ref.shape)
        if ref.dtype == np.int64:
            np.testing.assert_array_equal(value.astype(np.int64), ref, err_msg=output.name)
        else:
            np.testing.assert_allclose(value, ref, rtol=1e-5, atol=1e-6 * max(1.0, float(np.abs(ref).max())),
                                       err_msg=output.name)
    cam = next(m.cam for m in c.graph.mapping.values() if m.unit == "cam")
    assert cam.lossless and not cam.warnings


def _onnxmltools():
    onnxmltools = pytest.importorskip("onnxmltools")
    from onnxmltools.convert.common.data_types import FloatTensorType

    return onnxmltools, FloatTensorType


def test_xgboost_multiclass_wine():
    xgboost = pytest.importorskip("xgboost")
    onnxmltools, FloatTensorType = _onnxmltools()
    x, y = _data("wine")
    model = xgboost.XGBClassifier(n_estimators=20, max_depth=3, random_state=0).fit(x, y)
    onx = onnxmltools.convert_xgboost(model, initial_types=[("X", FloatTensorType([None, x.shape[1]]))])
    _check(onx, x)   # 60 trees over two CAM blocks: the second block's rows test no feature's top level


def test_xgboost_binary_breast_cancer():
    xgboost = pytest.importorskip("xgboost")
    onnxmltools, FloatTensorType = _onnxmltools()
    x, y = _data("breast_cancer")
    model = xgboost.XGBClassifier(n_estimators=20, max_depth=3, random_state=0).fit(x, y)
    onx = onnxmltools.convert_xgboost(model, initial_types=[("X", FloatTensorType([None, x.shape[1]]))])
    _check(onx, x)


def test_lightgbm_regressor_diabetes():
    lightgbm = pytest.importorskip("lightgbm")
    onnxmltools, FloatTensorType = _onnxmltools()
    x, y = _data("diabetes")
    model = lightgbm.LGBMRegressor(n_estimators=20, num_leaves=15, verbose=-1, random_state=0).fit(x, y)
    onx = onnxmltools.convert_lightgbm(model, initial_types=[("X", FloatTensorType([None, x.shape[1]]))])
    _check(onx, x)


def test_lightgbm_classifier_wine_label_through_identity_and_cast():
    lightgbm = pytest.importorskip("lightgbm")
    onnxmltools, FloatTensorType = _onnxmltools()
    x, y = _data("wine")
    model = lightgbm.LGBMClassifier(n_estimators=10, num_leaves=7, verbose=-1, random_state=0).fit(x, y)
    onx = onnxmltools.convert_lightgbm(model, initial_types=[("X", FloatTensorType([None, x.shape[1]]))],
                                       zipmap=False)
    assert [n.op_type for n in onx.graph.node][1:] == ["Identity", "Identity", "Cast", "Mul"]
    _check(onx, x)


@pytest.fixture
def skl2onnx_hist_gradient_boosting(monkeypatch):
    """skl2onnx 1.20 passes a Python bool as a leaf's missing-value flag (an ONNX int), which
    onnx.helper rejects; the wrapper hands it an int, nothing else changes."""
    skl2onnx = pytest.importorskip("skl2onnx")
    from skl2onnx.common import tree_ensemble

    original = tree_ensemble.add_node

    def add_node(*args, nodes_missing_value_tracks_true=0, **kwargs):
        return original(*args, nodes_missing_value_tracks_true=int(nodes_missing_value_tracks_true), **kwargs)

    monkeypatch.setattr(tree_ensemble, "add_node", add_node)
    return skl2onnx


@pytest.mark.parametrize("kind,data", [("classifier", "breast_cancer"), ("classifier", "wine"),
                                       ("regressor", "diabetes")])
def test_hist_gradient_boosting_with_missing_values(skl2onnx_hist_gradient_boosting, kind, data):
    from sklearn import ensemble

    x, y = _data(data)
    train = x.copy()
    train[np.random.default_rng(0).random(x.shape) < 0.05] = np.nan   # trees learn where NaN goes
    test = x.copy()
    test[::5, 0] = np.nan
    if kind == "classifier":
        model = ensemble.HistGradientBoostingClassifier(max_iter=10, max_depth=3, random_state=0).fit(train, y)
        options = {id(model): {"zipmap": False}}
    else:
        model = ensemble.HistGradientBoostingRegressor(max_iter=10, max_depth=3, random_state=0).fit(train, y)
        options = None
    onx = skl2onnx_hist_gradient_boosting.to_onnx(model, x[:1], options=options,
                                                  target_opset={"": 17, "ai.onnx.ml": 3})
    _check(onx, test)
