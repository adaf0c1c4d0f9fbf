"""``nmc report``: what a compiled program does on its chip, from the ``.nmc`` file alone.

The report is one JSON-able dictionary (``build_report``) that the HTML and Markdown templates
render and the JSON format prints as it is, so the three formats carry the same figures. Its
timing, energy and area come from ``runtime.timing.estimate``; with inputs, ``evaluate`` runs
the program (over trials and drift times on noisy targets) and compares with labels and
onnxruntime. Like ``compiler/verify.py`` this is a separate step that imports the runtime.
"""
from __future__ import annotations

import html
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nmc.backends.devices import device_model
from nmc.backends.target import Target
from nmc.compiler.progress import ProgressCallback, part
from nmc.compiler.reports import mapping_table
from nmc.compiler.trials import Spread
from nmc.isa.errors import NmcError
from nmc.isa.files import write_atomic
from nmc.isa.instructions import Loop
from nmc.isa.program import Program
from nmc.runtime.compiled import load as load_compiled
from nmc.runtime.timing import IO_LAYER, Stats, estimate

REPORT_VERSION = 1
DEFAULT_TIMES = (("0", 0.0), ("1h", 3600.0), ("1d", 86400.0))  # (as written, seconds)
DEFAULT_NOISY_TRIALS = 3

# Colours of layers on the floor plan and the charts: Tableau 10, then golden-angle hues.
_PALETTE = ("#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
            "#9c755f", "#bab0ac")
VECTOR_COLOR = "#8a94a6"


def layer_color(i: int) -> str:
    if i < len(_PALETTE):
        return _PALETTE[i]
    return f"hsl({(i * 137.508) % 360:.0f}, 55%, 55%)"


@dataclass
class ReportInputs:
    """What ``evaluate`` needs to run a program: inputs, and optionally labels and the model."""

    inputs: dict[str, np.ndarray]
    labels: np.ndarray | None = None
    model: str | os.PathLike | None = None
    trials: int | None = None              # None: DEFAULT_NOISY_TRIALS on noisy targets, else 1
    times: list[tuple[str, float]] = field(default_factory=list)  # (as written, seconds); [] = default
    seed: int = 0
    noise: bool = True
    drift_compensation: bool = True


# ----------------------------------------------------------------------------- the program file
def load(path: str | os.PathLike) -> tuple[Program, Target, dict]:
    """A ``.nmc`` file → (program, the target stored in it, its mapping table)."""
    loaded = load_compiled(path)
    return loaded.program, loaded.target, mapping_table.read(loaded.attachments, loaded.program, loaded.target)


def noisy(target: Target) -> bool:
    """Whether two runs (seeds) of a program on this target can differ: on analog crossbars
    device noise, ADC noise or ADC offsets (drawn per seed); on analog CAM the programmed bounds'
    spread (the runtime asks the same ``cam_bound_sigma``)."""
    model = device_model(target.device)
    xb, cam, device = target.crossbar, target.cam, target.device
    crossbar_noise = xb is not None and xb.analog and (model.stochastic or device.adc_noise_lsb > 0
                                                        or device.adc_offset_lsb > 0)
    cam_noise = cam is not None and model.cam_bound_sigma(cam.cell_bits) is not None
    return crossbar_noise or cam_noise


def drifting(target: Target) -> bool:
    """Whether the time since programming changes the result."""
    return target.crossbar is not None and device_model(target.device).time_dependent


