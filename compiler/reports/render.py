"""Render a report (``report.build_report``) as HTML, Markdown or JSON.

HTML and Markdown come from the jinja2 templates beside this file. Pictures are inline SVG
whose geometry is computed here (``floorplan_svg``, ``bar_chart``), so the page needs no
network, no fonts and no JavaScript; hovering a cell or bar shows its ``<title>``.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import jinja2

from nmc.runtime.display import si

FORMATS = ("html", "md", "json")
TEMPLATES = Path(__file__).with_name("templates")

# floor plan geometry (px)
PLAN_WIDTH = 960
LEFT = 64             # room for the "cores a–b" row labels
CELL, CELL_GAP = 9, 1  # one array, and the gap between arrays of a core
CORE_PAD, CORE_GAP = 3, 4
HEADING = 22
VECTOR_CORE_SIZE = (64, 27)
EMPTY_FILL, EMPTY_STROKE = "#eef0f3", "#c3c8d0"
VECTOR_FILL, IDLE_FILL = "#8a94a6", "#dfe3e8"

# bar chart geometry (px)
CHART_WIDTH, LABEL_WIDTH, VALUE_WIDTH, BAR_HEIGHT, BAR_PITCH = 560, 160, 170, 14, 20
MAX_BARS = 40
MAX_ARRAYS_DRAWN = 4096  # a bigger group is drawn one square per core


def pct(value: float | None, digits: int = 1) -> str:
    if value is None:
        return "–"
    if value != 0 and abs(value) < 10 ** -(digits + 2):
        return f"{100 * value:.{digits}g} %"
    return f"{100 * value:.{digits}f} %"


def count(value: float | None) -> str:
    return "–" if value is None else f"{value:,.0f}"


def spread(s: dict | None, kind: str = "pct") -> str:
    """A spread over trials: ``mean ± std [min, max]`` (just the value for one trial)."""
    if not s:
        return "–"
    fmt = pct if kind == "pct" else (lambda v: f"{v:.3g}")
    if s.get("n", 1) <= 1:
        return fmt(s["mean"])
    return f"{fmt(s['mean'])} ± {fmt(s['std'])} [{fmt(s['min'])}, {fmt(s['max'])}]"


def spread_range(s: dict | None, kind: str = "pct") -> str:
    """The ``[min, max]`` of a spread over several trials ('' for one trial)."""
    if not s or s.get("n", 1) <= 1:
        return ""
    fmt = pct if kind == "pct" else (lambda v: f"{v:.3g}")
    return f"[{fmt(s['min'])}, {fmt(s['max'])}]"


def spread_mean(s: dict | None, kind: str = "pct") -> str:
    """``mean ± std`` of a spread over trials (the value for one trial)."""
    if not s:
        return "–"
    fmt = pct if kind == "pct" else (lambda v: f"{v:.3g}")
    return fmt(s["mean"]) if s.get("n", 1) <= 1 else f"{fmt(s['mean'])} ± {fmt(s['std'])}"


def _array_grid(arrays_per_core: int) -> tuple[int, int]:
    """Columns and rows of a core's arrays: a power-of-two number of columns ≥ √n, wider than tall."""
    cols = 1
    while cols * cols < arrays_per_core:
        cols *= 2
    return cols, max(1, math.ceil(arrays_per_core / cols))


