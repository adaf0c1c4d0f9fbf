"""What programming a chip costs: pulses, verify reads and calibration reads, per layer.

A crossbar programs one row at a time, the row's cells in parallel; crossbar cores program in
parallel, the crossbars of one core one after another. A row takes as many pulses as its
slowest cell (each pulse followed by a verify read under program-and-verify). Energy is per
cell and pulse (``[programming] pulse_pj``, ``verify_pj``). Per-column calibration reads
``calibration_inputs`` vectors per tile, each an MVM priced like one of inference
(``runtime.costs``). The figures come from a programmed chip (``runtime.machine.Chip``): the
pulses are the ones the simulated program-and-verify spent.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass

from nmc.backends.target import Target
from nmc.isa.program import Program
from nmc.runtime.costs import Cost, CostModel


@dataclass(frozen=True)
class LayerProgramming:
    """One layer's share: its tiles, devices (copies and both polarities counted), pulses."""

    layer: int
    name: str
    tiles: int
    devices: int
    pulses: int
    row_pulses: int
    verify_reads: int
    calibration_mvms: int
    time_s: float
    energy_pj: float


@dataclass(frozen=True)
class ProgrammingCost:
    """Programming one chip with a program: time (cores in parallel), energy, per layer."""

    layers: tuple[LayerProgramming, ...]
    time_s: float
    energy_pj: float

    @property
    def devices(self) -> int:
        return sum(layer.devices for layer in self.layers)

    @property
    def pulses(self) -> int:
        return sum(layer.pulses for layer in self.layers)

    @property
    def pulses_per_device(self) -> float:
        return self.pulses / self.devices if self.devices else 0.0

    def to_dict(self) -> dict:
        return {"time_s": self.time_s, "energy_pj": self.energy_pj, "devices": self.devices,
                "pulses": self.pulses, "pulses_per_device": self.pulses_per_device,
                "layers": [asdict(layer) for layer in self.layers]}


def programming_cost(program: Program, target: Target, tiles: dict) -> ProgrammingCost:
    """The cost of programming ``tiles`` (tile name → ``runtime.crossbar.ProgrammedTile``)."""
    return _aggregate(program, target, {
        name: (sum(lv.size for pair in t.levels for lv in pair) * program.tiles[name].copies, t.pulses,
               int(t.row_pulses.sum()), t.column_offset is not None)
        for name, t in tiles.items()})


def expected_cost(program: Program, target: Target) -> ProgrammingCost | None:
    """The same without programming a chip, where nothing in it is random: one pulse per device
    (no program-and-verify). None under program-and-verify, whose pulses the noise decides."""
    prog, xb = target.programming, target.crossbar
    if prog.write_verify or xb is None:
        return None
    from nmc.backends.devices import device_model
    from nmc.backends.tile_arithmetic import TileArithmetic

    noisy = xb.analog and (not device_model(target.device).ideal or target.device.adc_noise_lsb > 0
                           or target.device.adc_offset_lsb > 0)
    records = {}
    for name, tile in program.tiles.items():
        n, k = program.consts[tile.weights].shape
        devices = n * k * tile.copies * TileArithmetic.of(tile, xb).columns_per_weight
        records[name] = (devices, devices, k * tile.copies, prog.column_calibration and noisy)
    return _aggregate(program, target, records)


def _aggregate(program: Program, target: Target, records: dict) -> ProgrammingCost:
    """Per tile (devices, pulses, pulses of its rows one after another, calibrated?) → per layer
    and per chip: time (a core's crossbars one after another, cores in parallel) and energy."""
    prog = target.programming
    model = CostModel(program, target)
    names = {layer.index: layer.name for layer in program.layers}
    per_layer: dict[int, dict] = defaultdict(lambda: defaultdict(float))
    core_time: dict[int, float] = defaultdict(float)
    for name, (devices, pulses, row_pulses, calibrated) in records.items():
        tile = program.tiles[name]
        verifies = pulses if prog.write_verify else 0
        time_ns = row_pulses * (prog.pulse_ns + (prog.verify_ns if prog.write_verify else 0.0))
        energy = pulses * prog.pulse_pj + verifies * prog.verify_pj
        calibration = prog.calibration_inputs if calibrated else 0
        if calibration:
            cost = Cost()
            model.mvm(name, cost)
            energy += calibration * sum(cost.energy.values())
            time_ns += calibration * cost.cycles / target.clock_ghz
        row = per_layer[tile.layer]
        row["tiles"] += 1
        row["devices"] += devices
        row["pulses"] += pulses
        row["row_pulses"] += row_pulses
        row["verify_reads"] += verifies
        row["calibration_mvms"] += calibration
        row["time_s"] += time_ns * 1e-9
        row["energy_pj"] += energy
        core_time[tile.core] += time_ns * 1e-9
    layers = tuple(LayerProgramming(layer, names.get(layer, "?"), int(v["tiles"]), int(v["devices"]), int(v["pulses"]),
                                    int(v["row_pulses"]), int(v["verify_reads"]), int(v["calibration_mvms"]), v["time_s"], v["energy_pj"])
                   for layer, v in sorted(per_layer.items()))
    return ProgrammingCost(layers, max(core_time.values(), default=0.0), sum(v.energy_pj for v in layers))


def describe(prog, program: Program) -> str:
    """How the chip is programmed and kept accurate, in one line (``[programming]``)."""
    copies = sorted({t.copies for t in program.tiles.values()})
    parts = [f"program-and-verify to ±{100 * prog.tolerance:g}% of g_max in ≤ {prog.max_pulses} pulses"
             if prog.write_verify else "one pulse per device, no verify",
             (f"{copies[-1]} devices per weight" if len(copies) == 1 else f"{copies[0]}–{copies[-1]} devices per weight") if copies[-1] > 1 else "1 device per weight",
             f"per-column calibration ({prog.calibration_inputs} inputs per tile)" if prog.column_calibration else "",
             f"{prog.drift_compensation} drift compensation"]
    return "; ".join(p for p in parts if p)
