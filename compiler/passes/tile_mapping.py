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
    0 means "the target's crossbar size".

    Redundancy: with ``copies`` > 1 (default: the target's ``programming.copies``) a layer may
    store each weight on up to that many rows (a block then holds rows // copies matrix rows).
    Copies are given one at a time where they cost the fewest extra crossbars per unit of noise
    removed (a layer's read and programming noise variance falls as 1/copies, so going from k to
    k + 1 removes 1/k − 1/(k + 1) of it), each layer weighted by ``sensitivity`` (name=weight
    pairs by the program's layer names; default 1), until ``copies_budget`` extra crossbars are spent (default: the target's;
    0 there means every crossbar the model leaves free).

    Replication (throughput-oriented mapping: ``replicate``, default the target's
    ``chip.mapping = "throughput"``): the driver compiles without replicas, measures which layers'
    crossbars bound the throughput (``compiler.replication``) and runs this pass again with
    ``replicas`` per layer; each block of such a layer is then placed that many times on one
    core, each replica computing a share of the positions (split along the first output axis)."""

    name = "tile-mapping"
    requires = ("crossbar-layers-quantized",)
    ensures = ("crossbar-layers-tiled",)
    rows: int = 0
    cols: int = 0
    copies: int = 0
    copies_budget: int = -1
    sensitivity: tuple[tuple[str, float], ...] = ()
    replicate: str = ""   # "yes" / "no"; empty: the target's chip.mapping
    replicas: tuple[tuple[str, int], ...] = ()   # layer name → replicas (compiler.replication), else greedy

    def run(self, g: Graph, target=None) -> bool:
        crossbar = target.crossbar if target is not None else None
        if crossbar is not None:
            for option, value, size in (("rows", self.rows, crossbar.rows), ("cols", self.cols, crossbar.cols)):
                if not 0 <= value <= size:
                    raise CompileError(f"pass {self.name}: {option}={value} must be between 1 and the "
                                       f"target's {size} (0: use all {size})")
        layers = list(crossbar_layers(g))
        if not layers:
            return False
        rows = self.rows or crossbar.rows

        def plan(node, mapping, copies: int) -> list[TileBlock]:
            q = g.constants[mapping.quant.weights]
            groups, outs, width = q.shape
            kernel = int(np.prod(node.op.kernel)) if isinstance(node.op, ops.Conv) else 1
            channels = width // kernel
            per_out = TileArithmetic.planned(crossbar, mapping.quant.weight_bits).columns_per_weight
            try:
                blocks = plan_blocks(groups, channels, outs, kernel, rows // copies, self.cols or crossbar.cols, per_out)
            except CompileError as e:
                raise CompileError(f"{node.describe()}: {e}") from None
            return [replace(b, copies=copies) for b in blocks]

        plans = {node.name: plan(node, mapping, 1) for node, mapping in layers}
        most = self.copies or (target.programming.copies if target is not None else 1)
        if most > 1 and layers:
            plans = self._redundancy(layers, plans, plan, most, target)
        if self.replicas:
            plans = self._replicate(g, layers, plans, crossbar, dict(self.replicas))
        for node, mapping in layers:
            g.mapping[node.name] = replace(mapping, tiles=tuple(plans[node.name]))
        return True

    @staticmethod
    def _replicate(g: Graph, layers, plans, crossbar, given: dict[str, int]) -> dict[str, list[TileBlock]]:
        """Each block of a layer named in ``given`` (layer name → replicas, measured by the driver:
        compiler.replication) that many times, at most one per crossbar of a core and per
        position of the layer's first output axis."""
        out = {}
        for node, _ in layers:
            shape = g.shape(node.outputs[0])
            axis = shape[2] if isinstance(node.op, ops.Conv) else int(np.prod(shape[:-1]))
            r = max(1, min(given.get(node.onnx_name or node.name, 1), axis, crossbar.crossbars_per_core))
            out[node.name] = [replace(b, replica=i, replicas=r) for b in plans[node.name] for i in range(r)]
        return out

    def _redundancy(self, layers, plans, plan, most: int, target) -> dict[str, list[TileBlock]]:
        """Greedy: the copy that removes the most weighted noise per extra crossbar, while the
        budget lasts; copies that fit in a block's free rows cost nothing and come first."""
        budget = self.copies_budget if self.copies_budget >= 0 else target.programming.copies_budget
        if budget == 0:
            budget = max(target.crossbar.crossbars - sum(len(p) for p in plans.values()), 0)
        weight = dict(self.sensitivity)  # by layer name, as in the program (the ONNX node's)
        label = {node.name: node.onnx_name or node.name for node, _ in layers}
        unknown = sorted(set(weight) - set(label.values()))
        if unknown:
            raise CompileError(f"pass {self.name}: sensitivity names no crossbar layer: {', '.join(unknown)}")
        copies = {node.name: 1 for node, _ in layers}
        spent = 0
        while True:
            best = None
            for node, mapping in layers:
                k = copies[node.name]
                if k >= most:
                    continue
                try:  # a kernel window taller than rows // (k + 1) cannot take another copy
                    more = plan(node, mapping, k + 1)
                except CompileError:
                    continue
                extra = len(more) - len(plans[node.name])
                if spent + extra > budget:
                    continue
                gain = weight.get(label[node.name], 1.0) * (1 / k - 1 / (k + 1))
                key = (extra == 0, gain / max(extra, 1e-9) if extra else gain)
                if best is None or key > best[0]:
                    best = (key, node.name, more, extra)
            if best is None:
                return plans
            _, name, more, extra = best
            plans[name], copies[name] = more, copies[name] + 1
            spent += extra
