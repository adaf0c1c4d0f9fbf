"""Cycle-approximate timing, energy and area of a program on its target: the core-timeline
scheduler over the per-instruction costs of ``runtime/costs.py``.

The estimate reads the program, not the data: every instruction charges latency and energy to
the components it uses (from the target's ``[costs]``); cores run concurrently and meet at
``send``/``recv`` (a message arrives after its hops and its serialisation on the link; transfers
into one core share its ingress link) and ``sync``; the crossbars of a core run concurrently (a
loop of ``xmvm`` on one tile is handed to that crossbar, and the core waits for it only where it
touches the loop's buffers, at ``sync`` and at the end of its stream); a parallel loop costs its body's latency plus
one initiation interval per further iteration, the interval being the busiest unit of the body;
a sequential loop costs count × its body's latency, and one whose body exchanges messages (a
recurrence whose crossbars sit on other cores) is scheduled step by step. A CAM core's units
(network port, DACs, arrays, resolver and leaf memory, adders) are pipeline stages: its share of
the interval is its busiest unit's. Latency is one inference alone; the interval counts a batched
program's statements as shares of a stream of inferences (an instruction runs over many at once,
so its vector lanes and buffer port pass fractions of whole passes per inference). So timing costs
O(program × time steps), never O(pixels). Figures are for one inference (one sample).
"""
from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from nmc.backends.target import CamCores, Target, VectorCores
from nmc.backends.tile_arithmetic import TileArithmetic
from nmc.isa.instructions import Instr, Loop, exchanges_messages
from nmc.isa.program import Program
from nmc.runtime.costs import IO_LAYER, Cost, CostModel, TimingError, Unit
from nmc.runtime.display import html_table, si

__all__ = ["Stats", "estimate", "area", "crossbar_utilization", "COMPONENTS", "CostModel", "Cost", "Unit",
           "TimingError", "IO_LAYER"]

COMPONENTS = ("array", "dac", "adc", "shift_add", "digital_cim", "vector", "buffer", "noc", "link", "reprogram", "io",
              "cam_search", "cam_leaf", "cam_reduce")


@dataclass
class Stats:
    """Timing, energy and area of one inference, as ``nmc run --stats`` writes them."""

    target: str
    clock_ghz: float
    latency_cycles: float
    bottleneck_cycles: float
    energy_pj: dict
    energy_by_layer_pj: dict
    cycles_by_layer: dict
    macs: float
    analog_macs: float
    area_mm2: dict
    crossbar_utilization: float
    adc_utilization: float
    core_busy_cycles: dict

    @property
    def latency_s(self) -> float:
        return self.latency_cycles / (self.clock_ghz * 1e9)

    @property
    def throughput_per_s(self) -> float:
        """Steady-state inferences per second with the layers pipelined over the cores."""
        return self.clock_ghz * 1e9 / self.bottleneck_cycles if self.bottleneck_cycles else 0.0

    @property
    def energy_total_pj(self) -> float:
        return float(sum(self.energy_pj.values()))

    @property
    def ops(self) -> float:
        return 2.0 * self.macs

    def tops(self) -> float:
        return self.ops * self.throughput_per_s / 1e12

    def tops_per_w(self) -> float:
        return self.ops / (self.energy_total_pj * 1e-12) / 1e12 if self.energy_total_pj else 0.0

    def tops_per_mm2(self) -> float:
        area = sum(self.area_mm2.values())
        return self.tops() / area if area else 0.0

    def to_dict(self) -> dict:
        return {
            "target": self.target, "clock_ghz": self.clock_ghz,
            "latency_cycles": self.latency_cycles, "latency_s": self.latency_s,
            "throughput_per_s": self.throughput_per_s, "bottleneck_cycles": self.bottleneck_cycles,
            "energy_pj": {"total": self.energy_total_pj, **self.energy_pj},
            "energy_by_layer_pj": self.energy_by_layer_pj, "cycles_by_layer": self.cycles_by_layer,
            "macs": self.macs, "analog_macs": self.analog_macs,
            "ops_note": "ops = 2 x MACs, counted at each layer's own precision "
                        "(integer on crossbars, float32 on vector units)",
            "tops": self.tops(), "tops_per_w": self.tops_per_w(), "tops_per_mm2": self.tops_per_mm2(),
            "area_mm2": {"total": sum(self.area_mm2.values()), **self.area_mm2},
            "crossbar_utilization": self.crossbar_utilization, "adc_utilization": self.adc_utilization,
            "core_busy_cycles": self.core_busy_cycles,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)

    def _repr_html_(self) -> str:
        energy = self.energy_total_pj * 1e-12
        parts = sorted(((k, v) for k, v in self.energy_pj.items() if v > 0), key=lambda kv: -kv[1])
        rows = [("latency", f"{self.latency_cycles:,.0f} cycles = {si(self.latency_s, 's')}"),
                ("throughput", f"{self.throughput_per_s:,.0f} inferences/s pipelined"),
                ("energy", f"{si(energy, 'J')} per inference"),
                *((f"  {k}", f"{100 * v / self.energy_total_pj:.1f} %") for k, v in parts),
                ("efficiency", f"{self.tops():.3g} TOPS, {self.tops_per_w():.3g} TOPS/W, "
                               f"{self.tops_per_mm2():.3g} TOPS/mm²"),
                ("area", f"{sum(self.area_mm2.values()):.3g} mm²"),
                ("crossbar cells used", f"{100 * self.crossbar_utilization:.1f} %")]
        return html_table(f"one inference on {self.target} at {self.clock_ghz:g} GHz", rows)


