"""fold-batchnorm: merge inference BatchNormalization into the Conv or Dense feeding it."""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from nmc.compiler.ir import ops
from nmc.compiler.ir.graph import Graph, Node
from nmc.compiler.passes.base import Pass


@dataclass(frozen=True)
class FoldBatchNorm(Pass):
    name = "fold-batchnorm"
    requires = ("no-mapping-records",)  # it replaces nodes, so it runs before records name them
    ensures = ("batchnorm-folded",)

    def run(self, g: Graph, target=None) -> bool:
        changed = False
        for bn in list(g.nodes()):
            if not isinstance(bn.op, ops.BatchNorm):
                continue
            prev = g.producer(bn.inputs[0])
            if prev is None or not isinstance(prev.op, (ops.Conv, ops.Dense)):
                continue
            if len(g.consumers(prev.outputs[0])) != 1 or prev.outputs[0] in g.outputs:
                continue
            if isinstance(prev.op, ops.Dense) and len(g.shape(prev.outputs[0])) != 2:
                continue  # BatchNorm's channel axis 1 is not Dense's output axis
            self._fold(g, prev, bn)
            changed = True
        return changed

    @staticmethod
    def _fold(g: Graph, prev: Node, bn: Node) -> None:
        scale, bias, mean, var = (g.constants[t].astype(np.float64) for t in bn.inputs[1:])
        a = scale / np.sqrt(var + bn.op.epsilon)
        w = g.constants[prev.inputs[1]].astype(np.float64)
        w_new = w * a.reshape((-1,) + (1,) * (w.ndim - 1))
        b_old = g.constants[prev.inputs[2]].astype(np.float64) if len(prev.inputs) > 2 else 0.0
        b_new = (b_old - mean) * a + bias
        w_name = g.add_constant(prev.inputs[1] + ".bn", w_new)
        b_name = g.add_constant((prev.inputs[2] if len(prev.inputs) > 2 else prev.outputs[0]) + ".bn_bias", b_new)
        old_out = prev.outputs[0]
        g.remove_node(bn.name)
        g.replace_node(replace(prev, inputs=(prev.inputs[0], w_name, b_name), outputs=bn.outputs))
        del g.tensors[old_out]
        g.ranges.pop(old_out, None)  # calibration of a tensor that no longer exists
        g.calibration.pop(old_out, None)
        for t in set(prev.inputs[1:]) | set(bn.inputs[1:]):
            if not g.consumers(t) and t not in g.outputs:
                g.constants.pop(t, None)
                g.tensors.pop(t, None)
