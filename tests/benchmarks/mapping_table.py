"""How real-sized models map onto the crossbar presets: chips, reprogramming rounds, crossbars,
cell use, compile cost, latency, throughput (with and without replication) and energy, written
as docs/mapping.md (a script, not collected by pytest; it asserts nothing).

    python tests/benchmarks/mapping_table.py [--models resnet18,bert_base] [--targets pcm,rram]
                                             [--out docs/mapping.md] [--cache DIR] [--jobs 1]
                                             [--timeout 0] [--reuse]

Every (model, target) pair is measured in a fresh child process (``measure``), so its peak
memory is that compile's own; the child compiles the model three times: with the target as it
is (the default, "latency" mapping; its wall time and peak resident memory are the ones
reported), with ``chip.mapping = "throughput"`` (the layers whose crossbars bound the
throughput replicated onto free crossbars, kept when faster) and with ``{"chip.chips": 1, "chip.overflow": "reprogram"}`` (one chip reused in
reprogramming rounds). The models (torchvision's and a BERT-base encoder, random weights, fixed
shapes) are exported once into ``--cache``, each by a child process so this process stays small
(a child inherits its parent's memory high-water mark through exec). Results are kept in
``--cache``/results.json (every pair measured there so far); ``--reuse`` takes the selected
pairs measured before from it and measures only the others.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import subprocess
import sys
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CACHE = Path("/tmp/mapping/models")
DEFAULT_OUT = ROOT / "docs" / "mapping.md"
RESULT = "RESULT "

# name -> (shown as, family, what the input is)
MODELS = {
    "resnet18": ("ResNet-18", "torchvision", "1×3×224×224"),
    "resnet50": ("ResNet-50", "torchvision", "1×3×224×224"),
    "vgg16": ("VGG-16", "torchvision", "1×3×224×224"),
    "mobilenet_v2": ("MobileNetV2", "torchvision", "1×3×224×224"),
    "efficientnet_b0": ("EfficientNet-B0", "torchvision", "1×3×224×224"),
    "convnext_tiny": ("ConvNeXt-T", "torchvision", "1×3×224×224"),
    "vit_b_16": ("ViT-B/16", "torchvision", "1×3×224×224"),
    "bert_base": ("BERT-base", "huggingface", "input_ids and attention_mask 1×128"),
}


# ---------------------------------------------------------------------------- models
def _zoo():
    sys.path.insert(0, str(ROOT / "tests" / "zoo"))
    import models as zoo  # tests/zoo/models.py

    return zoo


def _build(name: str):
    """The build function of model ``name``: () -> (module.eval(), (example inputs,))."""
    zoo = _zoo()

    def torchvision_model():
        import torch

        tv = zoo._torchvision()  # declares torchvision's detection ops before importing it
        if name == "vit_b_16":
            torch.backends.mha.set_fastpath_enabled(False)  # the fused kernel has no ONNX export
        return getattr(tv.models, name)(weights=None).eval(), (torch.randn(1, 3, 224, 224),)

    def bert_base():
        import torch

        zoo._torchvision()
        from transformers import BertConfig, BertModel

        cfg = BertConfig(attn_implementation="eager")  # BERT-base: 768 hidden, 12 layers, 12 heads, FFN 3072
        ids = torch.randint(0, cfg.vocab_size, (1, 128), generator=torch.Generator().manual_seed(0))
        model = BertModel(cfg, add_pooling_layer=False)
        return zoo._Logits(model, "last_hidden_state"), (ids, torch.ones_like(ids))

    if name == "bert_base":
        return bert_base
    return torchvision_model


def export_child(name: str, cache: Path) -> None:
    """(In a child) export model ``name`` to ``cache``/NAME.onnx with the zoo's ``export``."""
    zoo = _zoo()
    partial = cache / "partial"
    partial.mkdir(parents=True, exist_ok=True)
    family = MODELS[name][1]
    written, _ = zoo.export(zoo.ZooModel(name, family, _build(name), dynamo=False, opset=17), partial)
    written.replace(cache / f"{name}.onnx")


def model_path(name: str, cache: Path) -> Path:
    """``cache``/NAME.onnx, exported by a child process the first time."""
    path = cache / f"{name}.onnx"
    if not path.exists():
        cache.mkdir(parents=True, exist_ok=True)
        print(f"exporting {name} to {path} (once)", flush=True)
        start = time.perf_counter()
        subprocess.run([sys.executable, __file__, "--export-child", name, "--cache", str(cache)], check=True)
        print(f"exported {name}: {path.stat().st_size / 2**20:.0f} MiB in {time.perf_counter() - start:.0f} s",
              flush=True)
    return path


