"""What each instruction costs on a target: latency, the units it keeps busy, energy by
component, MACs. ``CostModel`` prices one instruction, a block and a counted loop (a parallel
loop: its body's latency plus one initiation interval per further iteration, the interval being
the busiest unit of the body; a sequential loop: count × its body's latency);
``timing.estimate`` schedules these costs over the cores' timelines.

Units are typed (``Unit("adc", tile)``, ``Unit("vector", core)``), not parsed strings.
"""
from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field

from nmc.backends.components import digital_cim_read_pj
from nmc.backends.devices import device_model
from nmc.backends.target import CrossbarCores, Target
from nmc.backends.tile_arithmetic import TileArithmetic
from nmc.isa.errors import NmcError
from nmc.isa.instructions import BINARY_OPS, COMPARE_OPS, Instr, Loop
from nmc.isa.program import Program
from nmc.isa.views import View

IO_LAYER = "(program i/o)"


class TimingError(NmcError):
    """The program cannot be costed on this target (CAM instructions without CAM cores, a deadlock)."""


@dataclass(frozen=True)
class Unit:
    """A resource an instruction keeps busy: a core's ``buffer`` port, ``vector`` unit, or a CAM
    core's ``cam`` arrays, ``cam_dac`` input DACs, ``cam_leaf`` match resolver with leaf memory and
    ``cam_reduce`` network adders (``id`` the core); or a tile's ``xbar`` array and its ``adc``s
    (``id`` the tile)."""

    kind: str
    id: int | str

    def __str__(self) -> str:
        return f"{self.kind}:{self.id}"


@dataclass
class Cost:
    """What one statement costs: its latency, how long it keeps each unit busy, and energy."""

    cycles: float = 0.0
    busy: dict = field(default_factory=lambda: defaultdict(float))     # unit -> cycles
    energy: dict = field(default_factory=lambda: defaultdict(float))   # component -> pJ
    layer_energy: dict = field(default_factory=lambda: defaultdict(float))
    layer_cycles: dict = field(default_factory=lambda: defaultdict(float))
    macs: float = 0.0
    analog_macs: float = 0.0

    def add(self, other: "Cost", times: float = 1.0) -> None:
        for unit, c in other.busy.items():
            self.busy[unit] += c * times
        for comp, e in other.energy.items():
            self.energy[comp] += e * times
        for layer, e in other.layer_energy.items():
            self.layer_energy[layer] += e * times
        for layer, c in other.layer_cycles.items():
            self.layer_cycles[layer] += c * times
        self.macs += other.macs * times
        self.analog_macs += other.analog_macs * times


