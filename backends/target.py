"""Targets: a chip described in a TOML file, read by compiler and runtime alike.

A target names its cores in ``[[cores]]`` groups: ``vector`` cores (digital units for
element-wise work, pooling, normalisation, requantisation) and ``crossbar`` cores (arrays that
hold stationary weights: analog PCM/RRAM/SRAM or bit-exact digital SRAM CIM). Device physics
is configured in ``[device]``. Every bad field is reported by its dotted name.
"""
from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass
from pathlib import Path

from nmc.backends import devices, scaling
from nmc.backends.components import ADDERS
from nmc.backends.costs import COST_FIELDS, Costs
from nmc.backends.tile_arithmetic import COMBINATIONS
from nmc.isa.errors import NmcError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

PRESET_DIR = Path(__file__).with_name("targets")
TECHNOLOGIES = ("pcm", "rram", "sram-analog", "sram-digital")
WEIGHT_SCHEMES = ("differential", "offset")


class TargetError(NmcError):
    """A target name is unknown or a target file has a bad field."""


CORE_ROLES = ("vector", "crossbar", "cam")  # the order in which cores are numbered


@dataclass(frozen=True)
class VectorCores:
    count: int
    precision: str
    buffer_kib: float = 0.0   # local buffer of each core (0: not stated, not checked)
    kind: str = "vector"


