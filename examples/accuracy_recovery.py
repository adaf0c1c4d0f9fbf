"""Recovering the accuracy device noise costs: write-verify, copies, per-column calibration and
per-column drift compensation, alone and combined, on the digits CNN and MLP on pcm and rram.

    python examples/accuracy_recovery.py [--chips 10] [--quick] [-o docs/accuracy_recovery.md]

For each model (``examples/digits_cnn.onnx``, ``examples/digits_mlp.onnx``), preset (``pcm``,
``rram``) and configuration of the target's ``[programming]`` table (none, each technique alone,
all combined), with the public Python API (``with_fields``, ``nmc.compile``, ``.trials``,
``.programming``, ``.stats``):

1. compiles the model, calibrated on the first 100 images of the test split (input scales, ADC
   ranges and, with copies, each layer's measured sensitivity);
2. runs it on the other 259 images on ``--chips`` independently programmed chips (chip i:
   seed i), each read 1 second, 1 hour, 1 day and 1 year after programming, and takes the
   accuracy's mean ± std over chips;
3. prices programming chip 0 for a run one day after programming (time, energy, pulses per
   device) and one inference (energy), and counts the crossbars used;
4. writes the markdown document ``-o`` (default ``docs/accuracy_recovery.md``) with the tables,
   the float models' accuracy and what each technique does.

It takes about 80 s (``--quick``: about 5 s, 2 chips, 60 images, the CNN on pcm at 1 s and
1 day, as the tests run it; prints the table and writes no document unless ``-o`` is given).
"""
from __future__ import annotations

import argparse
import textwrap
import time as clock
from pathlib import Path

import numpy as np

import nmc
from nmc.backends.target import Target, load_target, with_fields
from nmc.compiler import redundancy

HERE = Path(__file__).resolve().parent
DATA = HERE / "digits_test.npz"
DOCUMENT = HERE.parent / "docs" / "accuracy_recovery.md"
MODELS = {"CNN": (HERE / "digits_cnn.onnx", "x_image"), "MLP": (HERE / "digits_mlp.onnx", "x_flat")}
TARGETS = ("pcm", "rram")
TIMES = {"1s": "1 s", "1h": "1 h", "1d": "1 day", "1y": "1 year"}  # since programming
QUICK_TIMES = ("1s", "1d")
COPIES = 4
CONFIGURATIONS = {  # [programming] fields changed from the preset's
    "none": {},
    "write-verify": {"programming.write_verify": True},
    f"copies {COPIES}": {"programming.copies": COPIES},
    "column calibration": {"programming.column_calibration": True},
    "column drift compensation": {"programming.drift_compensation": "column"},
    "all combined": {"programming.write_verify": True, "programming.copies": COPIES,
                     "programming.column_calibration": True, "programming.drift_compensation": "column"},
}
ALL = "all combined"
PULSE_SOURCES = {  # of the presets' [programming] pulse_ns and pulse_pj
    "pcm": "RESET currents of 0.1–0.5 mA at ~1 V for tens of ns: Burr et al., JVST B 28, 223 (2010)",
    "rram": "metal-oxide RRAM switches in ns at pJ-scale energies: Wong et al., Proc. IEEE 100, 1951 (2012)",
}
CALIBRATION_IMAGES = 100
COST_TIME = "1d"  # programming is priced for a chip read this long after programming


def run(chips: int = 10, quick: bool = False) -> dict:
    """Every model × target × configuration; returns the figures the document shows:
    ``results[model][target][configuration]`` with ``accuracy[time]`` (mean, std, n over chips),
    ``programming_ms``, ``programming_uj``, ``pulses_per_device``, ``crossbars``, ``inference_nj``."""
    data = np.load(DATA)
    y = data["y"][CALIBRATION_IMAGES:]
    samples = 60 if quick else len(y)
    times = list(QUICK_TIMES if quick else TIMES)
    models = ["CNN"] if quick else list(MODELS)
    targets = ["pcm"] if quick else list(TARGETS)
    figures = {"chips": chips, "samples": samples, "times": times, "float": {}, "results": {}}
    for model in models:
        path, key = MODELS[model]
        calibration, x = data[key][:CALIBRATION_IMAGES], data[key][CALIBRATION_IMAGES:][:samples]
        labels = y[:samples]
        figures["float"][model] = _accuracy(nmc.compile(path, "ideal").run(x), labels)
        for target in targets:
            figures["results"].setdefault(model, {})[target] = {
                name: _measure(path, with_fields(load_target(target), fields), calibration, x, labels, chips, times)
                for name, fields in CONFIGURATIONS.items()}
    return figures


