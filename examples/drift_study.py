"""Drift study: what PCM conductance drift (with and without global drift compensation) and RRAM
programming spread do to a network's accuracy, over several independently programmed chips.

    python examples/drift_study.py [--trials 5] [--model examples/digits_cnn.onnx]

The model is compiled once per target (``pcm``, ``rram``) and run on the digits test split
under each condition; trial ``i`` programs the crossbars with seed ``first_seed + i``, the same
seed for every condition, so conditions are compared on the same programmed chips. Each row
reports mean ± std over trials of the accuracy against the labels and of the error against
the ideal float program (target ``ideal``):

- max rel. error  = max|y − y_float| / max|y_float|
- mean rel. error = mean|y − y_float| / mean|y_float|

The "noise off" rows are the quantisation and ADC loss alone (no device physics). PCM is read
at t = 1 s (essentially right after programming), 1 hour, 1 day and 1 year; RRAM at the times
its programming spread is fitted at (Wan et al. 2022: 1 s, 1 day, 2 days). Drift
compensation only applies to PCM (the RRAM model has no drift).
"""
from __future__ import annotations

import argparse
import time as clock
from dataclasses import dataclass
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent

from nmc.compiler import compile_model
from nmc.runtime import SimOptions, execute

HOUR, DAY = 3600.0, 86400.0
YEAR = 365.25 * DAY
PCM_TIMES = {"1 s": 1.0, "1 h": HOUR, "1 d": DAY, "1 y": YEAR}
RRAM_TIMES = {"1 s": 1.0, "1 d": DAY, "2 d": 2 * DAY}  # the fitted times of Wan 2022


@dataclass(frozen=True)
class Condition:
    """One row of the study: a target read at ``time`` seconds after programming."""

    target: str
    time_label: str
    time: float
    noise: bool = True
    drift_compensation: bool | None = True  # None: the device has no drift to compensate

    def options(self, seed: int) -> SimOptions:
        return SimOptions(time=self.time, seed=seed, noise=self.noise,
                          drift_compensation=bool(self.drift_compensation))


@dataclass(frozen=True)
class Result:
    condition: Condition
    accuracy: np.ndarray        # per trial
    max_rel_error: np.ndarray   # per trial
    mean_rel_error: np.ndarray  # per trial


def conditions(pcm_times: dict[str, float] = PCM_TIMES,
               rram_times: dict[str, float] = RRAM_TIMES) -> list[Condition]:
    """The rows of the study: a noise-off baseline per target, then each time (PCM with and
    without drift compensation)."""
    rows = [Condition("pcm", "-", 0.0, noise=False, drift_compensation=None)]
    for label, t in pcm_times.items():
        rows += [Condition("pcm", label, t, drift_compensation=True),
                 Condition("pcm", label, t, drift_compensation=False)]
    rows.append(Condition("rram", "-", 0.0, noise=False, drift_compensation=None))
    rows += [Condition("rram", label, t, drift_compensation=None) for label, t in rram_times.items()]
    return rows


def output_errors(y: np.ndarray, y_float: np.ndarray) -> tuple[float, float]:
    """(max|y − y_float| / max|y_float|, mean|y − y_float| / mean|y_float|)."""
    diff = np.abs(y.astype(np.float64) - y_float)
    return float(diff.max() / np.abs(y_float).max()), float(diff.mean() / np.abs(y_float).mean())


def run_study(model: str | Path, x: np.ndarray, labels: np.ndarray, rows: list[Condition], trials: int,
              first_seed: int = 0) -> tuple[float, list[Result]]:
    """(accuracy of the float program, one Result per condition)."""
    ideal = compile_model(model, target="ideal")
    feeds = {ideal.program.inputs[0].name: x}
    y_float = next(iter(execute(ideal.program, feeds).values())).astype(np.float64)
    float_accuracy = float((y_float.argmax(1) == labels).mean())
    compiled = {}
    results = []
    for cond in rows:
        if cond.target not in compiled:
            compiled[cond.target] = compile_model(model, target=cond.target)
        c = compiled[cond.target]
        acc, max_rel, mean_rel = [], [], []
        for i in range(trials if cond.noise else 1):  # without noise every trial is the same
            y = next(iter(execute(c.program, feeds, target=c.target, options=cond.options(first_seed + i)).values()))
            acc.append(float((y.argmax(1) == labels).mean()))
            errors = output_errors(y, y_float)
            max_rel.append(errors[0])
            mean_rel.append(errors[1])
        results.append(Result(cond, np.array(acc), np.array(max_rel), np.array(mean_rel)))
    return float_accuracy, results


def _pm(values: np.ndarray, scale: float = 1.0, digits: int = 3) -> str:
    if len(values) == 1:
        return f"{values[0] * scale:.{digits}f}"
    return f"{values.mean() * scale:.{digits}f} ± {values.std(ddof=1) * scale:.{digits}f}"


def format_table(float_accuracy: float, results: list[Result]) -> str:
    header = ("target", "t", "noise", "drift comp.", "accuracy %", "max rel. error", "mean rel. error")
    lines = [(r.condition.target, r.condition.time_label, "on" if r.condition.noise else "off",
              {True: "on", False: "off", None: "-"}[r.condition.drift_compensation],
              _pm(r.accuracy, 100.0, 1), _pm(r.max_rel_error), _pm(r.mean_rel_error)) for r in results]
    widths = [max(len(row[i]) for row in [header, *lines]) for i in range(len(header))]
    fmt = " | ".join(f"{{:{'<' if i < 4 else '>'}{w}}}" for i, w in enumerate(widths))
    out = [f"float program (ideal target): accuracy {float_accuracy * 100:.1f} %", "",
           fmt.format(*header), "-+-".join("-" * w for w in widths)]
    out += [fmt.format(*row) for row in lines]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(HERE / "digits_cnn.onnx"))
    parser.add_argument("--data", default=str(HERE / "digits_test.npz"), help=".npz with inputs and labels 'y'")
    parser.add_argument("--input-key", default="x_image", help="array of --data to feed the model")
    parser.add_argument("--trials", type=int, default=5, help="independently programmed chips per condition")
    parser.add_argument("--first-seed", type=int, default=0)
    args = parser.parse_args(argv)
    data = np.load(args.data)
    start = clock.perf_counter()
    float_accuracy, results = run_study(args.model, data[args.input_key], data["y"], conditions(), args.trials,
                                        args.first_seed)
    print(f"{Path(args.model).name} on {len(data['y'])} samples, {args.trials} trials "
          f"(seeds {args.first_seed}..{args.first_seed + args.trials - 1}), mean ± std over trials")
    print(format_table(float_accuracy, results))
    print(f"\n({clock.perf_counter() - start:.1f} s)")


if __name__ == "__main__":
    main()
