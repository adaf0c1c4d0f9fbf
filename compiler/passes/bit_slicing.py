"""bit-slicing: choose each tile's ADC range from the cell levels it actually holds."""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from compiler.ir import ops
from compiler.ir.graph import Graph
from compiler.ir.mapping import TileBlock
from compiler.passes.base import Pass


def block_matrix(q: np.ndarray, b: TileBlock, kernel: int) -> np.ndarray:
    """The integer weights a tile holds, ``[outs_total, rows]``, block-diagonal when packed."""
    rows_per_group = b.channels * kernel
    out = np.zeros((b.groups * b.outs, b.groups * rows_per_group), np.int32)
    for i in range(b.groups):
        sub = q[b.group + i, b.out:b.out + b.outs, b.channel * kernel:(b.channel + b.channels) * kernel]
        out[i * b.outs:(i + 1) * b.outs, i * rows_per_group:(i + 1) * rows_per_group] = sub
    return out


def slice_levels(q: np.ndarray, weight_bits: int, cell_bits: int, scheme: str) -> list[np.ndarray]:
    """Cell levels per slice: for a differential pair, the signed difference G+ − G− per cell."""
    mask = (1 << cell_bits) - 1
    if scheme == "differential":
        pos, neg = np.maximum(q, 0).astype(np.int64), np.maximum(-q, 0).astype(np.int64)
        n = -(-(weight_bits - 1) // cell_bits)
        return [((pos >> (j * cell_bits)) & mask) - ((neg >> (j * cell_bits)) & mask) for j in range(n)]
    u = q.astype(np.int64) + (1 << (weight_bits - 1))
    n = -(-weight_bits // cell_bits)
    return [(u >> (j * cell_bits)) & mask for j in range(n)]


@dataclass(frozen=True)
class BitSlicing(Pass):
    """The largest column current a tile can draw is the sum of its cells' levels times the
    largest input slice; the ADC covers it with a power-of-two step (shift-and-add stays
    integer). When the ADC has enough codes the step is 1 and the conversion is lossless."""

    name = "bit-slicing"

    def run(self, g: Graph, target=None) -> bool:
        crossbar = target.crossbar if target is not None else None
        changed = False
        for node in g.nodes():
            mapping = g.mapping.get(node.name)
            if mapping is None or mapping.unit != "crossbar":
                continue
            q = g.constants[mapping.quant.weights]
            kernel = int(np.prod(node.op.kernel)) if isinstance(node.op, ops.Conv) else 1
            dac_max = (1 << crossbar.dac_bits) - 1
            signed_adc = crossbar.weight_scheme == "differential"
            steps = (1 << (crossbar.adc_bits - 1)) - 1 if signed_adc else (1 << crossbar.adc_bits) - 1
            tiles = []
            for b in mapping.tiles:
                levels = slice_levels(block_matrix(q, b, kernel), mapping.quant.weight_bits, crossbar.cell_bits,
                                      crossbar.weight_scheme)
                worst = max(max(np.maximum(lv, 0).sum(axis=1).max(), np.maximum(-lv, 0).sum(axis=1).max())
                            for lv in levels) * dac_max
                lsb = 1.0 if worst <= steps else float(2 ** int(np.ceil(np.log2(worst / steps))))
                tiles.append(replace(b, adc_range=lsb * steps, adc_range_source="worst case of the programmed weights"))
            g.mapping[node.name] = replace(mapping, tiles=tuple(tiles))
            changed = True
        return changed