@dataclass(frozen=True)
class CrossbarCores:
    """``count`` cores, each with ``crossbars_per_core`` arrays of ``rows`` × ``cols`` cells."""

    count: int
    technology: str
    rows: int
    cols: int
    crossbars_per_core: int
    cell_bits: int
    weight_bits: int
    input_bits: int
    dac_bits: int
    adc_bits: int
    cols_per_adc: int
    weight_scheme: str
    buffer_kib: float = 0.0   # local buffer of each core (0: not stated, not checked)
    # weight slices: "digital" (an ADC conversion per slice, shift-and-add) or "charge" (combined by
    # binary-weighted charge sharing or a capacitor ladder before one conversion per weight)
    slice_combination: str = "digital"
    digital_adders: str = "tree"  # sram-digital: an adder tree per output, or "chain" (a full adder per bit cell)
    kind: str = "crossbar"

    @property
    def analog(self) -> bool:
        return self.technology != "sram-digital"

    @property
    def crossbars(self) -> int:
        return self.count * self.crossbars_per_core

    @property
    def adcs(self) -> int:
        """ADCs per crossbar: one per ``cols_per_adc`` columns, the last serving what is left."""
        return -(-self.cols // self.cols_per_adc)


@dataclass(frozen=True)
class CamCores:
    """``count`` analog-CAM cores of ``rows`` × ``cols`` range cells (``arrays_per_core`` arrays
    whose match lines are chained), ``cell_bits`` per bound, leaf memory and a reduction network.
    A feature whose code needs more levels spans up to ``max_cells_per_feature`` adjacent cells.
    Timing and energy per operation; defaults follow X-TIME (REFERENCE_DATA.md, "Analog CAM")
    where it gives a figure and are marked as assumptions where it does not."""

    count: int
    technology: str
    rows: int
    cols: int
    arrays_per_core: int
    cell_bits: int
    max_cells_per_feature: int = 2
    search_cycles: int = 4              # X-TIME: one search takes 4 cycles at 1 GHz
    resolve_cycles_per_match: int = 1   # X-TIME: the match-line resolver handles one match per cycle
    leaf_read_cycles: int = 1           # one leaf-memory (SRAM) read per matched row (assumption)
    reduce_cycles_per_level: int = 1    # one adder level of the tree-shaped reduction network (X-TIME)
    search_pj_per_cell: float = 0.03    # assumption: E = V²·G·t as for a crossbar cell (0.55 V, 10 ns, 100 kΩ)
    leaf_read_pj: float = 1.0           # assumption: one 32-bit SRAM word read (Horowitz 45 nm: ~1 pJ)
    reduce_pj_per_add: float = 0.9      # Horowitz 45 nm: FP32 add 0.9 pJ
    core_area_mm2: float = 0.0          # (0: not modelled)
    # inputs reach the data lines through a DAC per column on each core (X-TIME), instead of being
    # threshold-coded on the vector core and sent as codes
    input_dacs: bool = False
    # partial sums of the blocks: "chain" (block after block in tree order: float32 sums in
    # onnxruntime's order) or "tree" (pairwise through the network's adders: log2 levels)
    reduction: str = "chain"
    kind: str = "cam"

    @property
    def columns(self) -> int:
        return self.cols


@dataclass(frozen=True)
class Device:
    """Device physics switches and parameters; ``None`` fields use the model's published value.
    ``model`` names a class registered in ``backends/devices.py``, which reads the rest."""

    model: str
    g_max: float | None = None
    levels: int | None = None
    stuck_on_rate: float = 0.0
    stuck_off_rate: float = 0.0
    read_noise: bool = True
    programming_noise: bool = True
    drift: bool = True
    stuck_at: bool = True          # RRAM: stuck-at faults at stuck_on_rate / stuck_off_rate
    adc_noise_lsb: float = 0.0     # Gaussian noise per ADC conversion, in LSB
    adc_offset_lsb: float = 0.0    # static offset per ADC column, drawn once per programming, in LSB
    read_noise_rel: float = 0.0    # RRAM: relative conductance noise per read (σ / |g|)


@dataclass(frozen=True)
class Programming:
    """How the chip is programmed and kept accurate (``[programming]``), with what it costs.

    ``write_verify``: each cell is programmed, read back and reprogrammed until it lies within
    ``tolerance`` · g_max of its target or ``max_pulses`` pulses are spent (iterative
    program-and-verify, as PCM and RRAM inference chips program weights: Papandreou et al.,
    ISCAS 2011; Wan et al., Nature 2022; Le Gallo et al., Nat. Electron. 2023). Without it one
    pulse per cell. Each pulse costs ``pulse_ns`` and ``pulse_pj`` per cell and each verify read
    ``verify_ns`` and ``verify_pj``; a crossbar programs one row at a time (the row's cells in
    parallel), crossbar cores in parallel.
    ``copies``: up to this many devices per weight, on extra rows whose currents add on the same
    column (the ADC's full scale grows with them, so a conversion reads their mean), chosen per
    layer by sensitivity within ``copies_budget`` crossbars (0: every crossbar the model leaves
    free on the chip).
    ``column_calibration``: after programming, ``calibration_inputs`` random input vectors per
    tile read through the programmed cells fit a gain and an offset per output column against the
    exact products (applied digitally after recombination). ``drift_compensation``: ``global``
    (one factor per tile), ``column`` (one per output column) or ``none``."""

    write_verify: bool = False
    tolerance: float = 0.02
    max_pulses: int = 20
    # per cell and pulse: a PCM pulse of ~100 ns at ~10 pJ (RESET currents of 0.1–0.5 mA at ~1 V
    # for tens of ns: Burr et al., J. Vac. Sci. Technol. B 28, 223 (2010)); an order of magnitude
    pulse_ns: float = 100.0
    pulse_pj: float = 10.0
    verify_ns: float = 100.0    # a verify read: a read pulse and a sense (assumption)
    verify_pj: float = 0.1
    copies: int = 1
    copies_budget: int = 0
    column_calibration: bool = False
    calibration_inputs: int = 64
    drift_compensation: str = "global"
    inferences_per_round: int = 1  # reprogramming rounds (chip.overflow = "reprogram"): a batch per round

    @property
    def default(self) -> bool:
        return self == Programming()


DRIFT_COMPENSATIONS = ("global", "column", "none")
OVERFLOWS = ("error", "reprogram")
MAPPINGS = ("latency", "throughput", "dense")


@dataclass(frozen=True)
class Target:
    name: str
    summary: str
    clock_ghz: float
    rtol: float
    min_top1_agreement: float
    cores: tuple[VectorCores | CrossbarCores | CamCores, ...]
    device: Device
    source: str  # the TOML text, embedded in every compiled program
    costs: Costs = Costs()
    programming: Programming = Programming()
    chips: int = 1          # [chip] chips: chips in the system (0: as many as the model needs)
    overflow: str = "error" # [chip] overflow: beyond ``chips`` chips, "error" or "reprogram"
    mapping: str = "latency"  # [chip] mapping: "throughput" replicates the layers that bound the pipeline,
    # "dense" stacks blocks on the free rows of crossbars already used (fewer crossbars, reads serialised)
    node_nm: float = 0.0    # [chip] node_nm, supply_v: process node and supply (0: not stated; the
    supply_v: float = 0.0   # digital energies keep their sources' own, Horowitz's 45 nm at 0.9 V)

    def _count(self, group) -> int:
        """Cores of a group in the whole system: crossbar cores on every chip, the rest once
        (digital work runs on the first chip's vector cores)."""
        return group.count * max(self.chips, 1) if isinstance(group, CrossbarCores) else group.count

    @property
    def core_count(self) -> int:
        return sum(self._count(g) for g in self.cores)

    def chip_of(self, core: int) -> int:
        """Which chip a core is on: crossbar cores chip by chip, the others on chip 0."""
        xb = self.core_range("crossbar")
        if core not in xb or self.crossbar is None:
            return 0
        return (core - xb.start) // self.crossbar.count

    def core_range(self, kind: str) -> range:
        """The ids of the cores of role ``kind`` (``vector``, ``crossbar``, ``cam``). Cores are
        numbered by role — vector cores first, then crossbar cores, then CAM cores — whatever the
        order of the ``[[cores]]`` groups in the file (``parse_target`` puts them in role order)."""
        if kind not in CORE_ROLES:
            raise ValueError(f"unknown core role {kind!r}; roles: {', '.join(CORE_ROLES)}")
        first = 0
        ids = []
        for group in self.cores:
            if group.kind == kind:
                ids.extend(range(first, first + self._count(group)))
            first += self._count(group)
        return range(ids[0], ids[-1] + 1) if ids else range(first, first)

    @property
    def vector_core(self) -> int:
        """The core that runs the digital work (the first vector core)."""
        return self.core_range("vector").start

    @property
    def crossbar(self) -> CrossbarCores | None:
        groups = [g for g in self.cores if isinstance(g, CrossbarCores)]
        return groups[0] if groups else None

    @property
    def cam(self) -> CamCores | None:
        groups = [g for g in self.cores if isinstance(g, CamCores)]
        return groups[0] if groups else None

    def one_line(self) -> str:
        xb = self.crossbar
        if xb is None and self.cam is not None:
            cam = self.cam
            return f"{self.summary} [{cam.count} × {cam.rows}×{cam.cols} {cam.technology} CAM, {cam.cell_bits}-bit cells]"
        if xb is None:
            return self.summary
        return (f"{self.summary} [{xb.crossbars} × {xb.rows}×{xb.cols} {xb.technology}, "
                f"W{xb.weight_bits}/I{xb.input_bits}/ADC{xb.adc_bits}]")


_FIELDS = {
    "chip": {"name": (str, True), "summary": (str, True), "clock_ghz": (float, True), "chips": (int, False),
             "overflow": (str, False), "mapping": (str, False), "node_nm": (float, False), "supply_v": (float, False)},
    "verify": {"rtol": (float, True), "min_top1_agreement": (float, True)},
    "device": {"model": (str, True), "g_max": (float, False), "levels": (int, False),
               "stuck_on_rate": (float, False), "stuck_off_rate": (float, False), "read_noise": (bool, False),
               "programming_noise": (bool, False), "drift": (bool, False), "stuck_at": (bool, False),
               "adc_noise_lsb": (float, False),
               "adc_offset_lsb": (float, False), "read_noise_rel": (float, False)},
    "programming": {"write_verify": (bool, False), "tolerance": (float, False), "max_pulses": (int, False),
                    "pulse_ns": (float, False), "pulse_pj": (float, False), "verify_ns": (float, False),
                    "verify_pj": (float, False), "copies": (int, False), "copies_budget": (int, False),
                    "column_calibration": (bool, False), "calibration_inputs": (int, False),
                    "drift_compensation": (str, False), "inferences_per_round": (int, False)},
}
_VECTOR = {"kind": (str, True), "count": (int, True), "precision": (str, True), "buffer_kib": (float, False)}
_CROSSBAR = {"kind": (str, True), "count": (int, True), "technology": (str, True), "rows": (int, True),
             "cols": (int, True), "crossbars_per_core": (int, False), "cell_bits": (int, True),
             "weight_bits": (int, True), "input_bits": (int, True), "dac_bits": (int, True),
             "adc_bits": (int, True), "cols_per_adc": (int, False), "weight_scheme": (str, False),
             "buffer_kib": (float, False), "slice_combination": (str, False), "digital_adders": (str, False)}

_CAM = {"kind": (str, True), "count": (int, True), "technology": (str, True), "rows": (int, True),
        "cols": (int, True), "arrays_per_core": (int, False), "cell_bits": (int, True),
        "max_cells_per_feature": (int, False), "search_cycles": (int, False),
        "resolve_cycles_per_match": (int, False), "leaf_read_cycles": (int, False),
        "reduce_cycles_per_level": (int, False), "search_pj_per_cell": (float, False),
        "leaf_read_pj": (float, False), "reduce_pj_per_add": (float, False), "core_area_mm2": (float, False),
        "input_dacs": (bool, False), "reduction": (str, False)}
CAM_REDUCTIONS = ("chain", "tree")


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.toml"))


def load_target(name_or_path: str) -> Target:
    """A preset by name (``ideal``, ``pcm``, ...) or a TOML file by path."""
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists():
        if path.is_dir():
            raise TargetError(f"target {path} is a directory, not a .toml file")
        if not path.is_file():
            raise TargetError(f"target file {path} does not exist")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise TargetError(f"{path}: not a TOML target file (not UTF-8 text)") from None
        return parse_target(text, str(path))
    preset = PRESET_DIR / f"{name_or_path}.toml"
    if not preset.is_file():
        raise TargetError(f"unknown target {name_or_path!r}; presets: {', '.join(preset_names())} "
                          "(or pass a .toml file)")
    return parse_target(preset.read_text(), name_or_path)


def _table(origin: str, where: str, table: dict, schema: dict) -> dict:
    for key in table:
        if key not in schema:
            raise TargetError(f"{origin}: unknown field {where}.{key}; known: {', '.join(schema)}")
    out = {}
    for key, (kind, required) in schema.items():
        if key not in table:
            if required:
                raise TargetError(f"{origin}: missing field {where}.{key}")
            continue
        value = table[key]
        ok = isinstance(value, bool) if kind is bool else (
            isinstance(value, (int, float)) and not isinstance(value, bool) if kind is float else
            isinstance(value, kind) and not isinstance(value, bool))
        if not ok:
            raise TargetError(f"{origin}: field {where}.{key} = {value!r} should be a {kind.__name__}")
        out[key] = float(value) if kind is float else value
    return out


def _positive(origin: str, where: str, values: dict, *keys: str) -> None:
    for key in keys:
        if key in values and values[key] <= 0:
            raise TargetError(f"{origin}: field {where}.{key} = {values[key]} must be positive")


# [costs] fields whose defaults are Horowitz's 45-nm, 0.9-V energies: with [chip] node_nm and
# supply_v they scale to that node and supply (backends/scaling.py) unless the file sets them;
# so does buffer_pj_per_bit (from Horowitz's SRAM read; its default is ISAAC's eDRAM)
HOROWITZ_COSTS = ("vector_op_pj", "vector_mul_pj", "vector_int_op_pj", "digital_fa_pj", "digital_gate_pj")
# [costs] fields whose defaults are ISAAC's 32-nm digital components (1-bit DAC, shift-and-add): scaled
# the same way from scaling.ISAAC; its ADC's Walden figure scales with the supply only (adc_supply_factor)
ISAAC_COSTS = ("dac_pj", "shift_add_pj")


def _scale_to_node(origin: str, chip: dict, cost_values: dict) -> None:
    node, supply = chip.get("node_nm"), chip.get("supply_v")
    if node is None and supply is None:
        return
    if node is None or supply is None:
        raise TargetError(f"{origin}: chip.node_nm and chip.supply_v go together (the digital energies scale "
                          "with both)")
    defaults = {f.name: f.default for f in dataclasses.fields(Costs)}
    try:
        for key in HOROWITZ_COSTS:
            if key not in cost_values:
                cost_values[key] = scaling.scale_energy(defaults[key], scaling.HOROWITZ, (node, supply))
        for key in ISAAC_COSTS:
            if key not in cost_values:
                cost_values[key] = scaling.scale_energy(defaults[key], scaling.ISAAC, (node, supply))
        if "adc_walden_fj" not in cost_values:  # C·V²: an ADC's capacitors do not shrink with the node
            cost_values["adc_walden_fj"] = defaults["adc_walden_fj"] * scaling.adc_supply_factor(supply)
        if "buffer_pj_per_bit" not in cost_values:  # SRAM buffers at the node, not ISAAC's 32-nm eDRAM
            cost_values["buffer_pj_per_bit"] = scaling.scale_energy(scaling.HOROWITZ_SRAM_PJ_PER_BIT,
                                                                    scaling.HOROWITZ, (node, supply))
    except scaling.ScalingError as e:
        raise TargetError(f"{origin}: chip.node_nm = {node:g}, chip.supply_v = {supply:g}: {e}") from None


def _buffer(origin: str, where: str, values: dict) -> None:
    if values.get("buffer_kib", 0.0) < 0:
        raise TargetError(f"{origin}: field {where}.buffer_kib = {values['buffer_kib']} must not be negative "
                          "(0: not stated)")


def parse_target(text: str, origin: str = "<target>") -> Target:
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise TargetError(f"{origin}: not valid TOML: {e}") from None
    for key in doc:
        if key not in _FIELDS and key not in ("cores", "costs"):
            raise TargetError(f"{origin}: unknown section [{key}]; known: chip, verify, cores, device, costs, "
                              "programming")
    sections = {}
    for section in ("chip", "verify"):
        if not isinstance(doc.get(section), dict):
            raise TargetError(f"{origin}: missing section [{section}]")
        sections[section] = _table(origin, section, doc[section], _FIELDS[section])
    _positive(origin, "chip", sections["chip"], "clock_ghz")
    device_doc = doc.get("device", {"model": "none"})
    if not isinstance(device_doc, dict):
        raise TargetError(f"{origin}: [device] must be a table")
    dev = _table(origin, "device", device_doc, _FIELDS["device"])
    if dev["model"] not in devices.MODELS:
        raise TargetError(f"{origin}: device.model = {dev['model']!r}; known: {', '.join(devices.model_names())}")
    _positive(origin, "device", dev, "g_max", "levels")
    for key in ("stuck_on_rate", "stuck_off_rate"):
        if not 0 <= dev.get(key, 0.0) < 1:
            raise TargetError(f"{origin}: field device.{key} must be in [0, 1)")
    cores = []
    groups = doc.get("cores", [])
    if not isinstance(groups, list) or not groups:
        raise TargetError(f"{origin}: a target needs at least one [[cores]] group")
    for i, group in enumerate(groups):
        where = f"cores[{i}]"
        kind = group.get("kind") if isinstance(group, dict) else None
        if kind == "vector":
            v = _table(origin, where, group, _VECTOR)
            _positive(origin, where, v, "count")
            _buffer(origin, where, v)
            cores.append(VectorCores(v["count"], v["precision"], v.get("buffer_kib", 0.0)))
        elif kind == "crossbar":
            v = _table(origin, where, group, _CROSSBAR)
            _positive(origin, where, v, "count", "rows", "cols", "crossbars_per_core", "cell_bits", "weight_bits",
                      "input_bits", "dac_bits", "adc_bits", "cols_per_adc")
            if v["technology"] not in TECHNOLOGIES:
                raise TargetError(f"{origin}: {where}.technology = {v['technology']!r}; known: {', '.join(TECHNOLOGIES)}")
            scheme = v.get("weight_scheme", "differential")
            if scheme not in WEIGHT_SCHEMES:
                raise TargetError(f"{origin}: {where}.weight_scheme = {scheme!r}; known: {', '.join(WEIGHT_SCHEMES)}")
            if v["dac_bits"] > v["input_bits"] or v["cell_bits"] > v["weight_bits"]:
                raise TargetError(f"{origin}: {where}: dac_bits must not exceed input_bits, nor cell_bits weight_bits")
            combination = v.get("slice_combination", "digital")
            if combination not in COMBINATIONS:
                raise TargetError(f"{origin}: {where}.slice_combination = {combination!r}; known: "
                                  f"{', '.join(COMBINATIONS)}")
            if combination == "charge" and v["technology"] == "sram-digital":
                raise TargetError(f"{origin}: {where}: slice_combination = 'charge' needs analog arrays, not "
                                  "sram-digital (its adder trees add the weight bits exactly)")
            adders = v.get("digital_adders", "tree")
            if adders not in ADDERS:
                raise TargetError(f"{origin}: {where}.digital_adders = {adders!r}; known: {', '.join(ADDERS)}")
            _buffer(origin, where, v)
            cores.append(CrossbarCores(v["count"], v["technology"], v["rows"], v["cols"],
                                       v.get("crossbars_per_core", 1), v["cell_bits"], v["weight_bits"],
                                       v["input_bits"], v["dac_bits"], v["adc_bits"], v.get("cols_per_adc", 1),
                                       scheme, v.get("buffer_kib", 0.0), combination, adders))
        elif kind == "cam":
            v = _table(origin, where, group, _CAM)
            _positive(origin, where, v, "count", "rows", "cols", "arrays_per_core", "cell_bits",
                      "max_cells_per_feature", "search_cycles")
            if v["technology"] not in TECHNOLOGIES:
                raise TargetError(f"{origin}: {where}.technology = {v['technology']!r}; known: {', '.join(TECHNOLOGIES)}")
            if v["cell_bits"] > 8:
                raise TargetError(f"{origin}: {where}.cell_bits = {v['cell_bits']}: analog CAM cells hold at most "
                                  "8 bits (3–4 demonstrated); use max_cells_per_feature for more levels")
            if v["cols"] % v.get("arrays_per_core", 1):
                raise TargetError(f"{origin}: {where}: cols must divide evenly over arrays_per_core")
            for key in ("resolve_cycles_per_match", "leaf_read_cycles", "reduce_cycles_per_level",
                        "search_pj_per_cell", "leaf_read_pj", "reduce_pj_per_add", "core_area_mm2"):
                if v.get(key, 0) < 0:
                    raise TargetError(f"{origin}: field {where}.{key} must not be negative")
            if v.get("reduction", "chain") not in CAM_REDUCTIONS:
                raise TargetError(f"{origin}: {where}.reduction = {v['reduction']!r}; known: "
                                  f"{', '.join(CAM_REDUCTIONS)}")
            v.pop("kind")
            v.setdefault("arrays_per_core", 1)
            cores.append(CamCores(**v))
        else:
            raise TargetError(f"{origin}: {where}.kind = {kind!r}; known kinds: vector, crossbar, cam")
    cores.sort(key=lambda group: CORE_ROLES.index(group.kind))  # numbered by role, not by file order
    if not any(isinstance(c, VectorCores) for c in cores):
        raise TargetError(f"{origin}: a target needs a [[cores]] group of kind 'vector' for digital work")
    if sum(isinstance(c, CrossbarCores) for c in cores) > 1:
        raise TargetError(f"{origin}: at most one [[cores]] group of kind 'crossbar' is supported")
    if sum(isinstance(c, CamCores) for c in cores) > 1:
        raise TargetError(f"{origin}: at most one [[cores]] group of kind 'cam' is supported")
    costs_doc = doc.get("costs", {})
    if not isinstance(costs_doc, dict):
        raise TargetError(f"{origin}: [costs] must be a table")
    cost_schema = {k: (int if t in (int, "int") else float, False) for k, t in COST_FIELDS.items()}
    cost_values = _table(origin, "costs", costs_doc, cost_schema)
    for key, value in cost_values.items():
        if value < 0:
            raise TargetError(f"{origin}: field costs.{key} = {value} must not be negative")
    for key in ("vector_lanes", "buffer_bytes_per_cycle", "noc_bits_per_cycle", "io_bytes_per_cycle"):
        if key in cost_values and cost_values[key] == 0:
            raise TargetError(f"{origin}: field costs.{key} must be positive")
    chip, verify = sections["chip"], sections["verify"]
    _scale_to_node(origin, chip, cost_values)
    if chip.get("chips", 0) < 0:
        raise TargetError(f"{origin}: field chip.chips = {chip['chips']} must not be negative (0: as many as needed)")
    if chip.get("overflow", "error") not in OVERFLOWS:
        raise TargetError(f"{origin}: chip.overflow = {chip['overflow']!r}; known: {', '.join(OVERFLOWS)}")
    if chip.get("mapping", "latency") not in MAPPINGS:
        raise TargetError(f"{origin}: chip.mapping = {chip['mapping']!r}; known: {', '.join(MAPPINGS)}")
    return Target(chip["name"], chip["summary"], chip["clock_ghz"], verify["rtol"], verify["min_top1_agreement"],
                  tuple(cores), Device(**dev), text, Costs(**cost_values), _programming(origin, doc),
                  chip.get("chips", 0), chip.get("overflow", "error"), chip.get("mapping", "latency"),
                  chip.get("node_nm", 0.0), chip.get("supply_v", 0.0))


def _programming(origin: str, doc: dict) -> Programming:
    table = doc.get("programming", {})
    if not isinstance(table, dict):
        raise TargetError(f"{origin}: [programming] must be a table")
    v = _table(origin, "programming", table, _FIELDS["programming"])
    _positive(origin, "programming", v, "tolerance", "max_pulses", "copies", "calibration_inputs",
              "inferences_per_round")
    for key in ("pulse_ns", "pulse_pj", "verify_ns", "verify_pj", "copies_budget"):
        if v.get(key, 0) < 0:
            raise TargetError(f"{origin}: field programming.{key} = {v[key]} must not be negative")
    if v.get("drift_compensation", "global") not in DRIFT_COMPENSATIONS:
        raise TargetError(f"{origin}: programming.drift_compensation = {v['drift_compensation']!r}; "
                          f"known: {', '.join(DRIFT_COMPENSATIONS)}")
    return Programming(**v)


def with_fields(target: Target, fields: dict[str, object]) -> Target:
    """``target`` with fields set by dotted name (``{"programming.write_verify": True,
    "cores.crossbar.adc_bits": 6}``; a ``[[cores]]`` group is named by its kind), checked like a
    file. Its source becomes the TOML of the result (comments are not kept)."""
    doc = tomllib.loads(target.source)
    for name, value in fields.items():
        section, _, key = name.partition(".")
        if not key:
            raise TargetError(f"{name}: name a field as SECTION.FIELD (e.g. programming.write_verify)")
        if section == "cores":
            kind, _, key = key.partition(".")
            groups = [g for g in doc.get("cores", []) if g.get("kind") == kind]
            if not groups or not key:
                raise TargetError(f"{name}: the target has no [[cores]] group of kind {kind!r}")
            groups[0][key] = value
        else:
            doc.setdefault(section, {})[key] = value
    return parse_target(to_toml(doc), f"{target.name} with {', '.join(f'{k}={v}' for k, v in fields.items())}")


def to_toml(doc: dict) -> str:
    """A target document (tables of scalars, ``[[cores]]``) as TOML text."""
    def scalar(v) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, str):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        raise TargetError(f"cannot write {v!r} into a target file")

    lines = []
    for section, table in doc.items():
        groups = table if isinstance(table, list) else [table]
        for group in groups:
            lines.append(f"[[{section}]]" if isinstance(table, list) else f"[{section}]")
            lines += [f"{k} = {scalar(v)}" for k, v in group.items()]
            lines.append("")
    return "\n".join(lines)