# ----------------------------------------------------------------------------- the figures
def summarize(program: Program, target: Target, mapping: dict, stats: Stats) -> dict:
    """The headline figures (``nmc compile`` prints them, the report opens with them)."""
    xb = target.crossbar
    used = sorted({(t["core"], t["xbar"]) for layer in mapping["layers"] if layer["unit"] == "crossbar"
                   for t in layer["tiles"]})
    cells_used = sum(t["rows"] * t["cols"] for layer in mapping["layers"] if layer["unit"] == "crossbar"
                     for t in layer["tiles"])
    units: dict[str, int] = {}
    for layer in mapping["layers"]:
        units[layer["unit"]] = units.get(layer["unit"], 0) + 1
    macs, analog = float(stats.macs), float(stats.analog_macs)
    energy = stats.energy_total_pj
    return {
        "target": target.name,
        "target_summary": target.one_line(),
        "technology": xb.technology if xb else None,
        "analog_arrays": bool(xb and xb.analog),
        "crossbars_used": len(used),
        "crossbars_available": xb.crossbars * max(target.chips, 1) if xb else 0,
        "chips": max(target.chips, 1),
        "rounds": max((t.round for t in program.tiles.values()), default=0) + 1,
        "crossbar_cores_used": len({core for core, _ in used}),
        "crossbar_cores_available": xb.count * max(target.chips, 1) if xb else 0,
        "crossbar_size": [xb.rows, xb.cols] if xb else None,
        "crossbar_utilization": float(stats.crossbar_utilization),
        "used_crossbar_utilization": cells_used / (len(used) * xb.rows * xb.cols) if used else 0.0,
        "adc_utilization": float(stats.adc_utilization),
        "layers": len(mapping["layers"]),
        "layers_by_unit": units,
        "macs": macs,
        "analog_macs": analog,
        "digital_macs": macs - analog,
        "analog_mac_fraction": analog / macs if macs else 0.0,
        "latency_cycles": float(stats.latency_cycles),
        "latency_s": float(stats.latency_s),
        "throughput_per_s": float(stats.throughput_per_s),
        "energy_per_inference_pj": float(energy),
        "energy_per_inference_j": float(energy) * 1e-12,
        "tops": float(stats.tops()),
        "tops_per_w": float(stats.tops_per_w()),
        "tops_per_mm2": float(stats.tops_per_mm2()),
        "area_mm2": float(sum(stats.area_mm2.values())),
        "clock_ghz": float(stats.clock_ghz),
        "per_token": per_token(program, stats),
        "programming": programming(program, target),
    }


def programming(program: Program, target: Target) -> dict | None:
    """What programming one chip costs (pulse-programmed PCM/RRAM crossbars), or None."""
    xb = target.crossbar
    if xb is None or not program.tiles or xb.technology not in ("pcm", "rram"):
        return None
    from nmc.runtime.programming import describe, expected_cost, programming_cost

    cost = expected_cost(program, target)
    if cost is None:   # program-and-verify: its pulses are those a programmed chip (seed 0) spends
        from nmc.runtime import SimOptions
        from nmc.runtime.machine import Chip

        cost = programming_cost(program, target, Chip(program, target, SimOptions()).tiles)
    return {"scheme": describe(target.programming, program), "time_s": cost.time_s,
            "energy_pj": cost.energy_pj, "energy_j": cost.energy_pj * 1e-12, "devices": cost.devices,
            "pulses_per_device": cost.pulses_per_device}


def per_token(program: Program, stats: Stats) -> dict | None:
    """A sequence model's figures per token, or None: its tokens are the elements of its first
    integer input (token ids, e.g. ``input_ids`` [16] per sample), and the program computes every
    position, padding included, so per token = per inference / tokens."""
    port = next((p for p in program.inputs if p.dtype == "i32" and p.shape), None)
    if port is None:
        return None
    tokens = int(np.prod(port.shape))
    energy = float(stats.energy_total_pj)
    return {"input": port.name, "tokens": tokens, "latency_s": float(stats.latency_s) / tokens,
            "energy_pj": energy / tokens, "energy_j": energy * 1e-12 / tokens,
            "throughput_per_s": float(stats.throughput_per_s) * tokens}


def _core_kind(layer: dict, target: Target) -> str:
    xb = target.crossbar
    if layer["unit"] == "crossbar" and xb is not None:
        return f"{xb.technology} crossbar ({'analog' if xb.analog else 'digital CIM'})"
    if layer["unit"] == "vector":
        return "vector unit"
    group = next((g for g in target.cores if getattr(g, "kind", "") == layer["unit"]), None)
    technology = getattr(group, "technology", "")
    return f"{technology} {layer['unit']}".strip()


_TABLE_FIELDS = {"index", "name", "op", "node", "ir_op", "unit", "reason", "weight_bits", "input_bits",
                 "input_signed", "input_range_source", "tiles"}


