"""A CNN on a phase-change-memory chip: how accuracy holds up as the conductances drift, and an
HTML report of the mapping, timing and energy.

    python examples/cnn_on_pcm.py [OUT] [--trials 5] [--quick]

What it shows, in order, with the public Python API (``nmc.compile``, ``nmc.load``,
``.trials``, ``nmc.report``: the same steps as `nmc compile --calibration`, `nmc run --time` and
`nmc report`):

1. compiles the digits CNN (``examples/digits_cnn.onnx``) for the ``pcm`` preset (IBM
   HERMES-like), calibrated on the first 100 images of the test split (fixed input scales and
   ADC ranges), and saves the program;
2. runs it on the other 259 images on ``--trials`` independently programmed chips, read 1 second,
   1 day and 1 year after programming, with PCM's global drift compensation on and off, and
   prints the accuracy (mean ± std over chips) next to that of the float model;
3. writes a self-contained HTML report (floor plan, per-layer table, energy and latency charts,
   accuracy and error against onnxruntime at each time) to ``OUT``: a ``.html`` file, or a
   directory (default ``/tmp``) to write ``digits_cnn_pcm.report.html`` in.

It takes about 6 s (``--quick``: about 1 s, one chip and 60 images, as the tests run it).
"""
from __future__ import annotations

import argparse
import time as clock
from pathlib import Path

import numpy as np

import nmc

HERE = Path(__file__).resolve().parent
MODEL = HERE / "digits_cnn.onnx"
DATA = HERE / "digits_test.npz"
TIMES = ["1s", "1d", "1y"]  # since programming
CALIBRATION_IMAGES = 100


def run(out: Path, trials: int = 5, samples: int | None = None) -> dict:
    """Compile, evaluate and report; returns the figures printed (for the tests)."""
    data = np.load(DATA)
    x, y = data["x_image"], data["y"]
    calibration, x, y = x[:CALIBRATION_IMAGES], x[CALIBRATION_IMAGES:], y[CALIBRATION_IMAGES:]
    if samples is not None:
        x, y = x[:samples], y[:samples]

    # 1. compile for pcm and save the program as `nmc compile` does (target and mapping inside)
    out_dir = out if out.suffix != ".html" else out.parent
    program_path = out_dir / "digits_cnn_pcm.nmc"
    nmc.compile(MODEL, "pcm", calibration=calibration).save(program_path)

    # 2. accuracy after drift, with and without drift compensation, against the float model
    float_accuracy = _accuracy(nmc.compile(MODEL, "ideal").run(x), y)
    chip = nmc.load(program_path)  # the program carries its chip

    def accuracies(drift_compensation: bool) -> list[dict]:
        runs = chip.trials(x, trials, times=TIMES, drift_compensation=drift_compensation)
        per_time = [[_accuracy(r, y) for r in runs[t::len(TIMES)]] for t in range(len(TIMES))]
        return [{"mean": float(np.mean(a)), "std": float(np.std(a)), "n": len(a)} for a in per_time]

    rows = list(zip(TIMES, accuracies(True), accuracies(False)))

    # 3. the HTML report, with the compensated runs (accuracy and error against onnxruntime)
    report = nmc.report(chip, x, labels=y, model=MODEL, trials=trials, times=TIMES)
    report_path = out if out.suffix == ".html" else out / "digits_cnn_pcm.report.html"
    report.save(report_path)

    s = report["summary"]
    print(f"digits CNN on pcm: {s['crossbars_used']} of {s['crossbars_available']} crossbars, "
          f"{s['latency_s'] * 1e6:.1f} µs and {s['energy_per_inference_j'] * 1e9:.0f} nJ per inference, "
          f"{s['tops_per_w']:.2f} TOPS/W")
    print(f"{len(y)} test images, {trials} programmed chip(s), accuracy mean ± std over chips; "
          f"float model {float_accuracy:.1%}")
    print(f"  {'time':>5}  {'drift compensation on':>22}  {'off':>15}")
    for label, on, off in rows:
        print(f"  {label:>5}  {_pm(on):>22}  {_pm(off):>15}")
    print(f"wrote {program_path}\nwrote {report_path} (open it in a browser)")
    return {"float_accuracy": float_accuracy, "rows": rows, "report": report_path, "program": program_path}


def _accuracy(outputs: dict, labels: np.ndarray) -> float:
    return float(np.mean(outputs["logits"].argmax(1) == labels))


def _pm(spread: dict) -> str:
    return f"{spread['mean']:.1%} ± {spread['std']:.1%}" if spread["n"] > 1 else f"{spread['mean']:.1%}"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", default="/tmp", help="a .html file or a directory (default: /tmp)")
    parser.add_argument("--trials", type=int, default=5, help="independently programmed chips (default: 5)")
    parser.add_argument("--quick", action="store_true", help="one chip and 60 images")
    args = parser.parse_args(argv)
    out = Path(args.out)
    if not (out.parent if out.suffix == ".html" else out).is_dir():
        parser.error(f"{out}: no such directory")
    start = clock.perf_counter()
    figures = run(out, trials=1 if args.quick else args.trials, samples=60 if args.quick else None)
    print(f"({clock.perf_counter() - start:.1f} s)")
    return figures


if __name__ == "__main__":
    main()
