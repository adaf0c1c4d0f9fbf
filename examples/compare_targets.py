"""One model on every preset chip, side by side: what each technology costs in accuracy, time
and energy.

    python examples/compare_targets.py [--model examples/digits_cnn.onnx] [--time 1d] [--quick]

For each preset (`nmc targets`) the model is compiled with the same calibration images (the
first 100 of the digits test split), run on the other test images on one programmed chip
(seed 0) read ``--time`` after programming, and tabulated:

- accuracy     top-1 against the labels (the float model's in the first line);
- rel. error   max|y − y_float| / max|y_float| against the float program (the ``ideal`` target);
- latency      one inference, end to end; throughput: inferences/s with inputs pipelined;
- energy       per inference, and TOPS/W (ops = 2 × MACs at each layer's precision);
- analog       the share of multiply-accumulates done in analog arrays (the rest run on digital
               CIM arrays or vector units);
- crossbars    arrays holding weights, of all the arrays on the chip.

``ideal`` is the float reference. ``acam`` has analog CAM arrays for tree ensembles and no
crossbars, so a CNN runs on its vector unit (its figures equal ideal's). A preset a model cannot
be compiled for gets the compiler's reason instead of figures.
The figures are those `nmc run` and `nmc report` print. It takes about 2 s (``--quick``: 60
images, under 1 s, as the tests run it).
"""
from __future__ import annotations

import argparse
import time as clock
from dataclasses import dataclass
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent

from nmc.backends.target import load_target, preset_names
from nmc.compiler import compile_model
from nmc.compiler.reports import mapping_table
from nmc.compiler.reports.report import summarize
from nmc.isa.errors import NmcError
from nmc.runtime import SimOptions, execute
from nmc.runtime.timing import estimate

CALIBRATION_IMAGES = 100


@dataclass(frozen=True)
class Row:
    target: str
    accuracy: float | None = None
    rel_error: float | None = None
    summary: dict | None = None     # compiler.reports.report.summarize: latency, energy, crossbars, ...
    problem: str = ""               # why the model does not run on this target


def compare(model: str | Path, x: np.ndarray, labels: np.ndarray, calibration: np.ndarray,
            targets: list[str], seconds: float = 0.0) -> tuple[float, list[Row]]:
    """(float accuracy, one Row per target)."""
    ideal = compile_model(model, "ideal")
    name = ideal.program.inputs[0].name
    y_float = next(iter(execute(ideal.program, {name: x}).values())).astype(np.float64)
    rows = []
    for target in targets:
        try:
            compiled = compile_model(model, load_target(target), calibration={name: calibration})
        except NmcError as e:
            rows.append(Row(target, problem=str(e).splitlines()[0]))
            continue
        program, tgt = compiled.program, compiled.target
        y = next(iter(execute(program, {name: x}, tgt, SimOptions(time=seconds, seed=0)).values()))
        table = mapping_table.mapping_table(compiled.graph, program, tgt)
        rel = float(np.max(np.abs(y - y_float)) / np.max(np.abs(y_float)))
        rows.append(Row(target, float(np.mean(y.argmax(1) == labels)), rel,
                        summarize(program, tgt, table, estimate(program, tgt))))
    return float(np.mean(y_float.argmax(1) == labels)), rows


def format_table(float_accuracy: float, rows: list[Row]) -> str:
    header = ("target", "accuracy", "rel. error", "latency", "throughput", "energy/inf.", "TOPS/W", "analog",
              "crossbars")
    lines = []
    for r in rows:
        if r.summary is None:
            lines.append((r.target, f"cannot run: {r.problem}"))
            continue
        s = r.summary
        crossbars = f"{s['crossbars_used']:,} of {s['crossbars_available']:,}" if s["crossbars_available"] else "-"
        lines.append((r.target, f"{r.accuracy:.1%}", f"{r.rel_error:.3g}", _si(s["latency_s"], "s"),
                      f"{s['throughput_per_s']:,.0f}/s", _si(s["energy_per_inference_j"], "J"),
                      f"{s['tops_per_w']:.3g}", f"{s['analog_mac_fraction']:.0%}", crossbars))
    full = [line for line in lines if len(line) == len(header)]
    widths = [max(len(row[i]) for row in [header, *full]) for i in range(len(header))]

    def fmt(row) -> str:
        if len(row) != len(header):
            return f"{row[0]:<{widths[0]}} | {row[1]}"
        return " | ".join(f"{cell:<{w}}" if i == 0 else f"{cell:>{w}}" for i, (cell, w) in enumerate(zip(row, widths)))

    out = [f"float model: accuracy {float_accuracy:.1%}", "", fmt(header), "-+-".join("-" * w for w in widths)]
    return "\n".join(out + [fmt(row) for row in lines])


def _si(value: float, unit: str) -> str:
    for factor, prefix in ((1e-12, "p"), (1e-9, "n"), (1e-6, "µ"), (1e-3, "m"), (1.0, "")):
        if abs(value) < factor * 1000:
            return f"{value / factor:.3g} {prefix}{unit}"
    return f"{value:.3g} {unit}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(HERE / "digits_cnn.onnx"))
    parser.add_argument("--data", default=str(HERE / "digits_test.npz"), help=".npz with inputs and labels 'y'")
    parser.add_argument("--input-key", default="x_image", help="array of --data to feed the model")
    parser.add_argument("--time", type=float, default=0.0, help="seconds since programming (default: 0)")
    presets = ["ideal", *(name for name in preset_names() if name != "ideal")]
    parser.add_argument("--targets", default=",".join(presets), help="comma-separated (default: all presets)")
    parser.add_argument("--quick", action="store_true", help="60 test images")
    args = parser.parse_args(argv)
    data = np.load(args.data)
    x, y = data[args.input_key], data["y"]
    calibration, x, y = x[:CALIBRATION_IMAGES], x[CALIBRATION_IMAGES:], y[CALIBRATION_IMAGES:]
    if args.quick:
        x, y = x[:60], y[:60]
    start = clock.perf_counter()
    float_accuracy, rows = compare(args.model, x, y, calibration, args.targets.split(","), args.time)
    print(f"{Path(args.model).name} on {len(y)} images, one programmed chip (seed 0), t = {args.time:g} s")
    print(format_table(float_accuracy, rows))
    print(f"\n({clock.perf_counter() - start:.1f} s)")


if __name__ == "__main__":
    main()