def _layer_rows(mapping: dict, target: Target, stats: Stats) -> list[dict]:
    """Per layer: where it runs and why, its tiles, bits, and its share of energy and cycles."""
    xb = target.crossbar
    energy_total = stats.energy_total_pj or 1.0
    cycles_total = float(sum(stats.cycles_by_layer.values())) or 1.0
    seen: set[str] = set()
    rows, colour = [], 0
    for layer in mapping["layers"]:
        tiles = layer["tiles"]
        crossbars = sorted({(t["core"], t["xbar"]) for t in tiles})
        cells = sum(t["rows"] * t["cols"] for t in tiles)
        first = layer["name"] not in seen  # the runtime keys its figures by layer name
        seen.add(layer["name"])
        energy = float(stats.energy_by_layer_pj.get(layer["name"], 0.0)) if first else None
        cycles = float(stats.cycles_by_layer.get(layer["name"], 0.0)) if first else None
        sources = sorted({t.get("adc_range_source", "") for t in tiles} - {""})
        ranges = [t["adc_range"] for t in tiles if "adc_range" in t]
        analog = layer["unit"] == "crossbar" and xb is not None and xb.analog
        row = {
            "index": layer["index"], "name": layer["name"], "op": layer["op"], "node": layer.get("node", ""),
            "unit": layer["unit"], "core_kind": _core_kind(layer, target), "reason": layer["reason"],
            "tiles": len(tiles), "crossbars": len(crossbars),
            "cores": sorted({core for core, _ in crossbars}),
            "rows_used": max((t["rows"] for t in tiles), default=0),
            "cols_used": max((t["cols"] for t in tiles), default=0),
            "cells_used": cells,
            "utilization": cells / (len(crossbars) * xb.rows * xb.cols) if crossbars and xb else None,
            "weight_bits": layer.get("weight_bits"), "input_bits": layer.get("input_bits"),
            "input_signed": layer.get("input_signed"), "input_range_source": layer.get("input_range_source"),
            "adc_bits": xb.adc_bits if analog else None,
            "adc_range_max": max(ranges) if ranges and analog else None,
            "adc_range_source": "; ".join(sources) if analog else None,
            "energy_pj": energy, "energy_share": None if energy is None else energy / energy_total,
            "cycles": cycles, "cycles_share": None if cycles is None else cycles / cycles_total,
            "color": None,
            "tile_list": tiles,
            "records": {k: v for k, v in layer.items() if k not in _TABLE_FIELDS},
        }
        cam = row["records"].get("cam")
        if isinstance(cam, dict):  # a tree ensemble: its CAM rows, arrays and cores
            row.update(rows_used=cam["rows"], cols_used=cam["columns"], crossbars=cam["arrays"],
                       cores=sorted({b["core"] + i for b in cam["blocks"] for i in range(b["chained"])}),
                       utilization=cam["utilization"])
        if tiles or any(isinstance(v, dict) and v.get("blocks") for v in row["records"].values()):
            row["color"] = layer_color(colour)
            colour += 1
        rows.append(row)
    return rows


def core_layers(program: Program) -> dict[int, list[str]]:
    """Core → names of the layers it runs instructions for, in layer order."""
    names = {layer.index: layer.name for layer in program.layers}
    found: dict[int, set[int]] = {}

    def walk(core: int, stmts) -> None:
        for s in stmts:
            if isinstance(s, Loop):
                walk(core, s.body)
            elif s.layer in names:
                found.setdefault(core, set()).add(s.layer)

    for core, stream in program.cores.items():
        walk(core, stream)
    return {core: [names[i] for i in sorted(found[core])] for core in found}


def placements(layer: dict):
    """(core, array or None for all of the core's arrays, rows used, cols used, tile name) of a
    layer: its crossbar tiles, and the ``blocks`` (``core``, ``chained`` cores) of any other
    core kind's record, such as a CAM mapping."""
    for t in layer["tile_list"]:
        yield t["core"], t.get("xbar"), t.get("rows", 0), t.get("cols", 0), t.get("tile", "")
    for value in layer.get("records", {}).values():
        for block in value.get("blocks", []) if isinstance(value, dict) else []:
            for core in range(block["core"], block["core"] + block.get("chained", 1)):
                yield core, None, block.get("rows", 0), value.get("columns", 0), ""