def _mesh(core: int, width: int) -> tuple[int, int]:
    return divmod(core, width)


def _leaves(stmt):
    if isinstance(stmt, Loop):
        for s in stmt.body:
            yield from _leaves(s)
    else:
        yield stmt


def _crossbar_work(stmt) -> tuple[str, set, set] | None:
    """``(tile, buffers read, buffers written)`` when ``stmt`` only runs ``xmvm`` on one tile: the
    core hands it to that crossbar (with its own ADCs) and goes on issuing."""
    leaves = list(_leaves(stmt))
    if not leaves or any(not isinstance(i, Instr) or i.opcode != "xmvm" for i in leaves):
        return None
    tiles = {i.operands[1].name for i in leaves}
    if len(tiles) != 1:
        return None
    return tiles.pop(), {i.operands[2].buffer for i in leaves}, {i.operands[0].buffer for i in leaves}


def _unrolled(stmts) -> list:
    """The statements a core's timeline walks: a sequential loop that exchanges messages is laid
    out iteration by iteration (the cores meet inside it, so each step waits for the last);
    every other statement stays whole and is priced as one."""
    out = []
    for s in stmts:
        if isinstance(s, Loop) and s.sequential and exchanges_messages(s):
            out.extend(_unrolled(s.body) * s.count)
        else:
            out.append(s)
    return out


def _buffers(stmt) -> set:
    return {v.buffer for i in _leaves(stmt) if isinstance(i, Instr) for v in i.views()}