class CostModel:
    """Prices statements for one inference alone, or, with ``streamed``, their share of a unit's
    time in a stream of inferences (a batched program's instruction runs over many inferences at
    once, so a vector unit or buffer port spends ``work / width`` cycles on each, not whole passes)."""

    def __init__(self, program: Program, target: Target, streamed: bool = False):
        self.p, self.t, self.c = program, target, target.costs
        self.streamed = streamed and program.batched
        self.ghz = target.clock_ghz
        self.xb: CrossbarCores | None = target.crossbar
        self.layer_names = {layer.index: layer.name for layer in program.layers}
        self.port_buffers = {q.buffer for q in program.inputs + program.outputs}
        self.cell_g_us = self.c.cell_g_us or (0.5 * device_model(target.device).g_max if self.c.read_v > 0 else 0.0)
        self.cam_cores = target.core_range("cam") if target.cam is not None else range(0)

    def ns(self, ns: float) -> float:
        return ns * self.ghz

    def passes(self, work: float) -> float:
        """Passes of a unit ``work`` widths long: whole ones for one inference; streamed, the
        inference's share of passes that carry the work of many."""
        return work if self.streamed else math.ceil(work)

    def bits(self, v: View) -> int:
        return v.size * 32

    def layer(self, ins: Instr) -> str:
        return self.layer_names.get(ins.layer, IO_LAYER)

    # ------------------------------------------------------------------ one instruction
    def instr(self, ins: Instr, core: int) -> Cost:
        cost = Cost()
        PRICES[ins.spec.cost](self, ins, core, cost)
        name = self.layer(ins)
        cost.layer_energy[name] += sum(cost.energy.values())
        cost.layer_cycles[name] += cost.cycles
        return cost

    def _dma(self, ins: Instr, core: int, cost: Cost) -> None:
        c, views = self.c, ins.views()
        dst = views[0]
        cost.cycles = self.passes(self.bits(dst) / 8 / c.buffer_bytes_per_cycle)
        cost.busy[Unit("buffer", core)] = cost.cycles
        cost.energy["buffer"] = 2 * self.bits(dst) * c.buffer_pj_per_bit
        if any(v.buffer in self.port_buffers for v in views):
            cost.energy["io"] = self.bits(dst) * c.io_pj_per_bit
            cost.cycles = max(cost.cycles, self.passes(self.bits(dst) / 8 / c.io_bytes_per_cycle))

    def _vector(self, ins: Instr, core: int, cost: Cost) -> None:
        """The vector unit: ``work`` lane operations of the instruction's cost class. On a CAM
        core (``_cam_periphery``) the same work is its input DACs or its reduction network."""
        if core in self.cam_cores:
            self._cam_periphery(ins, core, cost)
            return
        c, views, kind = self.c, ins.views(), ins.spec.cost
        if kind == "mvm":
            n, k = self.p.consts[ins.operands[1].name].shape[-2:]
            work = cost.macs = n * k
            energy = work * (c.vector_mul_pj + c.vector_op_pj)
        elif kind == "matmul":
            work = cost.macs = views[0].size * views[1].shape[-1]
            energy = work * (c.vector_mul_pj + c.vector_op_pj)
        elif kind == "cenc":  # one comparison per input and cut
            work = views[2].size + views[3].size
            energy = work * c.vector_op_pj
        elif kind == "reduce":
            work = views[1].size
            energy = work * c.vector_op_pj
        else:
            work = views[0].size
            per = c.vector_op_pj if kind == "vector" else c.vector_mul_pj
            operands = views[1:] if ins.opcode in COMPARE_OPS else views[:1] if ins.opcode == "select" else views
            if ins.opcode in BINARY_OPS + COMPARE_OPS + ("select",) and any(
                    self.p.dtype_of(v.buffer) == "i32" for v in operands):
                per = c.vector_int_op_pj
            energy = work * per
        slow = c.vector_special_cycles if kind == "vector_special" else 1
        cost.cycles = self.passes(work / c.vector_lanes) * slow
        cost.busy[Unit("vector", core)] = cost.cycles
        cost.energy["vector"] = energy
        cost.energy["buffer"] = sum(self.bits(v) for v in views) * c.buffer_pj_per_bit

    def _cam_periphery(self, ins: Instr, core: int, cost: Cost) -> None:
        """Digital-class work a CAM core does with its own periphery: ``cenc`` is its input DACs
        (one per feature column, converting at once: one cycle, a ``cell_bits`` level DAC each),
        an element-wise op (``add`` of two blocks' sums) one level of the reduction network's
        adders, ``fill`` clears its accumulator; a CAM core has no vector unit for anything else."""
        cam, views = self.t.cam, ins.views()
        if ins.spec.cost == "cenc":
            cost.cycles, unit = 1, "cam_dac"
            cost.energy["dac"] = views[0].size * self.c.dac_read_pj(cam.cell_bits)
        elif ins.opcode in BINARY_OPS:
            cost.cycles, unit = cam.reduce_cycles_per_level, "cam_reduce"
            cost.energy["cam_reduce"] = views[0].size * cam.reduce_pj_per_add
        elif ins.opcode == "fill":   # clearing the accumulator the leaves are added onto
            cost.cycles, unit = 1, "cam_leaf"
            cost.energy["buffer"] = self.bits(views[0]) * self.c.buffer_pj_per_bit
        else:
            raise TimingError(f"{ins.opcode} on CAM core {core}: a CAM core has DACs and a reduction network, "
                              "not a vector unit")
        cost.busy[Unit(unit, core)] = cost.cycles

    def _gather(self, ins: Instr, core: int, cost: Cost) -> None:
        """A table lookup is a digital memory read of the rows moved (and of the indices): the
        bits through the buffer port, each read from the table and written to dst."""
        c, (dst, _table, idx) = self.c, ins.views()
        bits = self.bits(dst) + self.bits(idx)
        cost.cycles = self.passes(bits / 8 / c.buffer_bytes_per_cycle)
        cost.busy[Unit("buffer", core)] = cost.cycles
        cost.energy["buffer"] = (2 * self.bits(dst) + self.bits(idx)) * c.buffer_pj_per_bit

    def _scheduled(self, ins: Instr, core: int, cost: Cost) -> None:
        """send, recv and sync: charged by the core timelines."""

    def xmvm_shape(self, ins: Instr | str) -> dict:
        """The counts one xmvm (or one MVM of the tile named) implies: reads, rows, outputs,
        slices, conversions."""
        tile = self.p.tiles[ins if isinstance(ins, str) else ins.operands[1].name]
        n, k = self.p.consts[tile.weights].shape
        arith = TileArithmetic.of(tile, self.xb)
        adcs = self.xb.adcs
        return dict(n=n, k=k, rows=k * tile.copies, slices=arith.slices, reads=arith.reads, cols=arith.columns(n),
                    conversions=arith.conversions(n), adcs=adcs, tile=tile.name,
                    ibits=arith.input_bits_per_phase, wbits=tile.weight_bits, bits_per_read=arith.bits_per_read)

    def _xmvm(self, ins: Instr, core: int, cost: Cost) -> None:
        self.mvm(ins.operands[1].name, cost)

    def mvm(self, tile: str, cost: Cost) -> None:
        """One MVM on a crossbar tile: its reads, conversions and columns from the tile arithmetic."""
        s = self.xmvm_shape(tile)
        c, xb = self.c, self.xb
        cost.macs = s["n"] * s["k"]
        cost.analog_macs = cost.macs if xb.analog else 0.0
        unit = Unit("xbar", s["tile"])
        if not xb.analog:
            per_read = 1.0  # one input bit per cycle through the adder trees
            cost.cycles = s["reads"] * per_read
            cost.busy[unit] = cost.cycles
            cost.energy["digital_cim"] = s["reads"] * digital_cim_read_pj(
                s["rows"], s["wbits"], s["ibits"], s["n"], c.digital_fa_pj, c.digital_gate_pj, xb.digital_adders)
            return
        t_read = self.ns(c.read_ns(s["bits_per_read"]))
        t_adc = math.ceil(s["conversions"] / s["adcs"]) * self.ns(c.adc_conversion_ns(xb.adc_bits))
        step = max(t_read, t_adc)
        # the next read overlaps this read's conversions: the first read, then one step per
        # further read, then the last read's conversions
        cost.cycles = t_read + (s["reads"] - 1) * step + t_adc
        cost.busy[unit] = s["reads"] * step
        cost.busy[Unit("adc", s["tile"])] = s["reads"] * t_adc
        # every copy of a weight is a driven row (its cells read, its DAC held)
        cost.energy["array"] = s["reads"] * s["rows"] * s["cols"] * c.cell_read_pj(s["bits_per_read"], self.cell_g_us)
        cost.energy["dac"] = s["reads"] * s["rows"] * c.dac_read_pj(s["bits_per_read"])
        cost.energy["adc"] = s["reads"] * s["conversions"] * c.adc_conversion_pj(xb.adc_bits)
        cost.energy["shift_add"] = s["reads"] * s["conversions"] * c.shift_add_pj

    def _cam(self, ins: Instr, core: int, cost: Cost) -> None:
        """Analog CAM (X-TIME figures, REFERENCE_DATA.md "Analog CAM"): a search takes
        ``search_cycles`` over all rows of the chained arrays; the match-line resolver then hands
        one match per cycle to leaf memory, and a tree-shaped reduction network adds the leaves (or,
        for cleafmin/cleafmax, compares them: a comparator is costed as an adder). The resolver is
        busy one cycle per match; leaf read and adder levels add latency, not occupancy."""
        cam = self.t.cam
        if cam is None:
            raise TimingError(f"the program searches analog CAM but target {self.t.name!r} has no CAM cores")
        if ins.opcode == "csearch":
            rows = ins.operands[1].shape[0]
            cells = int(ins.operands[5].value)
            cost.cycles = cam.search_cycles
            cost.energy["cam_search"] = rows * cells * cam.search_pj_per_cell
        else:
            targets = ins.operands[0].size
            matches = max(1, int(ins.operands[3].value))
            levels = math.ceil(math.log2(matches)) if matches > 1 else 0
            cost.cycles = (matches * cam.resolve_cycles_per_match + cam.leaf_read_cycles
                           + levels * cam.reduce_cycles_per_level)
            cost.energy["cam_leaf"] = matches * targets * cam.leaf_read_pj
            cost.energy["cam_reduce"] = (matches - 1) * targets * cam.reduce_pj_per_add
            # the leaf read and the adder levels are pipeline stages behind the resolver: the unit
            # takes the next search's matches while this one's leaves are still being added
            cost.busy[Unit("cam_leaf", core)] = matches * cam.resolve_cycles_per_match
            return
        cost.busy[Unit("cam", core)] = cost.cycles

    # ------------------------------------------------------------------ blocks and loops
    def block(self, stmts, core: int) -> Cost:
        total = Cost()
        for s in stmts:
            part = self.loop(s, core) if isinstance(s, Loop) else self.instr(s, core)
            total.add(part)
            total.cycles += part.cycles
        return total

    def loop(self, loop: Loop, core: int) -> Cost:
        """A parallel loop pipelines its iterations: the body's latency, then one initiation
        interval (the busiest unit) per further iteration. A sequential loop cannot start an
        iteration before the previous one ends: ``count`` times the body's latency."""
        body = self.block(loop.body, core)
        interval = max(body.busy.values(), default=body.cycles) or body.cycles
        out = Cost()
        out.add(body, loop.count)
        if loop.sequential:
            out.cycles = loop.count * body.cycles
        else:
            out.cycles = body.cycles + (loop.count - 1) * interval
        # layer_cycles stay the instructions' own cycles, count times over (shares of the work,
        # as the report uses them; pipelining shortens the loop's latency, not these)
        return out


# One formula per cost class of the instruction table (isa.instructions.COST_CLASSES).
PRICES = {"dma": CostModel._dma, "vector": CostModel._vector, "vector_mul": CostModel._vector,
          "vector_special": CostModel._vector, "reduce": CostModel._vector, "mvm": CostModel._vector,
          "matmul": CostModel._vector, "cenc": CostModel._vector, "xmvm": CostModel._xmvm,
          "cam_search": CostModel._cam, "cam_leaf": CostModel._cam, "scheduled": CostModel._scheduled,
          "gather": CostModel._gather}
