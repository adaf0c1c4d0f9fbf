"""partition: decide per layer whether it runs on crossbars or on digital vector units."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nmc.backends.tile_arithmetic import TileArithmetic
from nmc.compiler.ir import ops
from nmc.compiler.ir.graph import Graph
from nmc.compiler.ir.mapping import LayerMapping
from nmc.compiler.passes.base import Pass

_DIGITAL_REASONS = {
    ops.MatMul: "product of two activations (e.g. attention): no stationary weights",
    ops.Pool: "pooling", ops.Reduce: "reduction", ops.Softmax: "softmax", ops.LayerNorm: "normalisation",
    ops.BatchNorm: "normalisation", ops.Unary: "element-wise function", ops.Clip: "element-wise function",
    ops.Binary: "element-wise arithmetic", ops.Reshape: "shape change (no data movement)",
    ops.Transpose: "data movement", ops.Concat: "data movement", ops.Slice: "data movement",
    ops.Pad: "data movement", ops.Expand: "data movement", ops.ArgMax: "reduction", ops.FakeQuant: "fake quantisation (QDQ)",
    ops.Recurrence: "recurrent cell: gates and state update over the time steps (its products by W and R "
                    "are Dense layers)",
    ops.LoopCarried: "state of a recurrence, written in its time loop",
}


@dataclass(frozen=True)
class Partition(Pass):
    """Matrix layers with constant weights (Dense, Conv) go to crossbars unless the policy keeps
    them digital; everything else runs on vector units. Each decision carries its reason.

    A grouped convolution (depthwise above all) sits on crossbars block-diagonally: a read drives
    the rows of several groups at once and each group's outputs take only its own rows, so a tile
    of p groups has 1/p of its cells holding weights (a 3×3 depthwise layer on 256-row arrays:
    28 groups per tile, 3.6 %). Below ``min_cell_share`` such layers stay on the vector unit,
    with the figure in the reason (0 keeps them all on crossbars)."""

    name = "partition"
    ensures = ("every-node-partitioned", "crossbars-hold-matrix-layers")
    first_digital: bool = False
    last_digital: bool = False
    min_weights: int = 0  # smaller weight matrices stay digital
    min_cell_share: float = 0.25

    def run(self, g: Graph, target=None) -> bool:
        crossbar = target.crossbar if target is not None else None
        matrix = [n for n in g.nodes() if isinstance(n.op, (ops.Dense, ops.Conv))]
        for node in g.nodes():
            if not isinstance(node.op, (ops.Dense, ops.Conv)):
                g.mapping[node.name] = LayerMapping("vector", _DIGITAL_REASONS.get(type(node.op), "digital op"))
                continue
            size = g.constants[node.inputs[1]].size
            if crossbar is None:
                decision = LayerMapping("vector", "the target has no crossbar cores")
            elif self.first_digital and node is matrix[0]:
                decision = LayerMapping("vector", "first matrix layer kept digital by policy (first_digital)")
            elif self.last_digital and node is matrix[-1]:
                decision = LayerMapping("vector", "last matrix layer kept digital by policy (last_digital)")
            elif isinstance(node.op, ops.Conv) and (g.batched is False and g.shape(node.inputs[0])[0] != 1):
                decision = LayerMapping("vector", "a fixed batch of several images: crossbar convolution "
                                                  "runs one sample at a time (export with a free batch axis)")
            elif isinstance(node.op, ops.Conv) and (window := int(np.prod(node.op.kernel))) > crossbar.rows:
                decision = LayerMapping("vector", f"a kernel window of {window} rows per input channel does not fit "
                                                  f"crossbars of {crossbar.rows} rows (blocks are cut at channels)")
            elif (share := self._cell_share(g, node, crossbar)) < self.min_cell_share:
                decision = LayerMapping("vector", f"{node.op.group} groups: block-diagonal crossbar tiles would hold "
                                                  f"weights in {100 * share:.1f}% of their cells (below the policy's "
                                                  f"min_cell_share={self.min_cell_share:g})")
            elif size < self.min_weights:
                decision = LayerMapping("vector", f"{size} weights, below the policy's min_weights={self.min_weights}")
            else:
                decision = LayerMapping("crossbar", f"static weights ({size}) on {crossbar.technology} crossbars")
            g.mapping[node.name] = decision
        return True

    @staticmethod
    def _cell_share(g: Graph, node, crossbar) -> float:
        """Share of a block-diagonal tile's cells that hold weights: 1 / groups per tile."""
        groups = getattr(node.op, "group", 1)
        if groups == 1:
            return 1.0
        weight = g.constants[node.inputs[1]]
        rows = weight[0].size                              # channels per group × kernel
        cols = weight.shape[0] // groups * TileArithmetic.planned(crossbar, crossbar.weight_bits).columns_per_weight
        if rows > crossbar.rows or cols > crossbar.cols:
            return 1.0                                     # one group spans whole tiles
        return 1.0 / min(crossbar.rows // rows, crossbar.cols // cols, groups)