def estimate(program: Program, target: Target) -> Stats:
    """Timing, energy and area of one inference of ``program`` on ``target``."""
    model = CostModel(program, target)
    c = target.costs
    cores = sorted(program.cores)
    width = max(1, math.ceil(math.sqrt(max(cores) + 1)))
    clock = {core: 0.0 for core in cores}
    busy = {core: 0.0 for core in cores}
    # a CAM core's units (network port, DACs, arrays, resolver and leaf memory, adders) form a
    # pipeline: each is busy with its own share of an inference, the core is not busy with their sum
    pipelined = set(target.core_range("cam")) if target.cam is not None else set()
    port = defaultdict(float)   # CAM core -> its network port's cycles per inference, then its busiest unit's
    pcs = {core: 0 for core in cores}
    mail: dict = defaultdict(list)   # (src, dst) -> [arrival times]
    ingress_free = defaultdict(float)
    # crossbar work in flight: a core's crossbars run concurrently with each other and with
    # the core, which waits only for a buffer they read (before overwriting it) or write
    tile_free: dict = defaultdict(float)   # physical crossbar → when its last read finishes
    physical = {name: (t.core, t.xbar, t.round) for name, t in program.tiles.items()}
    written: dict = defaultdict(float)   # (core, buffer) -> when the crossbar writing it finishes
    read: dict = defaultdict(float)      # (core, buffer) -> when the crossbar reading it finishes
    drained = defaultdict(float)         # core -> when all its crossbar work finishes

    def wait(core: int, stmt) -> float:
        return max((max(written[(core, b)], read[(core, b)]) for b in _buffers(stmt)), default=0.0)

    sync_level = {core: 0 for core in cores}
    arrived: dict = defaultdict(dict)  # sync level -> {core: arrival time}
    total = Cost()
    done = set()
    streams = {core: _unrolled(program.cores[core]) for core in cores}
    # latency prices one inference alone; the throughput side prices each unit's share of a stream
    # of inferences (a batched program's instructions run over many at once: fractional passes of a
    # vector unit or port). An unrolled step is priced once per model: (model, id(statement), core)
    streamed = CostModel(program, target, streamed=True)
    models = {False: model, True: streamed if streamed.streamed else model}
    priced: dict = {}

    def price(s, core: int, share: bool = False) -> Cost:
        m = models[share]
        key = (id(m), id(s), core)
        if key not in priced:
            priced[key] = m.loop(s, core) if isinstance(s, Loop) else m.instr(s, core)
        return priced[key]

    shares = Cost()

    while len(done) < len(cores):
        progressed = False
        for core in cores:
            stream = streams[core]
            while pcs[core] < len(stream):
                s = stream[pcs[core]]
                work = _crossbar_work(s)
                if isinstance(s, Instr) and s.opcode == "send":
                    peer = s.operands[0].core
                    bits = model.bits(s.operands[1])
                    (r0, c0), (r1, c1) = _mesh(core, width), _mesh(peer, width)
                    hops = abs(r0 - r1) + abs(c0 - c1) + 1
                    serial = math.ceil(bits / c.noc_bits_per_cycle)
                    flight = hops * c.noc_hop_cycles
                    if target.chip_of(core) != target.chip_of(peer):   # over the chip-to-chip link
                        serial = max(serial, math.ceil(bits / (c.link_gb_per_s * 8 / target.clock_ghz)))
                        flight += c.link_latency_ns * target.clock_ghz
                        e = bits * c.link_pj_per_bit
                        total.energy["link"] += e
                        total.layer_energy[model.layer(s)] += e
                    data = wait(core, s)
                    start = max(clock[core], data, ingress_free[peer])
                    ingress_free[peer] = start + serial
                    mail[(core, peer)].append(start + serial + flight)
                    if data > clock[core]:
                        # results of crossbar work in flight: the message leaves when they are
                        # ready, and the core goes on issuing
                        read[(core, s.operands[1].buffer)] = start + serial
                        drained[core] = max(drained[core], start + serial)
                    else:
                        clock[core] = start + serial
                        if core in pipelined:
                            port[core] += serial
                        else:
                            busy[core] += serial
                    e = bits * hops * c.noc_pj_per_bit_hop
                    total.energy["noc"] += e
                    total.layer_energy[model.layer(s)] += e
                elif isinstance(s, Instr) and s.opcode == "recv":
                    peer = s.operands[1].core
                    if not mail[(peer, core)]:
                        break
                    clock[core] = max(clock[core], mail[(peer, core)].pop(0), wait(core, s))
                elif isinstance(s, Instr) and s.opcode == "sync":
                    clock[core] = max(clock[core], drained[core])
                    level = sync_level[core] + 1
                    arrived[level].setdefault(core, clock[core])
                    if len(arrived[level]) < len(cores):
                        break
                    sync_level[core] = level
                    clock[core] = max(arrived[level].values())
                elif work is not None:
                    tile, reads, writes = work
                    cost = price(s, core)
                    total.add(cost)
                    shares.add(cost)   # crossbar reads: the same in a stream (no lanes to share)
                    array = physical[tile]   # tiles stacked on one crossbar read one after another
                    start = max([clock[core], tile_free[array]] + [written[(core, b)] for b in reads]
                                + [max(written[(core, b)], read[(core, b)]) for b in writes])
                    finish = start + cost.cycles
                    tile_free[array] = finish
                    for b in reads:
                        read[(core, b)] = max(read[(core, b)], finish)
                    for b in writes:
                        written[(core, b)] = max(written[(core, b)], finish)
                    drained[core] = max(drained[core], finish)
                else:
                    cost = price(s, core)
                    total.add(cost)
                    part = price(s, core, share=True)
                    shares.add(part)
                    clock[core] = max(clock[core], wait(core, s)) + cost.cycles
                    if core not in pipelined:
                        busy[core] += part.cycles
                pcs[core] += 1
                progressed = True
            if pcs[core] >= len(stream):
                clock[core] = max(clock[core], drained[core])
                done.add(core)
        if not progressed and len(done) < len(cores):
            raise TimingError("timing: the cores deadlock (send/recv/sync mismatch)")
    latency = max(clock.values())
    per_array: dict = defaultdict(float)   # a crossbar's units are busy with all its tiles' reads
    for unit, cycles in shares.busy.items():
        per_array[(unit.kind, physical[unit.id]) if unit.kind in ("xbar", "adc") else unit] += cycles
    for unit, cycles in per_array.items():   # a CAM core is as busy as its busiest unit
        if isinstance(unit, Unit) and unit.id in pipelined:
            port[unit.id] = max(port[unit.id], cycles)
    for core in pipelined & set(cores):
        busy[core] = port[core]
    bottleneck = max(max(busy.values()), max(per_array.values(), default=0.0))
    reprogram_cycles, reprogram_pj = reprogramming(program, target)
    if reprogram_cycles:   # rounds run one after another: no pipelining across them
        latency += reprogram_cycles
        bottleneck = latency
        total.energy["reprogram"] += reprogram_pj
    return Stats(
        target=target.name, clock_ghz=target.clock_ghz, latency_cycles=latency, bottleneck_cycles=bottleneck,
        energy_pj={k: float(total.energy.get(k, 0.0)) for k in COMPONENTS},
        energy_by_layer_pj={k: float(v) for k, v in total.layer_energy.items()},
        cycles_by_layer={k: float(v) for k, v in total.layer_cycles.items()},
        macs=total.macs, analog_macs=total.analog_macs, area_mm2=area(program, target),
        crossbar_utilization=crossbar_utilization(program, target),
        adc_utilization=_adc_utilization(total, program, target, latency),
        core_busy_cycles={str(k): v for k, v in busy.items()})


