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
    gelu, gelu_tanh, floor, ceil, sign, softplus, leaky and elu (both with ``alpha``)."""

    fn: str
    alpha: float = 0.0


@dataclass(frozen=True)
class Clip:
    lo: float
    hi: float


@dataclass(frozen=True)
class Binary:
    """Element-wise add, sub, mul, div, pow, max, min, mod (the divisor's sign) or fmod (the
    dividend's sign) with numpy broadcasting, in the operands' element type (f32 or i32)."""

    fn: str


@dataclass(frozen=True)
class Compare:
    """Element-wise ``a <fn> b`` (eq, ne, lt, le, gt, ge) with numpy broadcasting: a bool
    tensor (0/1). Not, And, Or of bools are ``eq 0``, ``min`` and ``max``."""

    fn: str


@dataclass(frozen=True)
class Select:
    """``y = where(cond, a, b)`` with numpy broadcasting; inputs ``(cond, a, b)``, cond bool."""


@dataclass(frozen=True)
class Cast:
    """Element type conversion to ``to`` (f32, i32, bool): f32 → i32 truncates toward zero, to
    bool is ``x != 0``, i32 → f32 is exact below 2^24."""

    to: str


@dataclass(frozen=True)
class Gather:
    """ONNX Gather with indices computed at run time: ``y = take(table, idx, axis)``, the shape
    ``table.shape[:axis] + idx.shape + table.shape[axis + 1:]``; inputs ``(table, idx)``, idx
    i32 (negative values count from the end; out of range is a run-time error). An embedding
    lookup is a Gather of a constant table on axis 0: a digital memory read of the rows moved.
    Gathers by constant indices are Slices and Reshapes (views)."""

    axis: int


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
class Expand:
    """numpy broadcast of the input to the output's shape (ONNX Expand, and Tile and nearest
    upsampling by whole factors after a Reshape): a copy through a view with stride 0 on the
    repeated axes. The output may have more axes than the input (added in front)."""


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


@dataclass(frozen=True)
class LoopCarried:
    """A value a ``Recurrence`` computes inside its time loop for a ``Dense`` of that loop (the
    recurrent weights R, so they map onto crossbars like any Dense layer): ``role`` ``"h"`` is
    direction ``direction``'s hidden state before the step, ``"rh"`` the reset-gated state r ⊙ h
    of a GRU without linear_before_reset. No inputs, no code of its own: the recurrence writes
    it each step, then runs the Dense nodes that read it."""

    role: str        # "h" | "rh"
    direction: int


@dataclass(frozen=True)
class Recurrence:
    """An ONNX LSTM, GRU or RNN (one layer; all directions) over ``steps`` time steps, with its
    products by the weights done by Dense nodes: W for all steps before the loop, R inside it.

    Inputs, in order: ``xw`` — X·Wᵀ plus the biases that add outside the gates' products, for
    every step, ``[T, B, D·G·H]`` (layout 1: ``[B, T, D·G·H]``), each direction's gates in ONNX
    order (LSTM iofc, GRU zrh); per direction the outputs of the Dense nodes reading its
    ``LoopCarried`` state: h·Rᵀ ``[B, G·H]`` (a GRU without linear_before_reset: h·R_zrᵀ
    ``[B, 2H]`` and (r ⊙ h)·R_hᵀ ``[B, H]``); then, as the flags say, initial_h and initial_c
    ``[D, B, H]`` (layout 1: ``[B, D, H]``), the step mask ``[T, B]`` (layout 1: ``[B, T]``; 1
    within sequence_lens, else 0) and the peepholes P ``[D, 3H]`` (iof).

    Output: Y, Y_h and (LSTM) Y_c stacked along the time axis, ``[T + k, D, B, H]`` (layout 1:
    ``[B, T + k, D, H]``), k = 2 for an LSTM, else 1; Slice nodes take the ONNX outputs apart.
    ``activations`` holds per direction and cell function (LSTM f, g, h; GRU f, g; RNN f) a
    lower-case name with its alpha and beta, as onnxruntime reads them.
    """

    cell: str                         # "LSTM" | "GRU" | "RNN"
    hidden: int
    steps: int
    directions: tuple[str, ...]       # ("forward",), ("reverse",) or ("forward", "reverse")
    activations: tuple[tuple[tuple[str, float, float], ...], ...]
    clip: float | None = None
    layout: int = 0
    linear_before_reset: bool = False
    input_forget: bool = False
    has_initial_h: bool = False
    has_initial_c: bool = False
    has_mask: bool = False
    has_peepholes: bool = False

    @property
    def gates(self) -> int:
        return {"LSTM": 4, "GRU": 3, "RNN": 1}[self.cell]

    @property
    def stacked(self) -> int:
        """Outputs stacked after Y along the time axis: Y_h, and Y_c for an LSTM."""
        return 2 if self.cell == "LSTM" else 1


NODE_MODES = ("LEAF", "BRANCH_LEQ", "BRANCH_LT", "BRANCH_GTE", "BRANCH_GT", "BRANCH_EQ", "BRANCH_NEQ")


Op = (Dense | MatMul | Conv | BatchNorm | Pool | Unary | Clip | Binary | Softmax | Reduce | ArgMax
      | Reshape | Expand | Transpose | Concat | Slice | Pad | LayerNorm | FakeQuant | TreeEnsemble | LoopCarried | Recurrence
      | Compare | Select | Cast | Gather)