def _measure(model: Path, target: Target, calibration: np.ndarray, x: np.ndarray, labels: np.ndarray,
             chips: int, times: list[str]) -> dict:
    """One configuration: accuracy per time over ``chips`` chips, and its costs."""
    compiled = nmc.compile(model, target, calibration=calibration)
    runs = compiled.trials(x, chips, times=times)
    accuracy = {}
    for t, time in enumerate(times):
        per_chip = [_accuracy(r, labels) for r in runs[t::len(times)]]
        accuracy[time] = {"mean": float(np.mean(per_chip)), "std": float(np.std(per_chip)), "n": len(per_chip)}
    cost = compiled.programming(time=COST_TIME, seed=0)
    tiles = compiled.program.tiles.values()
    return {"accuracy": accuracy, "programming_ms": cost.time_s * 1e3, "programming_uj": cost.energy_pj * 1e-6,
            "pulses_per_device": cost.pulses_per_device, "crossbars": len({(tile.core, tile.xbar) for tile in tiles}),
            "inference_nj": compiled.stats().energy_total_pj * 1e-3}


def _accuracy(outputs: dict, labels: np.ndarray) -> float:
    (scores,) = outputs.values()  # logits (CNN) or probabilities (MLP)
    return float(np.mean(scores.argmax(1) == labels))


def _pm(spread: dict) -> str:
    return f"{spread['mean']:.1%} ± {spread['std']:.1%}" if spread["n"] > 1 else f"{spread['mean']:.1%}"


