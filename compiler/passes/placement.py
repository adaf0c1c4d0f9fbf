"""placement: put every tile on a crossbar of a crossbar core."""
from __future__ import annotations

from dataclasses import dataclass, replace

from nmc.compiler.errors import CompileError
from nmc.compiler.ir.graph import Graph
from nmc.compiler.ir.mapping import ChipPlan
from nmc.compiler.passes.base import Pass


class CapacityError(CompileError):
    """The model needs more crossbars than the target has."""


@dataclass(frozen=True)
class Placement(Pass):
    """Tiles fill crossbars in layer order, one tile per crossbar, core after core, chip after
    chip. A model needing more crossbars than one chip has spreads over more chips when the
    target's ``chip.chips`` is 0 (as many as needed) or large enough; beyond ``chip.chips``
    chips, ``chip.overflow = "reprogram"`` reuses the crossbars in rounds (each reprogrammed
    per batch, costed by the timing model), else it is an error."""

    name = "placement"
    requires = ("crossbar-layers-tiled",)
    ensures = ("tiles-placed",)

    def run(self, g: Graph, target=None) -> bool:
        crossbar = target.crossbar if target is not None else None
        layers = [n for n in g.nodes() if g.mapping.get(n.name) is not None and g.mapping[n.name].unit == "crossbar"]
        if not any(g.mapping[n.name].tiles for n in layers):
            return False
        per_core = crossbar.crossbars_per_core
        dense = target.mapping == "dense"
        slots, rows, index = [], [], 0   # crossbar index and first row of each tile
        free: dict[int, int] = {}        # dense: open crossbar → rows used
        for node in layers:
            for t in g.mapping[node.name].tiles:
                need = t.rows * t.copies
                if dense and t.replicas == 1:
                    spot = next((i for i, used in free.items() if used + need <= crossbar.rows), None)
                    if spot is not None:
                        slots.append(spot)
                        rows.append(free[spot])
                        free[spot] += need
                        continue
                if t.replica == 0 and index % per_core + t.replicas > per_core:  # replicas stay on one core
                    index += per_core - index % per_core
                slots.append(index)
                rows.append(0)
                if dense and t.replicas == 1:
                    free[index] = need
                    if len(free) > 64:               # look back over the last 64 open crossbars only
                        free.pop(next(iter(free)))
                index += 1
        needed = index
        per_chip = crossbar.crossbars
        chips = -(-needed // per_chip) if target.chips == 0 else min(target.chips, -(-needed // per_chip))
        if needed > chips * per_chip and target.overflow != "reprogram":
            raise CapacityError(
                f"the model needs {needed} crossbars of {crossbar.rows}×{crossbar.cols} but target {target.name!r} has "
                f"{per_chip} per chip ({crossbar.count} cores × {crossbar.crossbars_per_core}) and chip.chips = "
                f"{target.chips}; allow more chips (--set chip.chips=0: as many as needed), reprogram the crossbars "
                f"in rounds (--set chip.overflow=reprogram), keep layers digital (-p 'partition{{min_weights=...}}') "
                f"or pick a larger target")
        system = chips * per_chip
        base = target.core_range("crossbar").start
        spots = iter(zip(slots, rows))
        for node in layers:
            tiles = []
            for t in g.mapping[node.name].tiles:
                index, row = next(spots)
                slot = index % system
                tiles.append(replace(t, core=base + slot // per_core, xbar=slot % per_core, round=index // system,
                                     row=row))
            g.mapping[node.name] = replace(g.mapping[node.name], tiles=tuple(tiles))
        g.chip_plan = ChipPlan(chips, -(-needed // system), min(len(set(slots)), system))
        return True