# ---------------------------------------------------------------------------- the child's work
def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0] if text else ''}".strip().rstrip(":")


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def measure(model_path: str | os.PathLike, target_name: str, say=print) -> dict:
    """Compile ``model_path`` for preset ``target_name`` three ways (default, replication, one
    reprogrammed chip) and return the figures of the table; a failed compile gives its error's
    first line in place of its figures. Meant to run in a fresh process (peak memory)."""
    import gc

    from nmc.backends.target import load_target, with_fields
    from nmc.compiler.driver import compile_model
    from nmc.compiler.reports.mapping_table import mapping_table
    from nmc.runtime.timing import estimate

    base = load_target(target_name)
    xb = base.crossbar
    out: dict = {"model": Path(model_path).stem, "target": target_name,
                 "crossbar_size": [xb.rows, xb.cols], "crossbars_per_chip": xb.crossbars}
    label = f"[{out['model']}/{target_name}]"

    def compile_(fields: dict) -> tuple:
        target = with_fields(base, fields) if fields else base
        start = time.perf_counter()
        compiled = compile_model(model_path, target)
        table = mapping_table(compiled.graph, compiled.program, compiled.target)  # as nmc.compile (bound) does
        return compiled, table, time.perf_counter() - start

    def figures(compiled, table) -> dict:
        program, target = compiled.program, compiled.target
        start = time.perf_counter()
        stats = estimate(program, target)
        xbar = target.crossbar
        used = {(t.core, t.xbar) for t in program.tiles.values()}
        # as compiler/reports/report.py::summarize: cells of the crossbar layers' tiles / cells of the crossbars used
        cells = sum(t["rows"] * t["cols"] for layer in table["layers"] if layer["unit"] == "crossbar"
                    for t in layer["tiles"])
        return {"chips": max(target.chips, 1),
                "rounds": max((t.round for t in program.tiles.values()), default=0) + 1,
                "crossbars_used": len(used),
                "crossbars_available": xbar.crossbars * max(target.chips, 1),
                "used_cell_share": cells / (len(used) * xbar.rows * xbar.cols) if used else 0.0,
                "crossbar_layers": sum(layer["unit"] == "crossbar" for layer in table["layers"]),
                "layers": len(table["layers"]),
                "latency_s": float(stats.latency_s),
                "throughput_per_s": float(stats.throughput_per_s),
                "energy_pj": float(stats.energy_total_pj),
                "macs": float(stats.macs),
                "analog_macs": float(stats.analog_macs),
                "estimate_s": time.perf_counter() - start}

    runs = [("default", {}), ("throughput", {"chip.mapping": "throughput"}),
            ("reprogram", {"chip.chips": 1, "chip.overflow": "reprogram"})]
    for key, fields in runs:
        say(f"{label} compiling ({key}) ...")
        try:
            compiled, table, seconds = compile_(fields)
        except Exception as e:  # noqa: BLE001 - a failed compile is a cell of the table
            out[key] = {"error": _first_line(e)}
            if key == "default":
                out[key]["compile_s"] = None
                out[key]["peak_mib"] = _peak_mib()
            say(f"{label} {key}: {out[key]['error']}")
            continue
        entry = {"compile_s": seconds}
        if key == "default":
            entry["peak_mib"] = _peak_mib()   # the process's high-water mark so far: this compile's
        entry.update(figures(compiled, table))
        out[key] = entry
        say(f"{label} {key}: {seconds:.1f} s, {entry['chips']} chip(s), {entry['rounds']} round(s), "
            f"{entry['crossbars_used']} crossbars, latency {entry['latency_s'] * 1e6:.1f} µs, "
            f"{entry['throughput_per_s']:.0f}/s")
        del compiled, table
        gc.collect()
    out["peak_mib_all"] = _peak_mib()
    return out


def measure_child(model_path: str, target_name: str) -> None:
    def say(line: str) -> None:
        print(line, flush=True)

    try:
        result = measure(model_path, target_name, say)
    except Exception as e:  # noqa: BLE001 - reported as the row's error
        traceback.print_exc()
        result = {"model": Path(model_path).stem, "target": target_name, "error": _first_line(e)}
    print(RESULT + json.dumps(result), flush=True)


# ---------------------------------------------------------------------------- the parent
_print_lock = threading.Lock()


