"""Functional semantics of each opcode on numpy arrays of shape ``[batch, iterations..., dims...]``."""
from __future__ import annotations

import numpy as np

_SQRT_2 = np.sqrt(2.0)
_2_SQRT_PI = 2.0 / np.sqrt(np.pi)


def erf(x: np.ndarray) -> np.ndarray:
    """erf to ~1e-7 relative: Maclaurin series near 0, Chebyshev-fitted erfc elsewhere
    (Numerical Recipes ``erfcc``). numpy has no erf and scipy is not a dependency."""
    z = np.asarray(x, dtype=np.float64)
    a = np.abs(z)
    t = 1.0 / (1.0 + 0.5 * a)
    poly = -1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806 + t * (
        0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277))))))))
    far = 1.0 - t * np.exp(-a * a + poly)
    z2 = z * z
    term, near = z.copy(), z.copy()
    for n in range(1, 12):
        term = term * (-z2) / n
        near = near + term / (2 * n + 1)
    near = near * _2_SQRT_PI
    return np.where(a < 0.5, near, np.sign(z) * far)


def _gelu(x):
    return (0.5 * x * (1.0 + erf(x / _SQRT_2))).astype(np.float32)


def _gelu_tanh(x):
    x64 = x.astype(np.float64)
    return (0.5 * x64 * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x64 + 0.044715 * x64 ** 3)))).astype(np.float32)


def _sigmoid(x):
    with np.errstate(over="ignore"):
        return (1.0 / (1.0 + np.exp(-x.astype(np.float64)))).astype(np.float32)


def probit(x: np.ndarray) -> np.ndarray:
    """sqrt(2)·erfinv(2x − 1) with onnxruntime's erfinv approximation, in float32 as it computes it."""
    v = (2 * x.astype(np.float32) - np.float32(1)).astype(np.float32)
    sign = np.where(v < 0, np.float32(-1), np.float32(1))
    w = (1 - v) * (1 + v)
    with np.errstate(all="ignore"):
        log = np.log(w)
        a = np.float32(2) / (np.float32(np.pi) * np.float32(0.147)) + np.float32(0.5) * log
        b = np.float32(1) / np.float32(0.147) * log
        c = -a + np.sqrt(a * a - b)
        return (np.float32(np.sqrt(2.0)) * sign * np.sqrt(c)).astype(np.float32)


def _relu(x, out=None):
    return np.maximum(x, np.float32(0), out=out)


UNARY = {
    "relu": _relu,
    "sigmoid": _sigmoid,
    "tanh": np.tanh,
    "exp": np.exp,
    "log": np.log,
    "sqrt": np.sqrt,
    "neg": np.negative,
    "abs": np.abs,
    "recip": lambda x: np.float32(1) / x,
    "erf": lambda x: erf(x).astype(np.float32),
    "gelu": _gelu,
    "gelu_tanh": _gelu_tanh,
    "floor": np.floor,
    "ceil": np.ceil,
    "probit": probit,
    "sign": np.sign,
    "softplus": lambda x: np.logaddexp(np.float32(0), x),
}

# the unary ops that write into a float32 destination (``out=``), the same values as without
UNARY_INTO = frozenset(name for name, f in UNARY.items() if isinstance(f, np.ufunc)) | {"relu"}

BINARY = {
    "add": np.add,
    "sub": np.subtract,
    "mul": np.multiply,
    "div": np.divide,
    "pow": np.power,
    "max": np.maximum,
    "min": np.minimum,
    "mod": np.mod,
    "fmod": np.fmod,
}

COMPARE = {"eq": np.equal, "ne": np.not_equal, "lt": np.less, "le": np.less_equal, "gt": np.greater,
           "ge": np.greater_equal}


_PAIRWISE = {"rmax": np.maximum, "rmin": np.minimum}
SMALL_WINDOW = 64  # windows up to this many elements are reduced one element view at a time


def _pool(combine, src: np.ndarray, window: tuple[int, ...], out: np.ndarray) -> np.ndarray:
    """A pooling window of strided views combined into ``out``: one elementwise pass per window
    element, which beats a numpy reduction over short inner axes by 10× (max and min are exact
    in any order)."""
    elements = np.ndindex(*window)
    np.copyto(out, src[(...,) + next(elements)])
    for index in elements:
        combine(out, src[(...,) + index], out=out)
    return out


def _small_window(opcode: str, window: tuple[int, ...]) -> bool:
    return opcode in _PAIRWISE and 1 < int(np.prod(window)) <= SMALL_WINDOW


def reduce_into(opcode: str, src: np.ndarray, dst: np.ndarray) -> bool:
    """A small max/min pooling window reduced straight into ``dst`` (the values ``reduce``
    gives); False when this path does not apply (then ``reduce``)."""
    window = src.shape[dst.ndim:]
    if not _small_window(opcode, window) or dst.dtype != src.dtype or np.may_share_memory(dst, src):
        return False
    _pool(_PAIRWISE[opcode], src, window, dst)
    return True


def reduce(opcode: str, src: np.ndarray, n_axes: int) -> np.ndarray:
    axes = tuple(range(src.ndim - n_axes, src.ndim))
    window = src.shape[src.ndim - n_axes:]
    if _small_window(opcode, window):
        return _pool(_PAIRWISE[opcode], src, window, np.empty(src.shape[:src.ndim - n_axes], src.dtype))
    if opcode == "rsum":
        return src.sum(axis=axes, dtype=np.float32)
    if opcode == "rmean":
        return src.mean(axis=axes, dtype=np.float32)
    if opcode == "rmax":
        return src.max(axis=axes)
    return src.min(axis=axes)


def softmax(x: np.ndarray) -> np.ndarray:
    shifted = x - x.max(axis=-1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=-1, keepdims=True)
