"""quantize: integer weights per output channel and the input encoding of crossbar layers."""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from nmc.compiler.ir import ops
from nmc.compiler.ir.graph import Graph, TensorType
from nmc.compiler.ir.mapping import Quant, matrix_view
from nmc.compiler.passes.base import Pass, crossbar_layers

_NONNEGATIVE_FNS = {"relu", "sigmoid", "exp", "sqrt", "abs", "softplus"}


def nonnegative(g: Graph, tensor: str) -> bool:
    """Whether ``tensor`` can never be negative, from the ops that produce it."""
    if tensor in g.ranges:
        return g.ranges[tensor][0] >= 0
    if g.is_const(tensor):
        return bool((g.constants[tensor] >= 0).all())
    node = g.producer(tensor)
    if node is None:
        return False
    op = node.op
    if isinstance(op, ops.Unary):
        return op.fn in _NONNEGATIVE_FNS
    if isinstance(op, ops.Clip):
        return op.lo >= 0
    if isinstance(op, ops.Softmax):
        return True
    if isinstance(op, ops.FakeQuant):  # y >= (qmin - zp) * scale, and round(x / scale) >= 0 when x is
        return op.codes[0] >= 0 or nonnegative(g, node.inputs[0])
    if isinstance(op, (ops.Reshape, ops.Expand, ops.Transpose, ops.Slice, ops.Pool)):
        return nonnegative(g, node.inputs[0])
    if isinstance(op, ops.Reduce) and op.kind in ("max", "min", "mean", "sum"):
        return nonnegative(g, node.inputs[0])
    if isinstance(op, ops.Concat):
        return all(nonnegative(g, t) for t in node.inputs)
    if isinstance(op, ops.Pad):
        return op.value >= 0 and nonnegative(g, node.inputs[0])
    return False


def qdq_grid(g: Graph, tensor: str) -> ops.FakeQuant | None:
    """The fake quantisation (QDQ) whose grid ``tensor`` lies on: its producer, possibly behind
    ops that only move or select values (reshape, transpose, slice, max pooling, zero padding)."""
    node = g.producer(tensor)
    if node is None:
        return None
    op = node.op
    if isinstance(op, ops.FakeQuant):
        return op
    if (isinstance(op, (ops.Reshape, ops.Expand, ops.Transpose, ops.Slice))
            or (isinstance(op, ops.Pool) and op.kind == "max")
            or (isinstance(op, ops.Pad) and op.value == 0)):
        return qdq_grid(g, node.inputs[0])
    return None


def qdq_input_scale(grid: ops.FakeQuant, signed: bool, imax: int) -> float:
    """The crossbar input scale for values on ``grid``: the model's own scale when every code
    fits the input integers (then quantising the input is exact; the one extra negative code of
    a two's-complement grid saturates), else the scale that covers the grid's whole range."""
    lo_code, hi_code = grid.codes
    lo_code = lo_code if signed else max(lo_code, 0)
    if not grid.per_axis and lo_code >= -(imax + 1) and hi_code <= imax:
        return grid.scale[0]
    scale, zero = np.asarray(grid.scale, np.float64), np.asarray(grid.zero_point, np.float64)
    lo = min(float(((grid.qmin - zero) * scale).min()), 0.0) if signed else 0.0
    hi = float(((grid.qmax - zero) * scale).max())
    return max(abs(lo), abs(hi)) / imax


def weight_scales(w: np.ndarray, qmax: int, keep_tensor_grid: bool) -> np.ndarray:
    """One scale per output channel of ``w`` [G, Mg, Kg]: max|w| / qmax of the channel. With
    ``keep_tensor_grid``, when the whole tensor already lies on one grid of ±qmax steps (the
    weights of a QDQ model quantised per tensor), that grid's step for every channel instead,
    so the model's integer codes are kept exactly."""
    per_channel = np.abs(w).max(axis=2).reshape(-1)  # [M]
    top = float(per_channel.max(initial=0.0))
    if keep_tensor_grid and top > 0:
        codes = w / (top / qmax)
        if np.abs(codes - np.round(codes)).max() < 1e-3:
            return np.full(per_channel.shape, top / qmax)
    return np.where(per_channel > 0, per_channel / qmax, 1.0)


@dataclass(frozen=True)
class Quantize(Pass):
    """Weights become symmetric integers of ``weight_bits`` with one scale per output channel
    (scale = max|w| / (2^(bits−1) − 1); on digital arrays a QDQ model's per-tensor grid is
    kept). Inputs of a crossbar layer become ``input_bits`` integers: unsigned when the input
    cannot be negative, signed (sign-magnitude) otherwise; their scale follows the model when a QDQ pair (fake quantisation) produces the input, else
    comes from calibration ranges when the graph has them, else it is taken per sample at run
    time from the input's largest magnitude. 0 means "the target's width"."""

    name = "quantize"
    requires = ("every-node-partitioned",)
    ensures = ("crossbar-layers-quantized",)
    weight_bits: int = 0
    input_bits: int = 0

    def run(self, g: Graph, target=None) -> bool:
        crossbar = target.crossbar if target is not None else None
        changed = False
        for node, mapping in crossbar_layers(g):
            wbits = self.weight_bits or crossbar.weight_bits
            ibits = self.input_bits or crossbar.input_bits
            group = node.op.group if isinstance(node.op, ops.Conv) else 1
            w = matrix_view(g.constants[node.inputs[1]].astype(np.float64), group)  # [G, Mg, Kg]
            qmax = (1 << (wbits - 1)) - 1
            # a bit-exact array computes the model's own codes; analog columns do better with
            # each channel spread over the full conductance range
            scale = weight_scales(w, qmax, keep_tensor_grid=not crossbar.analog)
            q = np.clip(np.round(w / scale.reshape(w.shape[0], w.shape[1], 1)), -qmax, qmax).astype(np.int32)
            x = node.inputs[0]
            signed = not nonnegative(g, x)
            imax = (1 << (ibits - 1)) - 1 if signed else (1 << ibits) - 1
            grid = qdq_grid(g, x)
            if grid is not None:
                in_scale, source = qdq_input_scale(grid, signed, imax), "qdq"
            elif x in g.ranges:
                lo, hi = g.ranges[x]
                bound = max(abs(lo), abs(hi))
                in_scale, source = (float(bound) / imax if bound > 0 else 1.0), "calibration"
            else:
                in_scale, source = None, "dynamic"
            q_name = g.fresh(node.inputs[1] + ".q")
            g.constants[q_name] = q
            g.tensors[q_name] = TensorType(tuple(q.shape), "i32")
            s_name = g.add_constant(node.inputs[1] + ".scale", scale.astype(np.float32))
            g.mapping[node.name] = replace(mapping, quant=Quant(q_name, s_name, wbits, ibits, signed, in_scale, source))
            changed = True
        return changed