def run_pair(path: Path, target: str, timeout: float) -> dict:
    """``measure`` in a fresh child process; its progress lines are echoed."""
    start = time.perf_counter()
    child = subprocess.Popen([sys.executable, __file__, "--measure-child", str(path), target],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    timer = threading.Timer(timeout, child.kill) if timeout else None
    if timer:
        timer.start()
    result, tail = None, []
    for line in child.stdout:
        line = line.rstrip("\n")
        if line.startswith(RESULT):
            result = json.loads(line[len(RESULT):])
            continue
        tail = (tail + [line])[-5:]
        with _print_lock:
            print(f"  {line}", flush=True)
    code = child.wait()
    if timer:
        timer.cancel()
    seconds = time.perf_counter() - start
    if result is None:
        why = (f"timed out after {timeout:.0f} s" if timeout and seconds >= timeout
               else f"child exited {code}: {tail[-1] if tail else ''}")
        result = {"model": path.stem, "target": target, "error": why}
    result["child_s"] = seconds
    return result


def crossbar_presets() -> list[str]:
    from nmc.backends.target import load_target, preset_names

    return [n for n in preset_names() if load_target(n).crossbar is not None]


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        kib = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                   if line.startswith("MemTotal"))
        memory = f"{kib / 2**20:.0f} GiB"
    except (OSError, StopIteration, ValueError):
        memory = "unknown memory"
    return (f"{os.cpu_count()} cores ({cpu}), {memory}, shared with other jobs; "
            f"{platform.system()} {platform.release()}, Python {platform.python_version()}")


# ---------------------------------------------------------------------------- the document
def _num(x: float, digits: int = 3) -> str:
    return f"{x:.{digits}g}" if abs(x) < 10 ** digits else f"{x:,.0f}"


def _time(s: float) -> str:
    if s >= 1:
        return f"{s:.3g} s"
    if s >= 1e-3:
        return f"{s * 1e3:.3g} ms"
    return f"{s * 1e6:.3g} µs"


def _energy(pj: float) -> str:
    for unit, scale in (("J", 1e12), ("mJ", 1e9), ("µJ", 1e6), ("nJ", 1e3)):
        if pj >= scale:
            return f"{pj / scale:.3g} {unit}"
    return f"{pj:.3g} pJ"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


COLUMNS = ["model", "chips", "rounds on 1 chip", "crossbars used", "cells holding weights",
           "compile", "peak memory", "latency", "throughput", "latency, replicated", "throughput, replicated",
           "crossbars, replicated", "energy / inference"]


def row(name: str, r: dict | None) -> list[str]:
    shown = MODELS.get(name, (name,))[0]
    if r is None:
        return [shown, "not measured"] + [""] * (len(COLUMNS) - 2)
    if "error" in r:
        return [shown, _cell(r["error"])] + [""] * (len(COLUMNS) - 2)
    d, t, p = r.get("default", {}), r.get("throughput", {}), r.get("reprogram", {})
    if "error" in d:
        err = _cell(d["error"])
        # placement's CapacityError: more crossbars than the chips have (a layer whose kernel window
        # does not fit one crossbar is an unsupported mapping, not a model too large)
        too_large = d["error"].startswith("CapacityError")
        cells = [shown, ("too large: " if too_large else "") + err]
        cells.append(("same error" if p["error"] == d["error"] else _cell(p["error"])) if "error" in p
                     else str(p.get("rounds", "")))
        return cells + [""] * (len(COLUMNS) - 3)
    rounds = _cell(p["error"]) if "error" in p else str(p["rounds"])
    if "error" in t:
        t_lat = t_thr = t_xb = _cell(t["error"])
    else:
        t_lat, t_thr = _time(t["latency_s"]), f"{_num(t['throughput_per_s'])} /s"
        t_xb = f"{t['crossbars_used']:,}" + (f" ({t['chips']} chips)" if t["chips"] != d.get("chips") else "")
    return [shown, str(d["chips"]), rounds,
            f"{d['crossbars_used']:,} / {d['crossbars_available']:,}",
            f"{d['used_cell_share'] * 100:.1f} %",
            f"{d['compile_s']:.1f} s", f"{d['peak_mib'] / 1024:.2f} GiB",
            _time(d["latency_s"]), f"{_num(d['throughput_per_s'])} /s", t_lat, t_thr, t_xb,
            _energy(d["energy_pj"])]