def reprogramming(program: Program, target: Target) -> tuple[float, float]:
    """Cycles and pJ per inference of reprogramming a system whose tiles come in several rounds
    (``chip.overflow = "reprogram"``): every round is programmed again for each batch of
    ``programming.inferences_per_round`` inferences. A tile takes one pulse per device (and one
    verify read under program-and-verify: a lower bound, as re-verified cells may take more),
    its rows one after another; the crossbars of a core one after another, cores in parallel."""
    if not program.tiles or max(t.round for t in program.tiles.values()) == 0:
        return 0.0, 0.0
    prog, xb = target.programming, target.crossbar
    per_row_ns = prog.pulse_ns + (prog.verify_ns if prog.write_verify else 0.0)
    per_device_pj = prog.pulse_pj + (prog.verify_pj if prog.write_verify else 0.0)
    busy: dict = defaultdict(float)   # (round, core) -> ns
    energy = 0.0
    for t in program.tiles.values():
        n, k = program.consts[t.weights].shape
        busy[(t.round, t.core)] += k * t.copies * per_row_ns
        energy += n * k * t.copies * TileArithmetic.of(t, xb).columns_per_weight * per_device_pj
    rounds = max(t.round for t in program.tiles.values()) + 1
    ns = sum(max(v for (r, _), v in busy.items() if r == rr) for rr in range(rounds))
    return ns * target.clock_ghz / prog.inferences_per_round, energy / prog.inferences_per_round


def crossbar_utilization(program: Program, target: Target) -> float:
    """Cells holding weights over the cells of all crossbars of the system (of every round)."""
    xb = target.crossbar
    if xb is None or not program.tiles:
        return 0.0
    used = sum(int(np.prod(program.consts[t.weights].shape)) * t.copies * TileArithmetic.of(t, xb).columns_per_weight
               for t in program.tiles.values())
    rounds = max(t.round for t in program.tiles.values()) + 1   # reprogrammed crossbars count once per round
    return used / (xb.crossbars * max(target.chips, 1) * rounds * xb.rows * xb.cols)


def _adc_utilization(total: Cost, program: Program, target: Target, latency: float) -> float:
    xb = target.crossbar
    if xb is None or not program.tiles or latency == 0 or not xb.analog:
        return 0.0
    adc_busy = sum(v for k, v in total.busy.items() if k.kind == "adc")
    arrays = len({(t.core, t.xbar, t.round) for t in program.tiles.values()})
    return adc_busy / (arrays * latency)


def area(program: Program, target: Target) -> dict:
    """Area by component (mm²) from the target's component counts, every chip of the system counted."""
    c = target.costs
    chips = max(target.chips, 1)
    out = {"vector_cores": 0.0, "buffers": 0.0, "crossbars": 0.0, "adcs": 0.0, "io": c.io_area_mm2}
    for group in target.cores:
        out["buffers"] += group.count * c.buffer_area_mm2
        if isinstance(group, VectorCores):
            out["vector_cores"] += group.count * c.vector_core_area_mm2
        elif isinstance(group, CamCores):
            out["cam_cores"] = out.get("cam_cores", 0.0) + group.count * group.core_area_mm2
        else:
            adcs = group.adcs if group.analog else 0
            out["crossbars"] += group.crossbars * (c.crossbar_core_area_mm2
                                                   + group.rows * group.cols * c.array_area_um2_per_cell * 1e-6)
            out["adcs"] += group.crossbars * adcs * c.adc_area_um2 * 1e-6
    return {k: v * chips for k, v in out.items()}