def floorplan(target: Target, layers: list[dict], runs: dict[int, list[str]] | None = None) -> dict:
    """The chip as groups of cores, each core with its arrays and what each array holds.

    Cores are numbered group after group in the target's order (vector cores come first, as
    placement assumes). A group of a kind without arrays (vector) lists which layers run on it.
    A new kind of core with arrays needs ``count`` and ``crossbars_per_core`` (or
    ``arrays_per_core``), ``rows`` and ``cols``; its layers' tiles need ``core`` and ``xbar``.
    ``runs`` (``core_layers``) says which layers each core without arrays works on.
    """
    runs = runs or {}
    held = {}
    for row in layers:
        for core, array, rows, cols, tile in placements(row) if row["color"] else ():
            held[(core, array)] = (row, {"tile": tile, "rows": rows, "cols": cols})
    groups, first = [], 0
    for group in target.cores:
        kind = getattr(group, "kind", type(group).__name__)
        per_core = int(getattr(group, "crossbars_per_core", getattr(group, "arrays_per_core", 0)) or 0)
        entry = {"kind": kind, "first_core": first, "count": group.count, "arrays_per_core": per_core,
                 "rows": getattr(group, "rows", None), "cols": getattr(group, "cols", None),
                 "technology": getattr(group, "technology", None), "arrays_used": 0, "cores_used": 0, "cores": []}
        if per_core:
            for core in range(first, first + group.count):
                arrays = []
                for xbar in range(per_core):
                    row, tile = held.get((core, xbar), held.get((core, None), (None, None)))
                    arrays.append(None if row is None else {
                        "layer": row["name"], "color": row["color"], "tile": tile.get("tile", ""),
                        "rows": tile["rows"], "cols": tile["cols"]})
                entry["cores"].append({"core": core, "arrays": arrays})
                used = sum(a is not None for a in arrays)
                entry["arrays_used"] += used
                entry["cores_used"] += bool(used)
        else:
            entry["cores"] = [{"core": core, "arrays": [], "layers": runs.get(core, [])}
                              for core in range(first, first + group.count)]
            entry["cores_used"] = sum(bool(c["layers"]) for c in entry["cores"])
            entry["layers_run"] = len({name for c in entry["cores"] for name in c["layers"]})
        groups.append(entry)
        first += group.count
    return {"groups": groups}


def build_report(program: Program, target: Target, mapping: dict, stats: Stats | None = None,
                 evaluation: dict | None = None, source: str = "") -> dict:
    """Everything the report shows, as plain data (what ``--format json`` prints)."""
    stats = stats if stats is not None else estimate(program, target)
    layers = _layer_rows(mapping, target, stats)
    energy_total = stats.energy_total_pj or 1.0
    cycles_total = float(sum(stats.cycles_by_layer.values())) or 1.0
    plan = floorplan(target, layers, core_layers(program))
    summary = summarize(program, target, mapping, stats)
    summary["arrays_by_kind"] = {g["kind"]: {"used": g["arrays_used"], "available": g["count"] * g["arrays_per_core"]}
                                 for g in plan["groups"] if g["arrays_per_core"]}
    cams = [row["records"]["cam"] for row in layers if isinstance(row["records"].get("cam"), dict)]
    if cams and "cam" in summary["arrays_by_kind"]:  # tree ensembles: CAM rows and how full the used arrays are
        summary["arrays_by_kind"]["cam"].update(
            rows_used=sum(c["rows"] for c in cams), paths=sum(c["paths"] for c in cams),
            utilization=sum(c["utilization"] * c["arrays"] for c in cams) / max(1, sum(c["arrays"] for c in cams)))
    io_energy = float(stats.energy_by_layer_pj.get(IO_LAYER, 0.0))
    io_cycles = float(stats.cycles_by_layer.get(IO_LAYER, 0.0))
    return Report({
        "nmc_report": REPORT_VERSION,
        "program": source,
        "target": {"name": target.name, "summary": target.summary, "one_line": target.one_line(),
                   "clock_ghz": target.clock_ghz, "device_model": target.device.model,
                   "noisy": noisy(target), "drifting": drifting(target)},
        "mapping_source": ("mapping.json (recorded by the compiler)" if mapping.get("source") == "compiler"
                           else "the program alone (no mapping.json: reasons and range sources not recorded)"),
        "summary": summary,
        "energy_by_component_pj": {k: float(v) for k, v in stats.energy_pj.items()},
        "energy_by_component_share": {k: float(v) / energy_total for k, v in stats.energy_pj.items()},
        "layers": layers,
        "program_io": {"energy_pj": io_energy, "energy_share": io_energy / energy_total,
                       "cycles": io_cycles, "cycles_share": io_cycles / cycles_total},
        "floorplan": plan,
        "stats": stats.to_dict(),
        "evaluation": evaluation,
    })


