"""What the commands print: the compile summary and its headline figures, the timing summary of
``nmc run``, the spread over trials and the top-1 classes of a run."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from nmc.compiler.cli.files import CliError
from nmc.compiler.trials import Spread
from nmc.runtime.display import si


def fmt_shape(shape, batched: bool = False) -> str:
    return "[" + ",".join((["N"] if batched else []) + [str(d) for d in shape]) + "]"


def fmt_bytes(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    return f"{n / 1024:.1f} KiB" if n < 1024 ** 2 else f"{n / 1024 ** 2:.1f} MiB"


def compile_summary(model: str, out: Path, compiled, calibration: dict[str, np.ndarray] | None,
                    asm: str | None) -> str:
    """What ``nmc compile`` made: target, interface, layers, tiles, instructions, memory."""
    from nmc.compiler.buffers import describe as describe_buffers   # compile only: run and report stay light

    program, target = compiled.program, compiled.target
    const_values = sum(c.size for c in program.consts.values())
    const_bytes = sum(np.asarray(program.data[c]).nbytes for c in program.consts)
    spaces: dict[str, list[int]] = {}
    for b in program.buffers.values():
        spaces.setdefault("global" if b.space == "global" else "core-local", []).append(b.size)
    batched = program.batched
    lines = [
        f"compiled {model} -> {out}",
        f"  target        {target.name} ({target.one_line()})",
        "  inputs        " + ", ".join(f"{p.name} {p.dtype}{fmt_shape(p.shape, batched)}" for p in program.inputs),
        "  outputs       " + ", ".join(f"{p.name} {p.dtype}{fmt_shape(p.shape, batched)}" for p in program.outputs),
        f"  layers        {len(program.layers)}",
    ]
    if program.tiles:
        lines.append(f"  crossbar      {len(program.tiles)} tile(s) on "
                     f"{len({(t.core, t.xbar) for t in program.tiles.values()})} crossbar(s)")
    lines += [
        f"  instructions  {program.instruction_count()} on {len(program.cores)} core(s)",
        f"  constants     {len(program.consts)} arrays, {const_values:,} values ({fmt_bytes(const_bytes)})",
        "  buffers       " + ", ".join(f"{len(sizes)} {space} ({sum(sizes):,} values/sample)"
                                       for space, sizes in sorted(spaces.items(), reverse=True)),
    ]
    if (need := describe_buffers(program, target)):
        lines.append(f"  core buffers  {need}")
    if program.tiles:
        sources = sorted({t.adc_range_source.split(":")[0] for m in compiled.graph.mapping.values()
                          for t in m.tiles})
        lines.append("  calibration   " + (f"{next(iter(calibration.values())).shape[0]} sample(s); "
                                           if calibration else "none; ") + f"ADC ranges from {' and '.join(sources)}")
        replicated = [(n.onnx_name or n.name, m.tiles[0].replicas) for n in compiled.graph.nodes()
                      if (m := compiled.graph.mapping.get(n.name)) is not None and m.unit == "crossbar"
                      and m.tiles and m.tiles[0].replicas > 1]
        if target.mapping != "latency":
            lines.append("  mapping       " + (
                "dense: blocks stacked on the free rows of crossbars already used" if target.mapping == "dense" else
                "throughput-oriented: " + (", ".join(f"{name} ×{r}" for name, r in replicated) if replicated else
                                           "no layer's crossbars bound the throughput, so nothing is replicated")))
        if target.crossbar is not None and target.crossbar.analog:
            from nmc.runtime.programming import describe

            lines.append(f"  programming   {describe(target.programming, program)}")
    if asm:
        lines.append(f"  assembly      {asm}")
    return "\n".join(lines)


def headline(program, target, table: dict) -> str:
    """The report's headline figures, for the end of ``nmc compile``."""
    from nmc.compiler.reports.report import summarize
    from nmc.runtime.timing import estimate

    s = summarize(program, target, table, estimate(program, target))
    units = ", ".join(f"{n} on {unit}" for unit, n in sorted(s["layers_by_unit"].items()))
    lines = []
    if s["crossbars_available"]:
        lines.append(f"  chip          {s['crossbars_used']:,} of {s['crossbars_available']:,} crossbars used "
                     f"({s['crossbar_cores_used']} of {s['crossbar_cores_available']} crossbar cores), "
                     f"{100 * s['crossbar_utilization']:.2g}% of the {'system' if s['chips'] > 1 or s['rounds'] > 1 else 'chip'}'s cells")
        if s["chips"] > 1:
            lines.append(f"  system        {s['chips']} chips of {s['crossbars_available'] // s['chips']:,} crossbars, "
                         "joined by chip-to-chip links (digital work on the first chip; set chip.chips to limit)")
        if s["rounds"] > 1:
            lines.append(f"  reprogramming {s['rounds']} rounds of the crossbars per batch of "
                         f"{target.programming.inferences_per_round} inference(s) (chip.overflow = \"reprogram\")")
    lines.append(f"  split         {100 * s['analog_mac_fraction']:.0f}% of {s['macs']:,.0f} MACs analog; "
                 f"layers: {units}")
    lines.append(f"  per inference {si(s['latency_s'], 's')}, {si(s['energy_per_inference_j'], 'J')}, "
                 f"{s['tops_per_w']:.3g} TOPS/W, {s['throughput_per_s']:,.0f} inferences/s pipelined "
                 f"(nmc report for the details)")
    return "\n".join(lines)