def tables(figures: dict) -> str:
    """One markdown table per model and target."""
    times = figures["times"]
    header = ["configuration", *(f"accuracy {TIMES[t]}" for t in times), "prog. time (ms)", "prog. energy (µJ)",
              "pulses/device", "crossbars", "energy/inference (nJ)"]
    out = []
    for model, per_target in figures["results"].items():
        for target, rows in per_target.items():
            out += [f"### {model} on {target}", "", "| " + " | ".join(header) + " |",
                    "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
            for name, r in rows.items():
                cells = [name, *(_pm(r["accuracy"][t]) for t in times), f"{r['programming_ms']:.3f}",
                         f"{r['programming_uj']:.3f}", f"{r['pulses_per_device']:.2f}", str(r["crossbars"]),
                         f"{r['inference_nj']:.0f}"]
                out.append("| " + " | ".join(cells) + " |")
            out.append("")
    return "\n".join(out)


def headline(figures: dict) -> str:
    """The CNN on pcm one day after programming: all techniques against float and none."""
    rows = figures["results"]["CNN"]["pcm"]
    none, best, float_accuracy = rows["none"], rows[ALL], figures["float"]["CNN"]
    day = {name: r["accuracy"]["1d"] for name, r in rows.items()}
    singles = [name for name in rows if name not in ("none", ALL)]
    alone = "; ".join(f"{name}: {_pm(day[name])}" for name in singles)
    highest = max(singles, key=lambda name: day[name]["mean"])
    return (f"On pcm one day after programming the CNN with all four techniques is {_pm(day[ALL])} accurate, "
            f"against {float_accuracy:.1%} for the float model and {_pm(day['none'])} with none (each alone: "
            f"{alone}; the highest, {highest}, takes back {(day[highest]['mean'] - day['none']['mean']) * 100:.1f} "
            f"of the {(float_accuracy - day['none']['mean']) * 100:.1f} percentage points lost to float). "
            f"It costs {best['programming_uj'] / none['programming_uj']:.1f}× the programming energy "
            f"({best['programming_uj']:.3f} against {none['programming_uj']:.3f} µJ), "
            f"{best['programming_ms'] / none['programming_ms']:.0f}× the programming time, "
            f"{best['crossbars']} crossbars instead of {none['crossbars']} and "
            f"{best['inference_nj']:.0f} instead of {none['inference_nj']:.0f} nJ per inference.")


def document(figures: dict, command: str) -> str:
    """The markdown document: the techniques, how they are modelled, the tables, the headline."""
    presets = {name: load_target(name).programming for name in TARGETS}
    p = presets["pcm"]  # tolerance, pulses, verify reads, calibration inputs: the same in both
    pulses = "; ".join(f"`{name}` {q.pulse_ns:g} ns and {q.pulse_pj:g} pJ ({PULSE_SOURCES[name]})"
                       for name, q in presets.items())
    floats = ", ".join(f"{model} {acc:.1%}" for model, acc in figures["float"].items())
    prose = f"""# Recovering accuracy lost to device noise

The `[programming]` table of a target (`backends/target.py`, `Programming`) has four ways to take
back accuracy that programming noise, drift and read noise cost an analog chip. Each is modelled as
follows (`runtime/crossbar.py`, `backends/devices.py`, `runtime/programming.py`):

- **write-verify** (`write_verify = true`): every cell is programmed, read back (with the read
  noise of a read 1 µs after the pulse, an assumption) and programmed again while it lies farther than
  `tolerance` · g_max ({p.tolerance}) from its target, at most `max_pulses`
  ({p.max_pulses}) times; the spread left is that of the accepted attempts (iterative
  program-and-verify: Papandreou et al., ISCAS 2011; Wan et al., Nature 2022; Le Gallo et al.,
  Nat. Electron. 2023). RRAM cells are verified against the level they can hold, then relax from
  their 1-s spread to the one fitted at the run's time; a stuck RRAM cell stays stuck and spends
  every pulse. A crossbar programs one row at a time, as slow as its slowest cell, crossbar cores
  in parallel. Per pulse and cell (`pulse_ns`, `pulse_pj`, orders of magnitude): {pulses}; each
  verify read {p.verify_ns:g} ns and {p.verify_pj:g} pJ (an assumption). Without write-verify: one pulse per cell.
- **copies** (`copies = {COPIES}`): up to {COPIES} devices per weight on extra rows whose currents add on
  the same column (the ADC's full scale grows with them, so a conversion reads their mean; k
  copies divide a layer's programming and read noise variance by k). With calibration data the
  compiler measures each layer's sensitivity (the relative output error with noise in that layer
  alone, {redundancy.HORIZON_S / 86400:g} day after programming, over {redundancy.CHIPS} chips and
  {redundancy.SAMPLES} calibration inputs) and gives copies one
  at a time where they remove the most weighted noise per extra crossbar, within `copies_budget`
  ({p.copies_budget}: every crossbar the model leaves free); copies that fit in a tile's free
  rows take no extra crossbar.
- **column calibration** (`column_calibration = true`): after programming, `calibration_inputs`
  ({p.calibration_inputs}) random input vectors per tile (half the rows driven) are read
  through the programmed cells at the run's time and a least-squares gain and offset per output
  column are fitted against the exact products, applied digitally after recombination; each
  vector costs one MVM, priced as in inference.
- **drift compensation** (`drift_compensation`): a known input (all rows driven) is read right
  after programming and at the run's time; `global` (the default, aihwkit's global drift
  compensation) scales each tile's outputs by the ratio of the summed currents, `column` each
  output column by its own ratio, `none` does nothing. The RRAM model has no drift, so there it
  does nothing.

Devices: `pcm` uses the PCM model of Nandakumar et al. / Joshi et al. (Nat. Commun. 2020, as in
IBM aihwkit `PCMLikeNoiseModel`: programming noise, drift, 1/f read noise); `rram` the
programming-spread fit of Wan et al. (Nature 2022, as in aihwkit `ReRamWan2022NoiseModel`),
16 levels and 0.05 % of cells stuck on and 0.05 % stuck off (the usual yield model, MNSIM 2.0). The
RRAM spread is fitted at 1 s, 1 day and 2 days after programming and a run takes the fit nearest its
time on a log scale, so its 1-h and 1-day columns read the same fit and its 1-year column the 2-day
one.

Regenerate this document with `{command}`. Each model is compiled calibrated on the first
{CALIBRATION_IMAGES} images of `examples/digits_test.npz` and run on the other {figures['samples']}, on
{figures['chips']} programmed chips: chip i is programmed with seed i (`.trials(x, {figures['chips']}, times=...)`)
in every configuration and read at every time from that one programming; the seeds do not depend on the
machine or on the order of the runs. "none" is the preset as shipped (one pulse per cell, one device
per weight, no calibration, `global` drift compensation); each other row changes the fields named
from it, "all combined" all four (copies {COPIES}, column drift compensation). Accuracy is mean ± std
over the chips; programming time, energy and pulses per device are those of chip 0 programmed for a
run {TIMES[COST_TIME]} after programming (copies counted as devices); crossbars are those the program
occupies; energy per inference is the cost model's (`.stats()`).

Float models (`nmc.compile(model, "ideal")`) on the same images: {floats}.

## Reading the table

{headline(figures)}
"""
    return _reflow(prose) + "\n## Results\n\n" + tables(figures)


def _reflow(markdown: str, width: int = 100) -> str:
    """Paragraphs and list items of ``markdown`` wrapped at ``width``; headings kept."""
    blocks = []
    for block in markdown.strip().split("\n\n"):
        if block.startswith("#"):
            blocks.append(block)
            continue
        items = block.replace("\n- ", "\n\0").split("\n\0") if block.startswith("- ") else [block]
        blocks.append("\n".join(
            textwrap.fill(" ".join(item.removeprefix("- ").split()), width,
                          initial_indent="- " if block.startswith("- ") else "",
                          subsequent_indent="  " if block.startswith("- ") else "",
                          break_on_hyphens=False, break_long_words=False)
            for item in items))
    return "\n\n".join(blocks) + "\n"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chips", type=int, default=10, help="independently programmed chips (default: 10)")
    parser.add_argument("--quick", action="store_true", help="2 chips, 60 images, the CNN on pcm at 1 s and 1 day")
    parser.add_argument("-o", "--out", type=Path, default=None,
                        help=f"markdown document to write (default: {DOCUMENT.relative_to(HERE.parent)}; "
                             "none with --quick)")
    args = parser.parse_args(argv)
    out = args.out if args.out is not None or args.quick else DOCUMENT
    start = clock.perf_counter()
    figures = run(chips=2 if args.quick else args.chips, quick=args.quick)
    print(tables(figures))
    print(headline(figures))
    if out is not None:
        command = "python examples/accuracy_recovery.py" + (" --quick" if args.quick else f" --chips {args.chips}")
        out.write_text(document(figures, command))
        print(f"wrote {out}")
    print(f"({clock.perf_counter() - start:.1f} s)")
    return figures


if __name__ == "__main__":
    main()
