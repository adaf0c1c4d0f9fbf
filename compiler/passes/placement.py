"""placement: put every tile on a crossbar of a crossbar core."""
from __future__ import annotations

from dataclasses import dataclass, replace

from nmc.compiler.errors import CompileError
from nmc.compiler.ir.graph import Graph
from nmc.compiler.passes.base import Pass


class CapacityError(CompileError):
    """The model needs more crossbars than the target has."""


@dataclass(frozen=True)
class Placement(Pass):
    """Tiles fill crossbars in layer order, one tile per crossbar, core after core."""

    name = "placement"
    requires = ("crossbar-layers-tiled",)
    ensures = ("tiles-placed",)

    def run(self, g: Graph, target=None) -> bool:
        crossbar = target.crossbar if target is not None else None
        layers = [n for n in g.nodes() if g.mapping.get(n.name) is not None and g.mapping[n.name].unit == "crossbar"]
        needed = sum(len(g.mapping[n.name].tiles) for n in layers)
        if not needed:
            return False
        if needed > crossbar.crossbars:
            raise CapacityError(
                f"the model needs {needed} crossbars of {crossbar.rows}×{crossbar.cols} but target {target.name!r} has "
                f"{crossbar.crossbars} ({crossbar.count} cores × {crossbar.crossbars_per_core}); keep layers digital "
                f"(-p 'partition{{min_weights=...}}') or pick a larger target")
        base = target.core_range("crossbar").start
        index = 0
        for node in layers:
            tiles = []
            for t in g.mapping[node.name].tiles:
                tiles.append(replace(t, core=base + index // crossbar.crossbars_per_core,
                                     xbar=index % crossbar.crossbars_per_core))
                index += 1
            g.mapping[node.name] = replace(g.mapping[node.name], tiles=tuple(tiles))
        return True
