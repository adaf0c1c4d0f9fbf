"""Tree ensembles on the analog-CAM chip: what threshold coding and device noise cost.

    python examples/trees_on_cam.py [--trees 20] [--trials 5]

Trains small scikit-learn ensembles on the bundled breast-cancer, wine and diabetes data (no
download; fixed 70/30 split, seed 0), exports them with skl2onnx and compiles each for the
``acam`` target three ways:

- ``lossless``: as many adjacent 4-bit cells per feature as its thresholds need;
- ``chip``: the target's own cap, two adjacent 4-bit cells per feature (256 code levels);
- ``1 cell``: one 4-bit cell per feature (16 levels): thresholds beyond that are merged.

On the test split, every coding runs without device noise and is compared with onnxruntime
on the original model ("agree": labels equal to onnxruntime's, or regression values within
1e-5 of its largest magnitude); "quality" is accuracy against the data's labels (R² for the
regressor). The chip coding also runs ``--trials`` times with CAM noise switched on (each
trial programs the bounds with a new seed), reported as mean ± std. Each row shows the CAM
rows and arrays the coding uses, their utilisation, and the timing model's latency,
throughput and energy per decision (``runtime.timing.estimate``: one sample per run).
"""
from __future__ import annotations

import argparse
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent

from nmc.compiler import compile_model
from nmc.runtime import SimOptions, execute
from nmc.runtime.timing import estimate

CODINGS = {"lossless": {"cam-mapping": "lossless=true"}, "chip": None, "1 cell": {"cam-mapping": "max_cells=1"}}


@dataclass(frozen=True)
class Case:
    """One trained model: its ONNX export, the test split and onnxruntime's outputs on it."""

    name: str
    onnx: object
    x: np.ndarray
    y: np.ndarray
    classifier: bool
    reference: np.ndarray     # onnxruntime: labels, or regression values
    reference_quality: float  # onnxruntime's accuracy (R²) on the test split


@dataclass(frozen=True)
class Row:
    """One model under one coding."""

    case: str
    coding: str
    merged: int               # thresholds merged by the cell cap
    rows: int
    arrays: int
    utilization: float
    agree: float              # noise off, against onnxruntime
    quality: float            # noise off, against the data
    noisy_agree: tuple[float, float] | None   # mean, std over trials (chip coding only)
    noisy_quality: tuple[float, float] | None
    latency_ns: float
    throughput: float
    energy_nj: float


def cases(trees: int = 20) -> list[Case]:
    """The models of the study, trained and exported (skl2onnx, no ZipMap)."""
    import onnxruntime as ort
    from skl2onnx import to_onnx
    from sklearn import datasets, ensemble

    specs = [
        ("random forest, breast cancer", "breast_cancer",
         ensemble.RandomForestClassifier(trees, max_depth=6, random_state=0)),
        ("gradient boosting, breast cancer", "breast_cancer",
         ensemble.GradientBoostingClassifier(n_estimators=trees, max_depth=3, random_state=0)),
        ("random forest, wine", "wine", ensemble.RandomForestClassifier(trees, max_depth=5, random_state=0)),
        ("random forest, diabetes", "diabetes", ensemble.RandomForestRegressor(trees, max_depth=6, random_state=0)),
    ]
    out = []
    for name, data, model in specs:
        x, y = getattr(datasets, f"load_{data}")(return_X_y=True)
        x = x.astype(np.float32)
        order = np.random.default_rng(0).permutation(len(x))
        cut = int(0.7 * len(x))
        train, test = order[:cut], order[cut:]
        model.fit(x[train], y[train])
        classifier = hasattr(model, "predict_proba")
        options = {id(model): {"zipmap": False}} if classifier else None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            onx = to_onnx(model, x[:1], options=options, target_opset={"": 17, "ai.onnx.ml": 3})
        session = ort.InferenceSession(onx.SerializeToString(), providers=["CPUExecutionProvider"])
        reference = session.run(None, {"X": x[test]})[0].reshape(-1)
        out.append(Case(name, onx, x[test], y[test], classifier, reference, _quality(reference, y[test], classifier)))
    return out