def _per_row(count_: int, width: int, gap: int = CORE_GAP) -> int:
    """Cores per row: as many as fit, rounded down to a multiple of 8 when more than 8 fit."""
    fit = max(1, (PLAN_WIDTH - LEFT + gap) // (width + gap))
    if fit >= 8:
        fit -= fit % 8
    return min(fit, count_)


def floorplan_svg(plan: dict) -> dict:
    """Rectangles and labels of the floor plan; one group of cores under the other."""
    rects, texts, y = [], [], 0
    for group in plan["groups"]:
        first, n = group["first_core"], group["count"]
        label = _group_label(group)
        texts.append({"x": 0, "y": y + 14, "text": label, "cls": "h"})
        y += HEADING
        if group["arrays_per_core"] and n * group["arrays_per_core"] > MAX_ARRAYS_DRAWN:
            y = _core_view(group, y, rects, texts)
            continue
        if group["arrays_per_core"]:
            acols, arows = _array_grid(group["arrays_per_core"])
            width = acols * (CELL + CELL_GAP) - CELL_GAP + 2 * CORE_PAD
            height = arows * (CELL + CELL_GAP) - CELL_GAP + 2 * CORE_PAD
        else:
            width, height = VECTOR_CORE_SIZE
        per_row = _per_row(n, width)
        for i, core in enumerate(group["cores"]):
            r, c = divmod(i, per_row)
            x0, y0 = LEFT + c * (width + CORE_GAP), y + r * (height + CORE_GAP)
            if c == 0:
                last = first + min(n, (r + 1) * per_row) - 1
                texts.append({"x": LEFT - 6, "y": y0 + height / 2 + 4, "cls": "r",
                              "text": f"{first + i}" + (f"–{last}" if last > first + i else "")})
            if not group["arrays_per_core"]:
                busy = bool(core["layers"])
                title = (f"core {core['core']} ({group['kind']}): " +
                         (f"{len(core['layers'])} layer(s): " + ", ".join(core["layers"][:12]) +
                          (" …" if len(core["layers"]) > 12 else "") if busy else "idle"))
                rects.append({"x": x0, "y": y0, "w": width, "h": height, "fill": VECTOR_FILL if busy else IDLE_FILL,
                              "stroke": "#5b6475" if busy else EMPTY_STROKE, "title": title, "cls": "core"})
                texts.append({"x": x0 + width / 2, "y": y0 + height / 2 + 4, "cls": "c" if busy else "ci",
                              "text": f"{group['kind']} {core['core']}"})
                continue
            used = any(core["arrays"])
            rects.append({"x": x0, "y": y0, "w": width, "h": height, "fill": "#ffffff" if used else "#f7f8fa",
                          "stroke": "#39414f" if used else "#d5d9df", "title": f"core {core['core']}: "
                          f"{sum(a is not None for a in core['arrays'])} of {len(core['arrays'])} arrays used",
                          "cls": "core"})
            for j, array in enumerate(core["arrays"]):
                ar, ac = divmod(j, acols)
                ax = x0 + CORE_PAD + ac * (CELL + CELL_GAP)
                ay = y0 + CORE_PAD + ar * (CELL + CELL_GAP)
                if array is None:
                    rects.append({"x": ax, "y": ay, "w": CELL, "h": CELL, "fill": EMPTY_FILL, "stroke": EMPTY_STROKE,
                                  "title": f"core {core['core']} array {j}: empty", "cls": "a"})
                else:
                    fill = array["rows"] * array["cols"] / ((group["rows"] or 1) * (group["cols"] or 1))
                    rects.append({"x": ax, "y": ay, "w": CELL, "h": CELL, "fill": array["color"],
                                  "stroke": array["color"], "cls": "a",
                                  "title": f"core {core['core']} array {j}: {array['layer']} ("
                                           + (f"tile {array['tile']}, " if array["tile"] else "")
                                           + f"{array['rows']}×{array['cols']} cells used, {pct(fill)})"})
        rows_ = math.ceil(n / per_row)
        y += rows_ * (height + CORE_GAP) + 10
    return {"width": PLAN_WIDTH, "height": y, "rects": rects, "texts": texts}


def _core_view(group: dict, y: float, rects: list, texts: list) -> float:
    """A group too big to draw array by array: one square per core, coloured by the layer
    holding most of its arrays."""
    first, n = group["first_core"], group["count"]
    pitch = CELL + CELL_GAP
    per_row = _per_row(n, CELL, CELL_GAP)
    for i, core in enumerate(group["cores"]):
        r, c = divmod(i, per_row)
        x0, y0 = LEFT + c * pitch, y + r * pitch
        if c == 0 and r % 4 == 0:  # a label every fourth row keeps them apart
            texts.append({"x": LEFT - 6, "y": y0 + CELL - 1, "cls": "r", "text": f"{first + i}"})
        held = [a for a in core["arrays"] if a is not None]
        if not held:
            rects.append({"x": x0, "y": y0, "w": CELL, "h": CELL, "fill": EMPTY_FILL, "stroke": EMPTY_STROKE,
                          "title": f"core {core['core']}: empty", "cls": "a"})
            continue
        layers = sorted({a["layer"] for a in held}, key=lambda name: -sum(a["layer"] == name for a in held))
        colour = next(a["color"] for a in held if a["layer"] == layers[0])
        rects.append({"x": x0, "y": y0, "w": CELL, "h": CELL, "fill": colour, "stroke": colour, "cls": "a",
                      "title": f"core {core['core']}: {len(held)} of {len(core['arrays'])} arrays used by "
                               + ", ".join(layers)})
    return y + math.ceil(n / per_row) * pitch + 10


def _group_label(group: dict) -> str:
    first, n = group["first_core"], group["count"]
    cores = f"core {first}" if n == 1 else f"cores {first}–{first + n - 1}"
    if not group["arrays_per_core"]:
        return (f"{n} {group['kind']} core{'s' if n != 1 else ''} ({cores}): {group['cores_used']} busy, "
                f"running {group['layers_run']} layer{'s' if group['layers_run'] != 1 else ''}")
    tech = f"{group['technology']} " if group.get("technology") else ""
    total = n * group["arrays_per_core"]
    per_core = " (one square per core)" if total > MAX_ARRAYS_DRAWN else ""
    return (f"{n} {tech}{group['kind']} cores ({cores}) × {group['arrays_per_core']} arrays of "
            f"{group['rows']}×{group['cols']}: {group['arrays_used']} of {total} arrays used "
            f"on {group['cores_used']} core{'s' if group['cores_used'] != 1 else ''}{per_core}")


def bar_chart(items: list[dict], unit: str) -> dict:
    """Horizontal bars: items ``{"label", "value", "share", "color"}`` → geometry."""
    items = [i for i in items if i["value"]]
    if len(items) > MAX_BARS:
        keep = sorted(items, key=lambda i: -i["value"])[:MAX_BARS - 1]
        rest = [i for i in items if i not in keep]
        items = [i for i in items if i in keep] + [{
            "label": f"{len(rest)} other layers", "value": sum(i["value"] for i in rest),
            "share": sum(i["share"] for i in rest), "color": "#c3c8d0"}]
    top = max((i["value"] for i in items), default=1.0) or 1.0
    span = CHART_WIDTH - LABEL_WIDTH - VALUE_WIDTH
    bars = []
    for k, item in enumerate(items):
        w = max(1.0, span * item["value"] / top)
        label = item["label"] if len(item["label"]) <= 28 else "…" + item["label"][-27:]
        value = f"{si(item['value'], unit) if unit != 'cycles' else count(item['value']) + ' cycles'}"
        bars.append({"y": k * BAR_PITCH, "w": w, "label": label, "full": item["label"], "color": item["color"],
                     "value": f"{value} ({pct(item['share'])})", "x": LABEL_WIDTH, "vx": LABEL_WIDTH + w + 6})
    return {"width": CHART_WIDTH, "height": max(1, len(bars)) * BAR_PITCH, "bars": bars, "bar_height": BAR_HEIGHT}


COMPONENT_COLORS = {"array": "#4e79a7", "dac": "#76b7b2", "adc": "#e15759", "shift_add": "#f28e2b",
                    "digital_cim": "#59a14f", "vector": "#8a94a6", "buffer": "#edc948", "noc": "#b07aa1",
                    "io": "#9c755f"}


def charts(report: dict) -> dict:
    energy = report["energy_by_component_pj"]
    shares = report["energy_by_component_share"]
    components = sorted((k for k in energy if energy[k] > 0), key=lambda k: -energy[k])
    energy_items = [{"label": k, "value": energy[k] * 1e-12, "share": shares[k],
                     "color": COMPONENT_COLORS.get(k, "#bab0ac")} for k in components]
    latency_items = [{"label": row["name"], "value": row["cycles"] or 0.0, "share": row["cycles_share"] or 0.0,
                      "color": row["color"] or VECTOR_FILL} for row in report["layers"]]
    io = report["program_io"]
    latency_items.append({"label": "program input/output", "value": io["cycles"], "share": io["cycles_share"],
                          "color": "#c3c8d0"})
    return {"energy": bar_chart(energy_items, "J"), "latency": bar_chart(latency_items, "cycles")}


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)),
                             autoescape=jinja2.select_autoescape(["html"]), trim_blocks=True, lstrip_blocks=True,
                             undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    env.filters.update(si=si, pct=pct, count=count, spread=spread, spread_mean=spread_mean,
                       spread_range=spread_range)
    return env


def render(report: dict, fmt: str = "html") -> str:
    """The report as ``html`` (self-contained page), ``md`` or ``json``."""
    if fmt == "json":
        return json.dumps(report, indent=1) + "\n"
    if fmt not in FORMATS:
        raise ValueError(f"unknown report format {fmt!r}; formats: {', '.join(FORMATS)}")
    env = _environment()
    context = {"r": report, "s": report["summary"], "charts": charts(report)}
    if fmt == "html":
        context["plan"] = floorplan_svg(report["floorplan"])
        return env.get_template("report.html.j2").render(**context)
    return env.get_template("report.md.j2").render(**context)
