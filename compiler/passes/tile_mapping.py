"""tile-mapping: cut each crossbar layer's weight matrix into crossbar-sized blocks."""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from nmc.backends.tile_arithmetic import TileArithmetic
from nmc.compiler.errors import CompileError
from nmc.compiler.ir import ops
from nmc.compiler.ir.graph import Graph
from nmc.compiler.ir.mapping import TileBlock
from nmc.compiler.passes.base import Pass, crossbar_layers


def plan_blocks(groups: int, channels: int, outs: int, kernel: int, rows: int, cols: int,
                cols_per_out: int) -> list[TileBlock]:
    """Blocks of a [groups × (outs, channels·kernel)] weight matrix on rows × cols crossbars.

    Rows are cut at channel boundaries (a block's input window stays one strided view);
    columns at output boundaries. Small groups (depthwise and grouped convolutions) are packed
    block-diagonally, several per crossbar.
    """
    if kernel > rows:
        raise CompileError(f"a kernel window of {kernel} rows does not fit crossbars of {rows} rows")
    max_outs = cols // cols_per_out
    if max_outs < 1:
        raise CompileError(f"one weight needs {cols_per_out} columns but crossbars have {cols}")
    blocks = []
    if groups > 1 and channels * kernel <= rows and outs <= max_outs:
        pack = max(1, min(rows // (channels * kernel), max_outs // outs, groups))
        for g0 in range(0, groups, pack):
            p = min(pack, groups - g0)
            blocks.append(TileBlock(g0, p, 0, channels, 0, outs, p * channels * kernel, p * outs * cols_per_out))
        return blocks
    ch_per_block = max(1, rows // kernel)
    for g0 in range(groups):
        for c0 in range(0, channels, ch_per_block):
            cc = min(ch_per_block, channels - c0)
            for m0 in range(0, outs, max_outs):
                mm = min(max_outs, outs - m0)
                blocks.append(TileBlock(g0, 1, c0, cc, m0, mm, cc * kernel, mm * cols_per_out))
    return blocks


@dataclass(frozen=True)
class TileMapping(Pass):
    """Each crossbar layer's [G, M/G, C/G·k] matrix (a Conv seen through im2col) becomes blocks
    of at most ``rows`` × ``cols`` cells; partial sums of row blocks are added digitally.
    0 means "the target's crossbar size"."""

    name = "tile-mapping"
    requires = ("crossbar-layers-quantized",)
    ensures = ("crossbar-layers-tiled",)
    rows: int = 0
    cols: int = 0

    def run(self, g: Graph, target=None) -> bool:
        crossbar = target.crossbar if target is not None else None
        if crossbar is not None:
            for option, value, size in (("rows", self.rows, crossbar.rows), ("cols", self.cols, crossbar.cols)):
                if not 0 <= value <= size:
                    raise CompileError(f"pass {self.name}: {option}={value} must be between 1 and the "
                                       f"target's {size} (0: use all {size})")
        changed = False
        for node, mapping in crossbar_layers(g):
            q = g.constants[mapping.quant.weights]
            groups, outs, width = q.shape
            kernel = int(np.prod(node.op.kernel)) if isinstance(node.op, ops.Conv) else 1
            channels = width // kernel
            per_out = TileArithmetic.planned(crossbar, mapping.quant.weight_bits).columns_per_weight
            try:
                blocks = plan_blocks(groups, channels, outs, kernel, self.rows or crossbar.rows,
                                     self.cols or crossbar.cols, per_out)
            except CompileError as e:
                raise CompileError(f"{node.describe()}: {e}") from None
            g.mapping[node.name] = replace(mapping, tiles=tuple(blocks))
            changed = True
        return changed