def _quality(predicted: np.ndarray, truth: np.ndarray, classifier: bool) -> float:
    if classifier:
        return float(np.mean(predicted == truth))
    return float(1 - np.sum((predicted - truth) ** 2) / np.sum((truth - truth.mean()) ** 2))


def _agree(predicted: np.ndarray, case: Case) -> float:
    if case.classifier:
        return float(np.mean(predicted == case.reference))
    return float(np.mean(np.abs(predicted - case.reference) <= 1e-5 * np.abs(case.reference).max()))


def _predict(program, case: Case, options: SimOptions) -> np.ndarray:
    out = execute(program, {"X": case.x}, options=options)
    first = case.onnx.graph.output[0].name  # the label (classifiers) or the value (regressors)
    return out[first].reshape(-1)


def evaluate(case: Case, trials: int = 5, first_seed: int = 0) -> list[Row]:
    """Every coding of one model: mapping, agreement and quality without noise, noise trials
    for the chip coding, and the timing model's cost per decision."""
    rows = []
    for coding, options in CODINGS.items():
        c = compile_model(case.onnx, "acam", pass_options=options)
        cam = next(m.cam for m in c.graph.mapping.values() if m.unit == "cam")
        predicted = _predict(c.program, case, SimOptions(noise=False))
        noisy_agree = noisy_quality = None
        if coding == "chip" and trials > 0:
            runs = [_predict(c.program, case, SimOptions(noise=True, seed=first_seed + t)) for t in range(trials)]
            agrees = [_agree(p, case) for p in runs]
            qualities = [_quality(p, case.y, case.classifier) for p in runs]
            noisy_agree = (float(np.mean(agrees)), float(np.std(agrees)))
            noisy_quality = (float(np.mean(qualities)), float(np.std(qualities)))
        stats = estimate(c.program, c.target)
        rows.append(Row(case.name, coding, sum(code.merged for code in cam.codes), cam.rows, cam.arrays,
                        cam.utilization, _agree(predicted, case), _quality(predicted, case.y, case.classifier),
                        noisy_agree, noisy_quality, stats.latency_s * 1e9, stats.throughput_per_s,
                        stats.energy_total_pj / 1e3))
    return rows


def format_table(all_cases: list[Case], rows: list[Row]) -> str:
    """A Markdown table: one line per model and coding."""
    reference = {c.name: c for c in all_cases}
    lines = ["| model | coding | merged thresholds | CAM rows | arrays | utilisation | agree with onnxruntime | "
             "accuracy / R² (onnxruntime) | with CAM noise: agree | with CAM noise: accuracy / R² | latency | "
             "throughput | energy / decision |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        ref = reference[r.case].reference_quality
        noisy_a = f"{r.noisy_agree[0]:.1%} ± {r.noisy_agree[1]:.1%}" if r.noisy_agree else ""
        noisy_q = f"{r.noisy_quality[0]:.3f} ± {r.noisy_quality[1]:.3f}" if r.noisy_quality else ""
        lines.append(f"| {r.case} | {r.coding} | {r.merged} | {r.rows} | {r.arrays} | {r.utilization:.1%} | "
                     f"{r.agree:.1%} | {r.quality:.3f} ({ref:.3f}) | {noisy_a} | {noisy_q} | {r.latency_ns:.0f} ns | "
                     f"{r.throughput / 1e6:.1f} M/s | {r.energy_nj:.2f} nJ |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trees", type=int, default=20, help="trees per ensemble")
    ap.add_argument("--trials", type=int, default=5, help="noise trials for the chip coding")
    args = ap.parse_args()
    all_cases = cases(args.trees)
    rows = [row for case in all_cases for row in evaluate(case, args.trials)]
    print(f"{args.trees}-tree ensembles on acam (RRAM analog CAM, 4-bit cells), test split; "
          f"noise: {args.trials} trials of bound programming spread\n")
    print(format_table(all_cases, rows))


if __name__ == "__main__":
    main()
