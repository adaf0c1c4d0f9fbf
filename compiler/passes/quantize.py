"""quantize: integer weights per output channel and the input encoding of crossbar layers."""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from compiler.ir import ops
from compiler.ir.graph import Graph, TensorType
from compiler.ir.mapping import Quant, matrix_view
from compiler.passes.base import Pass

_NONNEGATIVE_FNS = {"relu", "sigmoid", "exp", "sqrt", "abs"}


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
    if isinstance(op, (ops.Reshape, ops.Transpose, ops.Slice, ops.Pool)):
        return nonnegative(g, node.inputs[0])
    if isinstance(op, ops.Reduce) and op.kind in ("max", "min", "mean", "sum"):
        return nonnegative(g, node.inputs[0])
    if isinstance(op, ops.Concat):
        return all(nonnegative(g, t) for t in node.inputs)
    if isinstance(op, ops.Pad):
        return op.value >= 0 and nonnegative(g, node.inputs[0])
    return False


@dataclass(frozen=True)
class Quantize(Pass):
    """Weights become symmetric integers of ``weight_bits`` with one scale per output channel
    (scale = max|w| / (2^(bits−1) − 1)). Inputs of a crossbar layer become ``input_bits``
    integers: unsigned when the input cannot be negative, signed (sign-magnitude) otherwise;
    their scale comes from calibration ranges when the graph has them, else it is taken per
    sample at run time from the input's largest magnitude. 0 means "the target's width"."""

    name = "quantize"
    weight_bits: int = 0
    input_bits: int = 0

    def run(self, g: Graph, target=None) -> bool:
        crossbar = target.crossbar if target is not None else None
        changed = False
        for node in g.nodes():
            mapping = g.mapping.get(node.name)
            if mapping is None or mapping.unit != "crossbar":
                continue
            wbits = self.weight_bits or crossbar.weight_bits
            ibits = self.input_bits or crossbar.input_bits
            group = node.op.group if isinstance(node.op, ops.Conv) else 1
            w = matrix_view(g.constants[node.inputs[1]].astype(np.float64), group)  # [G, Mg, Kg]
            qmax = (1 << (wbits - 1)) - 1
            per_channel = np.abs(w).max(axis=2).reshape(-1)  # [M]
            scale = np.where(per_channel > 0, per_channel / qmax, 1.0)
            q = np.clip(np.round(w / scale.reshape(w.shape[0], w.shape[1], 1)), -qmax, qmax).astype(np.int32)
            x = node.inputs[0]
            signed = not nonnegative(g, x)
            imax = (1 << (ibits - 1)) - 1 if signed else (1 << ibits) - 1
            if x in g.ranges:
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
