"""The special-function kernels against references that share nothing with them: Python's
``math`` in float64 (correctly rounded to a fraction of an ulp) and onnxruntime's own Probit.
Every kernel's output is float32 (the machine's element type); the bounds are in float32 ulps
of the reference, with the approximation errors the kernels document (Numerical Recipes
``erfcc``: 1.2e-7 of erfc) and the float64 cancellation of ``1 ± erf`` where it applies."""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from nmc.runtime.kernels import UNARY, reduce, softmax

GRID = np.concatenate([np.linspace(-8, 8, 16001), [0.0, -0.0, 0.5, -0.5, 1e-30, -1e-30, 1e-3, -1e-3]]
                      ).astype(np.float32)


def ulp(ref: np.ndarray) -> np.ndarray:
    """One float32 ulp at each reference value (the spacing at its float32 rounding)."""
    return np.spacing(np.abs(ref).astype(np.float32)).astype(np.float64)


def test_erf_is_float32_within_one_ulp_of_math_erf():
    got = UNARY["erf"](GRID)
    assert got.dtype == np.float32
    ref = np.array([math.erf(float(v)) for v in GRID])
    # erfcc's 1.2e-7 of erfc plus the float64 rounding: under one float32 ulp everywhere
    assert np.all(np.abs(got - ref) <= ulp(ref)), np.max(np.abs(got - ref) / ulp(ref))
    assert np.all(got[GRID == 0] == 0.0)
    with np.errstate(invalid="ignore", over="ignore"):
        ends = UNARY["erf"](np.array([np.inf, -np.inf, 20.0, -20.0], np.float32))
    np.testing.assert_array_equal(ends, [1.0, -1.0, 1.0, -1.0])


def _gelu_bound(x: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """2 ulps, plus ½|x| times erfcc's error (1.2e-7 of erfc ≤ 1 + erf) and the float64
    rounding of 1 − erfc, which 1 + erf(x/√2) cancels for negative x."""
    one_plus = np.array([1 + math.erf(float(v) / math.sqrt(2)) for v in x])
    return 2 * ulp(ref) + 0.5 * np.abs(x) * (1.2e-7 * one_plus + 2.0 ** -52)


def test_gelu_is_float32_against_the_erf_formula():
    got = UNARY["gelu"](GRID)
    assert got.dtype == np.float32
    x = GRID.astype(np.float64)
    ref = np.array([0.5 * v * math.erfc(-v / math.sqrt(2)) for v in x])  # 1 + erf(u) = erfc(−u), no cancellation
    assert np.all(np.abs(got - ref) <= _gelu_bound(x, ref))


def test_gelu_tanh_is_float32_against_the_tanh_formula():
    got = UNARY["gelu_tanh"](GRID)
    assert got.dtype == np.float32
    x = GRID.astype(np.float64)
    u = np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)
    ref = np.array([v / (1 + math.exp(-2 * w)) if w > -300 else 0.0 for v, w in zip(x, u)])  # ½(1 + tanh u) = 1/(1 + e^−2u)
    # float64 cancellation of 1 + tanh(u) for negative u: ½|x| · 2^-52 beyond the rounding
    assert np.all(np.abs(got - ref) <= 2 * ulp(ref) + np.abs(x) * 2.0 ** -52)


def test_sigmoid_is_float32_without_overflow_warnings():
    x = np.concatenate([GRID, [-100.0, -1000.0, 100.0, 1000.0, -np.inf, np.inf]]).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = UNARY["sigmoid"](x)
    assert got.dtype == np.float32
    ref = np.array([1 / (1 + math.exp(-float(v))) if v > -700 else 0.0 for v in x])
    assert np.all(np.abs(got - ref) <= 0.5 * ulp(ref) + 1e-45)   # float64, rounded once
    assert got[-5:].tolist() == [0.0, 1.0, 1.0, 0.0, 1.0]


