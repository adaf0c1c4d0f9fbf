"""How many replicas each crossbar layer needs for a throughput-oriented mapping.

A program's throughput is bounded by its busiest unit: a core, or a crossbar (the reads of its
tile over all output positions). Replicas split a layer's positions, so they help only while
that layer's crossbars are busier than everything else. From a latency-oriented program this
gives each layer ceil(busiest tile's cycles / the busiest core's cycles) replicas — capped by the
crossbars of a core, the positions of the first output axis and the free crossbars of the chips
in use — the layers with the busiest crossbars first.
"""
from __future__ import annotations

import math
from collections import defaultdict

from nmc.backends.target import Target
from nmc.isa.instructions import Instr, Loop
from nmc.isa.program import Program
from nmc.runtime.costs import Cost, CostModel
from nmc.runtime.timing import estimate


def tile_busy(program: Program, target: Target) -> dict[str, float]:
    """Tile name → cycles its crossbar reads for one inference (loops counted)."""
    model = CostModel(program, target)
    per_read: dict[str, float] = {}
    busy: dict[str, float] = defaultdict(float)

    def walk(stmts, times: int) -> None:
        for s in stmts:
            if isinstance(s, Loop):
                walk(s.body, times * s.count)
            elif isinstance(s, Instr) and s.opcode == "xmvm":
                name = s.operands[1].name
                if name not in per_read:
                    cost = Cost()
                    model.mvm(name, cost)
                    per_read[name] = max((v for u, v in cost.busy.items() if u.kind in ("xbar", "adc")), default=0.0)
                busy[name] += times * per_read[name]

    for stream in program.cores.values():
        walk(stream, 1)
    return dict(busy)


def choose_replicas(program: Program, target: Target, positions: dict[str, int]) -> dict[str, int]:
    """Layer name → replicas (only layers that need more than one). ``positions``: layer name →
    length of its first output axis (the one replicas split)."""
    xb = target.crossbar
    if xb is None or not program.tiles:
        return {}
    floor = max(estimate(program, target).core_busy_cycles.values(), default=0.0)
    busy = tile_busy(program, target)
    layer_busy: dict[str, float] = defaultdict(float)
    blocks: dict[str, int] = defaultdict(int)
    for name, tile in program.tiles.items():
        layer = program.layers[tile.layer].name
        layer_busy[layer] = max(layer_busy[layer], busy.get(name, 0.0))
        blocks[layer] += 1
    chips = max(target.chips, 1)
    free = chips * xb.crossbars - len({(t.core, t.xbar, t.round) for t in program.tiles.values()})
    out = {}
    for layer in sorted(layer_busy, key=layer_busy.get, reverse=True):
        if floor <= 0 or layer_busy[layer] <= floor:
            break
        want = min(math.ceil(layer_busy[layer] / floor), xb.crossbars_per_core, positions.get(layer, 1))
        slack = xb.crossbars_per_core * blocks[layer]   # a block's replicas start a new core when they must
        affordable = 1 + max(free - slack, 0) // (blocks[layer] + 1)
        r = min(want, affordable)
        if r > 1:
            out[layer] = r
            free -= (r - 1) * blocks[layer] + slack
    return out
