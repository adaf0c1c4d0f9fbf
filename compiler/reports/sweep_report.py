"""The report of a sweep's results file (``nmc report results.parquet``): per design point and
time, accuracy (or output error) as mean ± std over the programmed chips, with the point's
energy, latency and crossbars; a Pareto plot of accuracy against energy per inference and a plot
of accuracy against time since programming per design, both inline SVG."""
from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path

import numpy as np

from nmc.compiler.reports.render import _environment
from nmc.compiler.sweep import Results

PLOT_W, PLOT_H, PAD = 640, 300, 48
PALETTE = ("#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f",
           "#bab0ac")


def sweep_summary(path) -> dict:
    """Rows grouped by design point and time; the quality measure is accuracy when the sweep had
    labels, else 1 − output error."""
    rows = Results(Path(path)).rows
    if not rows:
        return {"source": str(path), "designs": [], "failed": [], "measure": "accuracy", "rows": 0}
    measure = "accuracy" if any(r.get("accuracy") is not None for r in rows) else "output_error"
    params = sorted({k for r in rows for k in r if k == "target" or k.startswith(("set:", "pass:"))})
    by_point: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by_point[r["point"]].append(r)
    designs, failed = [], []
    for point, group in sorted(by_point.items()):
        label = ", ".join(f"{k.split(':', 1)[-1]}={group[0][k]}" for k in params if group[0].get(k) is not None)
        errors = [r["error"] for r in group if r.get("error")]
        if errors:
            failed.append({"point": point, "label": label, "error": errors[0]})
            continue
        times = defaultdict(list)
        for r in group:
            times[float(r["time_s"])].append(float(r[measure]))
        first = group[0]
        designs.append({
            "point": point, "label": label, "energy_j": float(first["energy_per_inference_j"]),
            "latency_s": float(first["latency_s"]), "throughput_per_s": float(first["throughput_per_s"]),
            "tops_per_w": float(first["tops_per_w"]), "area_mm2": float(first["area_mm2"]),
            "crossbars": int(first["crossbars"]),
            "times": [{"time_s": t, "mean": float(np.mean(v)), "std": float(np.std(v)), "n": len(v)}
                      for t, v in sorted(times.items())]})
    worst = {d["point"]: min(t["mean"] for t in d["times"]) for d in designs}
    for d in designs:   # on the front: no design is at least as good on both and better on one
        d["pareto"] = not any(o is not d and o["energy_j"] <= d["energy_j"] and worst[o["point"]] >= worst[d["point"]]
                              and (o["energy_j"] < d["energy_j"] or worst[o["point"]] > worst[d["point"]])
                              for o in designs)
        d["worst"] = worst[d["point"]]
    return {"source": str(path), "designs": designs, "failed": failed, "measure": measure, "rows": len(rows)}


def _scale(values, lo_px, hi_px, log=False):
    vals = [math.log10(v) if log else v for v in values]
    lo, hi = min(vals), max(vals)
    span = (hi - lo) or 1.0
    return lambda v: lo_px + ((math.log10(v) if log else v) - lo) / span * (hi_px - lo_px)


def pareto_svg(summary: dict) -> dict:
    """Circles (x: energy per inference, log scale; y: the worst time's mean quality); the Pareto
    front joined by a line."""
    designs = [d for d in summary["designs"] if d["energy_j"] > 0]
    if not designs:
        return {"width": PLOT_W, "height": PLOT_H, "points": [], "front": ""}
    x = _scale([d["energy_j"] for d in designs], PAD, PLOT_W - 16, log=True)
    y = _scale([d["worst"] for d in designs], PLOT_H - PAD, 16)
    points = [{"x": x(d["energy_j"]), "y": y(d["worst"]), "pareto": d["pareto"], "color": PALETTE[i % len(PALETTE)],
               "title": f"{d['label']}: {d['worst']:.4g} at {d['energy_j']:.3g} J"} for i, d in enumerate(designs)]
    front = sorted((p for p in points if p["pareto"]), key=lambda p: p["x"])
    return {"width": PLOT_W, "height": PLOT_H, "points": points,
            "front": " ".join(f"{p['x']:.1f},{p['y']:.1f}" for p in front)}


def drift_svg(summary: dict) -> dict:
    """One line per design: quality against time since programming (log scale; 0 s at the left)."""
    designs = summary["designs"]
    times = sorted({t["time_s"] for d in designs for t in d["times"]})
    if not designs or not times:
        return {"width": PLOT_W, "height": PLOT_H, "lines": [], "ticks": []}
    shifted = [t + 1.0 for t in times]
    x = _scale(shifted, PAD, PLOT_W - 16, log=True) if len(times) > 1 else (lambda v: PLOT_W / 2)
    y = _scale([t["mean"] for d in designs for t in d["times"]], PLOT_H - PAD, 16)
    lines = [{"color": PALETTE[i % len(PALETTE)], "title": d["label"],
              "points": " ".join(f"{x(t['time_s'] + 1.0):.1f},{y(t['mean']):.1f}" for t in d["times"])}
             for i, d in enumerate(designs)]
    return {"width": PLOT_W, "height": PLOT_H, "lines": lines,
            "ticks": [{"x": x(t + 1.0), "label": f"{t:g} s"} for t in times]}


def render_sweep(path, fmt: str = "html") -> str:
    summary = sweep_summary(path)
    if fmt == "json":
        return json.dumps(summary, indent=1) + "\n"
    env = _environment()
    context = {"s": summary, "pareto": pareto_svg(summary), "drift": drift_svg(summary), "palette": PALETTE}
    return env.get_template(f"sweep.{'html' if fmt == 'html' else 'md'}.j2").render(**context)