# ----------------------------------------------------------------------------- runs on inputs
def evaluate(program: Program, target: Target, given: ReportInputs,
             progress: ProgressCallback | None = None) -> dict:
    """Run the program on the inputs: per condition (time since programming), per output, the
    spread over trials of accuracy (labels) and of error and top-1 agreement (onnxruntime).
    ``progress(done, total, note)`` follows the runs (times × trials)."""
    from nmc.compiler.verify import _compare, _labels_for, _run_onnxruntime
    from nmc.runtime import SimOptions, execute

    if given.labels is None and given.model is None:
        raise NmcError("a report on inputs needs --labels (accuracy) or --model (error against onnxruntime), "
                       "or both")
    trials = given.trials if given.trials is not None else (DEFAULT_NOISY_TRIALS if noisy(target) else 1)
    if trials < 1:
        raise NmcError(f"--trials {trials}: give at least one trial")
    times = list(given.times or DEFAULT_TIMES)
    if not drifting(target):
        times = [("0", 0.0)]  # nothing on this target depends on the time since programming
    reference = None
    if given.model is not None:
        from nmc.compiler.frontend.loader import read_model

        reference = _run_onnxruntime(read_model(given.model), given.inputs)
    notes = []
    if not noisy(target):
        notes.append("the target has no device noise: every trial gives the same result")
    if not drifting(target):
        notes.append("nothing on the target depends on the time since programming")
    conditions = []
    for t, (written, seconds) in enumerate(times):
        runs = [execute(program, given.inputs, target,
                        SimOptions(time=seconds, seed=given.seed + i, noise=given.noise,
                                   drift_compensation=given.drift_compensation),
                        progress=part(progress, t * trials + i, len(times) * trials,
                                      f"t={written}, trial {i + 1}/{trials}"))
                for i in range(trials)]
        outputs = []
        for name in runs[0]:
            got = [np.asarray(run[name], dtype=np.float64) for run in runs]
            entry: dict = {"name": name, "shape": list(got[0].shape)}
            if reference is not None:
                want = np.asarray(reference[name], dtype=np.float64)
                compared = [_compare(name, g, want, given.labels) for g in got]
                entry["max_abs_error"] = Spread.of(c[0] for c in compared).to_dict()
                entry["rel_error"] = Spread.of(c[1] for c in compared).to_dict()
                if compared[0][2] is not None:
                    entry["top1_agreement"] = Spread.of(c[2] for c in compared).to_dict()
                if compared[0][4] is not None:
                    entry["reference_accuracy"] = compared[0][4]
            if given.labels is not None and got[0].ndim == 2 and got[0].shape[1] > 1:
                y = _labels_for(given.labels, got[0].shape[0], name)
                entry["accuracy"] = Spread.of(np.mean(np.argmax(g, axis=1) == y) for g in got).to_dict()
            outputs.append(entry)
        conditions.append({"time": written, "time_s": float(seconds), "outputs": outputs})
    samples = next(iter(given.inputs.values())).shape[0] if program.batched and given.inputs else 1
    return {"samples": int(samples), "trials": trials, "seeds": [given.seed, given.seed + trials - 1],
            "noise": given.noise, "drift_compensation": given.drift_compensation,
            "labels": given.labels is not None, "model": str(given.model) if given.model is not None else None,
            "notes": notes, "conditions": conditions}


def report_file(path: str | os.PathLike, given: ReportInputs | None = None) -> dict:
    """The report of a ``.nmc`` file (with a run on ``given`` inputs if any)."""
    program, target, mapping = load(path)
    evaluation = evaluate(program, target, given) if given is not None else None
    return build_report(program, target, mapping, evaluation=evaluation, source=Path(path).name)


class Report(dict):
    """A report as plain data (a dict, what ``--format json`` writes) that renders itself:
    ``render("html" | "md" | "json")``, ``save(path)`` by suffix, and HTML in a notebook."""

    def render(self, fmt: str = "html") -> str:
        from nmc.compiler.reports.render import render

        return render(self, fmt)

    def save(self, path: str | os.PathLike, fmt: str | None = None) -> None:
        """Write the report (atomically); the format defaults to the suffix (.html, .md, .json)."""
        from nmc.compiler.reports.render import FORMATS

        path = Path(path)
        fmt = fmt or {".htm": "html", ".markdown": "md"}.get(path.suffix, path.suffix.lstrip(".")) or "html"
        if fmt not in FORMATS:
            raise NmcError(f"{path}: report formats are {', '.join(FORMATS)} (.html, .md, .json)")
        text = self.render(fmt).encode()
        write_atomic(path, lambda f: f.write(text))

    def _repr_html_(self) -> str:
        # the page is self-contained (its own styles): an iframe keeps them out of the notebook's
        return (f'<iframe srcdoc="{html.escape(self.render("html"), quote=True)}" '
                f'style="width:100%;height:720px;border:1px solid #ccc"></iframe>')