def remarks(results: dict, models: list[str], targets: list[str]) -> list[str]:
    """What the figures show about replication, found in them (not written by hand)."""
    slower, wider = [], []
    for target in targets:
        for name in models:
            r = results.get(f"{name}|{target}") or {}
            d, t = r.get("default") or {}, r.get("throughput") or {}
            if "latency_s" not in d or "latency_s" not in t:
                continue
            shown = f"{MODELS.get(name, (name,))[0]} on {target}"
            if t["throughput_per_s"] < d["throughput_per_s"] * 0.995:
                slower.append(f"{shown} ({_num(d['throughput_per_s'])} → {_num(t['throughput_per_s'])} /s)")
            if t["chips"] > d["chips"]:
                wider.append(f"{shown} ({d['chips']} → {t['chips']})")
    lines = []
    if slower or wider:
        lines += ["## Remarks", "",
                  "Replication (compiler/replication.py) replicates the layers whose crossbars bound the",
                  "throughput in the latency-oriented program and keeps the result only when the cost model",
                  "estimates it faster; these pairs contradict that and need a look:", ""]
    if slower:
        lines += ["- Replication lowered the estimated throughput of: " + "; ".join(slower) + "."]
    if wider:
        lines += ["- Replication spread the program over more chips than the default compile: "
                  + "; ".join(wider) + "."]
    return lines + ([""] if lines else [])


