"""Typed payloads of graph IR nodes: one frozen dataclass per kind of operation.

Shapes are on the graph's tensors; constants (weights, biases) are graph constants referenced
as node inputs. In a batched graph every activation has a leading batch axis of size 1.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Dense:
    """``y = x @ W.T + b`` over the last axis; inputs ``(x, W[N, K], b[N]?)``, W and b constant."""


@dataclass(frozen=True)
class MatMul:
    """numpy ``matmul`` of two tensors (at least one an activation); 1-D operands are promoted."""


@dataclass(frozen=True)
class Conv:
    """N-d convolution; inputs ``(x, W[M, C/group, *kernel], b[M]?)``.
    ``pads`` are begin values for each spatial axis, then end values (ONNX order)."""

    kernel: tuple[int, ...]
    strides: tuple[int, ...]
    pads: tuple[int, ...]
    dilations: tuple[int, ...]
    group: int


@dataclass(frozen=True)
class BatchNorm:
    """Inference batch normalisation over axis 1; inputs ``(x, scale, bias, mean, var)``."""

    epsilon: float


@dataclass(frozen=True)
class Pool:
    """Max or average pooling over the spatial axes (ceil mode already folded into ``pads``)."""

    kind: str  # "max" | "avg"
    kernel: tuple[int, ...]
    strides: tuple[int, ...]
    pads: tuple[int, ...]
    dilations: tuple[int, ...]
    count_include_pad: bool
    input_pads: tuple[int, ...]  # the model's own pads (without ceil-mode overhang), for averages


@dataclass(frozen=True)
class Unary:
    """Element-wise function: relu, sigmoid, tanh, exp, log, sqrt, neg, abs, recip, erf,
    gelu, gelu_tanh, floor, ceil, leaky (with ``alpha``)."""

    fn: str
    alpha: float = 0.0


@dataclass(frozen=True)
class Clip:
    lo: float
    hi: float


@dataclass(frozen=True)
class Binary:
    """Element-wise add, sub, mul, div, pow, max or min with numpy broadcasting."""

    fn: str


@dataclass(frozen=True)
class Softmax:
    """Softmax over ``axes`` (one axis from opset 13; trailing axes from ``axis`` before)."""

    axes: tuple[int, ...]


@dataclass(frozen=True)
class Reduce:
    kind: str  # "sum" | "mean" | "max" | "min"
    axes: tuple[int, ...]
    keepdims: bool


@dataclass(frozen=True)
class ArgMax:
    axis: int
    keepdims: bool


@dataclass(frozen=True)
class Reshape:
    """Any shape-only change (Reshape, Flatten, Squeeze, Unsqueeze): data order is unchanged."""


@dataclass(frozen=True)
class Transpose:
    perm: tuple[int, ...]


@dataclass(frozen=True)
class Concat:
    axis: int


@dataclass(frozen=True)
class Slice:
    """``y = x[starts[i] : starts[i] + steps[i] * out_shape[i] : steps[i]]`` on every axis."""

    starts: tuple[int, ...]
    steps: tuple[int, ...]


@dataclass(frozen=True)
class Pad:
    """Constant padding; ``pads`` as in ONNX (begins then ends, all axes, non-negative)."""

    pads: tuple[int, ...]
    value: float


@dataclass(frozen=True)
class LayerNorm:
    """Normalise over axes ``axis..`` then scale and shift; inputs ``(x, scale, bias?)``."""

    axis: int
    epsilon: float


@dataclass(frozen=True)
class FakeQuant:
    """A QuantizeLinear → DequantizeLinear pair (QDQ) on a float tensor, exact in float32:
    ``y = (clip(round_half_even(x / scale) + zero_point, qmin, qmax) − zero_point) · scale``.
    One scale and zero point for the whole tensor, or one per index along ``axis``."""

    scale: tuple[float, ...]
    zero_point: tuple[int, ...]
    qmin: int
    qmax: int
    axis: int = 1

    @property
    def per_axis(self) -> bool:
        return len(self.scale) > 1

    @property
    def codes(self) -> tuple[int, int]:
        """The smallest and largest ``y / scale`` over all channels (the integer grid of y)."""
        return self.qmin - max(self.zero_point), self.qmax - min(self.zero_point)


@dataclass(frozen=True)
class TreeEnsemble:
    """Raw scores of a decision-tree ensemble: ``y[n, t]`` = the sum over trees of the value for
    target ``t`` of the leaf that row ``x[n, :]`` reaches (no base values, no post transform:
    those are ordinary digital nodes after it). Inputs ``(x[N, F], nodes[M, 7], leaves[M, T],
    roots[n_trees])``, all but x constants:

    - ``nodes`` columns: feature, threshold (float32, compared with float32 inputs), mode
      (``NODE_MODES`` index), true child row, false child row, missing value goes to the true
      child (0/1), tree index;
    - ``leaves[m, t]``: the weight of leaf row ``m`` for target ``t``, NaN where it has none;
    - ``roots``: the row of each tree's root.

    ``aggregate`` "MIN" / "MAX": ``y[n, t]`` is instead the smallest / largest value for ``t``
    among the reached leaves that have one, and 0 where none has (onnxruntime's ``has_score``).
    """

    n_trees: int
    n_targets: int
    aggregate: str = "SUM"   # "SUM" | "MIN" | "MAX"


NODE_MODES = ("LEAF", "BRANCH_LEQ", "BRANCH_LT", "BRANCH_GTE", "BRANCH_GT", "BRANCH_EQ", "BRANCH_NEQ")


Op = (Dense | MatMul | Conv | BatchNorm | Pool | Unary | Clip | Binary | Softmax | Reduce | ArgMax
      | Reshape | Transpose | Concat | Slice | Pad | LayerNorm | FakeQuant | TreeEnsemble)