def _onnxruntime_probit(p: np.ndarray) -> np.ndarray:
    """onnxruntime's PROBIT post-transform of ``p`` (a one-leaf regressor, one target per value)."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    t = len(p)
    node = helper.make_node(
        "TreeEnsembleRegressor", ["X"], ["Y"], domain="ai.onnx.ml", n_targets=t, nodes_treeids=[0],
        nodes_nodeids=[0], nodes_featureids=[0], nodes_modes=["LEAF"], nodes_values=[0.0],
        nodes_truenodeids=[0], nodes_falsenodeids=[0], nodes_missing_value_tracks_true=[0],
        nodes_hitrates=[1.0], target_treeids=[0] * t, target_nodeids=[0] * t, target_ids=list(range(t)),
        target_weights=[float(v) for v in p], post_transform="PROBIT", aggregate_function="SUM")
    graph = helper.make_graph([node], "probit", [helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, 1])],
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [1, t])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 3)])
    model.ir_version = 8
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"X": np.zeros((1, 1), np.float32)})[0][0]


def test_probit_is_onnxruntimes_float32_erfinv():
    """Probit as onnxruntime computes it (float32 arithmetic, Winitzki's erfinv): bit for bit on
    almost every value (the rest within 64 ulps: the order of its float32 operations, amplified by the cancellation in −a + √(a² − b)), the
    same sign of zero at ½, ∓inf at 0 and 1, no warnings for the logs of 0."""
    p = np.concatenate([np.linspace(0, 1, 4001), [0.5, 1e-7, 1 - 1e-7, 0.4999999, 0.5000001]]).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = UNARY["probit"](p)
    assert got.dtype == np.float32
    ref = _onnxruntime_probit(p)
    np.testing.assert_array_equal(np.signbit(got), np.signbit(ref))
    assert got[0] == -np.inf and got[4000] == np.inf and got[4001] == 0.0
    finite = np.isfinite(ref)
    np.testing.assert_array_equal(np.isfinite(got), finite)
    assert np.mean(got == ref) >= 0.97
    assert np.all(np.abs(got[finite] - ref[finite]) <= 64 * ulp(ref[finite]))
    # sqrt(2)·erfinv(2p − 1) is the normal quantile: Winitzki's approximation is within 2e-3 of it
    from statistics import NormalDist
    inner = p[finite & (p > 1e-6) & (p < 1 - 1e-6)]
    q = np.array([NormalDist().inv_cdf(float(v)) for v in inner])
    assert np.all(np.abs(UNARY["probit"](inner) - q) <= 2e-3 * np.maximum(1, np.abs(q)))


def test_probit_outside_the_unit_interval_is_nan_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = UNARY["probit"](np.array([-0.5, 1.5, -np.inf, np.inf, np.nan], np.float32))
    assert got.dtype == np.float32 and np.isnan(got).all()


@pytest.mark.parametrize("shape, n_axes", [((3, 5), 1), ((2, 1), 1), ((2, 3, 4, 4), 2), ((2, 8, 8), 2),
                                           ((2, 9, 9), 2), ((1, 4, 70), 1), ((3, 2, 2, 2), 3), ((4, 65), 1)])
def test_reductions_against_plain_python(shape, n_axes):
    """rsum/rmean in float32 within the float32 rounding of a correctly rounded sum; rmax/rmin
    exact; on windows of one, a few (the pairwise path) and many elements."""
    rng = np.random.default_rng(sum(shape) * 10 + n_axes)
    src = rng.standard_normal(shape).astype(np.float32)
    src.flat[0] = -50.0   # a unique extreme in some windows
    src.flat[-1] = 50.0
    lead = shape[:len(shape) - n_axes]
    windows = src.reshape(lead + (-1,))
    n = windows.shape[-1]
    flat = windows.reshape(-1, n)
    total = np.array([math.fsum(map(float, w)) for w in flat]).reshape(lead)
    mags = np.abs(flat.astype(np.float64)).sum(axis=1).reshape(lead)
    bound = n * 2.0 ** -24 * mags + ulp(total)   # float32 accumulation, any order
    for opcode, want, tol in [("rsum", total, bound), ("rmean", total / n, bound / n),
                              ("rmax", np.array([max(map(float, w)) for w in flat]).reshape(lead), 0.0),
                              ("rmin", np.array([min(map(float, w)) for w in flat]).reshape(lead), 0.0)]:
        got = reduce(opcode, src.copy(), n_axes)
        assert got.dtype == np.float32, opcode
        assert got.shape == lead, opcode
        assert np.all(np.abs(got - want) <= tol), opcode


def test_pairwise_reduction_does_not_write_into_its_source():
    src = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    before = src.copy()
    assert reduce("rmax", src, 2).tolist() == [11.0, 23.0]
    assert reduce("rmin", src, 2).tolist() == [0.0, 12.0]
    np.testing.assert_array_equal(src, before)


def test_softmax_sums_to_one_and_matches_math_exp():
    rng = np.random.default_rng(7)
    x = (rng.standard_normal((5, 9)) * 30).astype(np.float32)
    got = softmax(x)
    for row, out in zip(x.astype(np.float64), got):
        e = [math.exp(v - max(row)) for v in row]
        ref = np.array(e) / math.fsum(e)
        # exp's condition number |x − max| times the float32 rounding of the shifted input
        shift = np.abs(row - row.max())
        assert np.all(np.abs(out - ref) <= 4 * ulp(ref) + shift * 2.0 ** -24 * ref + 1e-45)