def document(results: dict, models: list[str], targets: list[str], command: str, jobs: int) -> str:
    from nmc.backends.target import load_target

    lines = [
        "# Mapping real models onto the crossbar presets",
        "",
        "How eight real-sized networks map onto each crossbar preset: how many chips they need, how",
        "many reprogramming rounds one chip needs instead, how many crossbars they use and how full",
        "those are, what compiling costs, and the latency, throughput and energy of one inference",
        "that the cost model (runtime/timing.py) estimates. Written by",
        "",
        f"    {command}",
        "",
        f"on {datetime.date.today().isoformat()}, on {machine()}"
        + (f"; {jobs} pairs measured at a time." if jobs > 1 else "; one pair measured at a time."),
        "",
        "The models are torchvision's ResNet-18, ResNet-50, VGG-16, MobileNetV2, EfficientNet-B0,",
        "ConvNeXt-T and ViT-B/16 at 1×3×224×224, and a BERT-base encoder (Hugging Face `BertModel`,",
        "hidden 768, 12 layers, 12 heads, FFN 3072, eager attention, no pooler; input_ids and an",
        "all-ones attention mask of 1×128), exported with `torch.onnx.export` (TorchScript exporter,",
        "opset 17, fixed shapes) by tests/zoo/models.py's `export`. Their weights are random:",
        "mapping and costs do not depend on weight values, and no calibration is used (each ADC",
        "covers its worst case, inputs are scaled per sample).",
        "",
        "Each (model, target) pair is compiled in a fresh process, three times: as the preset is",
        "(`chip.chips = 0`: as many chips as the model needs; `chip.mapping = \"latency\"`), with",
        "`chip.mapping = \"throughput\"` (replication: the layers whose crossbars bound the throughput",
        "get replicas on free crossbars, kept when the cost model says faster), and with `chip.chips = 1`, `chip.overflow =",
        "\"reprogram\"` (one chip whose crossbars are reprogrammed in rounds). The columns:",
        "",
        "- **chips**: chips in the system after the default compile (`p.target.chips`); \"too",
        "  large\" marks a compile that ran out of crossbars (placement's CapacityError).",
        "- **rounds on 1 chip**: reprogramming rounds one chip needs (`max(tile.round) + 1` of the",
        "  reprogram compile); 1 when the model fits one chip.",
        "- **crossbars used**: distinct (core, crossbar) holding tiles in the default compile / the",
        "  crossbars of all its chips.",
        "- **cells holding weights**: cells the crossbar layers' tiles occupy / cells of the crossbars",
        "  used (`used_crossbar_utilization` of compiler/reports/report.py; a weight of a bit-sliced",
        "  or differential preset takes several cells, all counted).",
        "- **compile**: wall time of the default compile (`compile_model` and the mapping table, as",
        "  `nmc.compile` does; the cost estimate is not included). It is the process's first compile,",
        "  so it includes the compiler's first-use imports (onnx and its reference evaluator).",
        "- **peak memory**: the child process's peak resident set (`ru_maxrss`) at the end of the",
        "  default compile (imports and the loaded model included).",
        "- **latency**, **throughput**: one inference, and steady-state inferences per second with",
        "  the layers pipelined over the cores (`Stats.latency_s`, `Stats.throughput_per_s`) of the",
        "  default compile; **replicated**: the same with `chip.mapping = \"throughput\"`, and the",
        "  crossbars that compile uses.",
        "- **energy / inference**: `Stats.energy_total_pj` of the default compile (programming the",
        "  chip is not included).",
        "",
        "A cell with an error is the first line of the error that compile raised. Timings are one",
        "run each on a shared machine: read them as magnitudes.",
        "",
    ]
    missing = []
    for target in targets:
        t = load_target(target)
        xb = t.crossbar
        lines += [f"## {target}", "", f"{t.summary}. {xb.rows}×{xb.cols} crossbars, {xb.crossbars:,} per chip, "
                  f"{xb.weight_bits}-bit weights.", "",
                  "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
        for name in models:
            r = results.get(f"{name}|{target}")
            if r is None or ("error" in r and r["error"].startswith(("timed out", "child exited"))):
                missing.append((name, target, "not run" if r is None else r["error"]))
            lines.append("| " + " | ".join(row(name, r)) + " |")
        lines.append("")
    lines += remarks(results, models, targets)
    if missing:
        lines += ["## Not measured", "",
                  "These pairs did not complete in the run that wrote this file:", ""]
        lines += [f"- {MODELS.get(n, (n,))[0]} on {t}: {why}" for n, t, why in missing]
        lines.append("")
    return "\n".join(lines)


# ---------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(MODELS), help="comma-separated: " + ", ".join(MODELS))
    ap.add_argument("--targets", default="", help="comma-separated crossbar presets (default: all of them)")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="where the models are exported once")
    ap.add_argument("--jobs", type=int, default=1, help="pairs measured at the same time (default 1)")
    ap.add_argument("--timeout", type=float, default=0, help="seconds after which a pair is given up (0: none)")
    ap.add_argument("--reuse", action="store_true", help="keep the pairs of --cache/results.json, measure the rest")
    ap.add_argument("--measure-child", nargs=2, metavar=("MODEL", "TARGET"), help=argparse.SUPPRESS)
    ap.add_argument("--export-child", metavar="NAME", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.measure_child:
        return measure_child(*args.measure_child)
    if args.export_child:
        return export_child(args.export_child, args.cache)

    models = [m for m in args.models.split(",") if m]
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        sys.exit(f"unknown models: {', '.join(unknown)}; known: {', '.join(MODELS)}")
    presets = crossbar_presets()
    targets = [t for t in args.targets.split(",") if t] or presets
    unknown = [t for t in targets if t not in presets]
    if unknown:
        sys.exit(f"not crossbar presets: {', '.join(unknown)}; these are: {', '.join(presets)}")

    command = "python tests/benchmarks/mapping_table.py"
    if args.models != ",".join(MODELS):
        command += f" --models {args.models}"
    if args.targets:
        command += f" --targets {args.targets}"
    if args.out.resolve() != DEFAULT_OUT:
        command += f" --out {args.out}"

    store = args.cache / "results.json"   # every pair measured so far, this run's selection or not
    results: dict = json.loads(store.read_text()) if store.exists() else {}
    if not args.reuse:  # measure the selected pairs afresh (the others stay in the store)
        for key in [f"{m}|{t}" for m in models for t in targets]:
            results.pop(key, None)
    lock = threading.Lock()

    def write() -> None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(document(results, models, targets, command, args.jobs), encoding="utf-8")
        store.parent.mkdir(parents=True, exist_ok=True)
        store.write_text(json.dumps(results, indent=1))

    pairs = []
    for name in models:
        try:
            path = model_path(name, args.cache)
        except subprocess.CalledProcessError as e:
            for target in targets:
                results[f"{name}|{target}"] = {"model": name, "target": target, "error": f"export failed ({e})"}
            continue
        pairs += [(name, path, target) for target in targets if f"{name}|{target}" not in results]
    print(f"{len(pairs)} pairs to measure", flush=True)

    def one(pair) -> None:
        name, path, target = pair
        with _print_lock:
            print(f"{name} on {target} ...", flush=True)
        result = run_pair(path, target, args.timeout)
        with lock:
            results[f"{name}|{target}"] = result
            write()
        with _print_lock:
            print(f"{name} on {target}: done in {result['child_s']:.0f} s", flush=True)

    start = time.perf_counter()
    with ThreadPoolExecutor(max(1, args.jobs)) as pool:
        list(pool.map(one, pairs))
    write()
    print(f"wrote {args.out} in {time.perf_counter() - start:.0f} s", flush=True)


if __name__ == "__main__":
    main()