def stats_summary(stats, batch: int) -> str:
    """Timing and energy of one inference, and of the batch pipelined through the chip."""
    e = stats.energy_total_pj * 1e-12
    parts = sorted(((k, v) for k, v in stats.energy_pj.items() if v > 0), key=lambda kv: -kv[1])
    batch_s = stats.latency_s + (batch - 1) / stats.throughput_per_s if stats.throughput_per_s else 0.0
    lines = [
        f"timing ({stats.target}, {stats.clock_ghz:g} GHz, one inference):",
        f"  latency      {stats.latency_cycles:,.0f} cycles = {si(stats.latency_s, 's')}",
        f"  throughput   {stats.throughput_per_s:,.0f} inferences/s pipelined "
        f"(batch of {batch}: {si(batch_s, 's')})",
        f"  energy       {si(e, 'J')} per inference: " + ", ".join(f"{k} {100 * v / stats.energy_total_pj:.0f}%"
                                                                  for k, v in parts[:5]),
        f"  efficiency   {stats.tops():.3g} TOPS, {stats.tops_per_w():.3g} TOPS/W, {stats.tops_per_mm2():.3g} TOPS/mm² "
        f"(ops = 2 × MACs at each layer's precision)",
    ]
    if stats.crossbar_utilization:
        lines.append(f"  utilisation  crossbar cells {100 * stats.crossbar_utilization:.1f}%, "
                     f"ADCs {100 * stats.adc_utilization:.1f}%")
    return "\n".join(lines)


def trial_summary(runs: list[dict[str, np.ndarray]], labels: np.ndarray | None, seed: int) -> str:
    """Accuracy against labels and error against the first trial, mean ± std [min, max]."""
    lines = [f"{len(runs)} trial(s), seeds {seed}..{seed + len(runs) - 1}: mean ± std [min, max]"
             if len(runs) > 1 else f"seed {seed}"]
    for name, first in runs[0].items():
        if labels is not None and first.ndim == 2 and first.shape[1] > 1:
            y = np.asarray(labels).reshape(-1)
            if y.shape[0] != first.shape[0]:
                raise CliError(f"labels hold {y.shape[0]} entries but output {name!r} has {first.shape[0]} rows")
            acc = Spread.of(np.mean(np.argmax(run[name], axis=1) == y) for run in runs)
            lines.append(f"  {name}: accuracy {acc.format('.2%')}")
        if len(runs) > 1:
            scale = float(np.max(np.abs(first), initial=0.0)) or 1.0
            rel = Spread.of(float(np.max(np.abs(run[name].astype(np.float64) - first), initial=0.0)) / scale
                            for run in runs[1:])
            text = f"  {name}: rel err vs trial 1 {rel.format('.3g')}"
            if first.ndim == 2 and first.shape[1] > 1:
                agree = Spread.of(np.mean(np.argmax(run[name], axis=1) == np.argmax(first, axis=1))
                                  for run in runs[1:])
                text += f"; top-1 agreement {agree.format('.2%')}"
            lines.append(text)
    return "\n".join(lines)


def top1_summary(scores: np.ndarray) -> str:
    """The argmax class of the first rows of a 2-D output, and how many rows each class got."""
    classes = np.argmax(scores, axis=1)
    shown = " ".join(map(str, classes[:20])) + (" ..." if len(classes) > 20 else "")
    counts = np.bincount(classes, minlength=scores.shape[1])
    histogram = " ".join(f"{c}:{n}" for c, n in enumerate(counts) if n)
    return f"top-1 classes of {len(classes)} row(s): {shown}\n  per class: {histogram}"
