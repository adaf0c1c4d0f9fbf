"""Tree-ensemble benchmark on the ``acam`` target (a script, not collected by pytest).

    PYTHONPATH=. python tests/benchmarks/bench_trees.py [--trees 100] [--samples 10000] [--chunk 2000]

Trains a random forest on scikit-learn's breast-cancer data, exports it with skl2onnx, compiles
it for ``acam`` (the chip's coding, and lossless coding) and prints simulator throughput against
onnxruntime's on ``--samples`` inputs (the data set repeated with a little jitter), the mapping
(rows, cores, arrays, merged thresholds), agreement with onnxruntime and the timing model's
latency, throughput and energy per decision. The simulator runs ``--chunk`` samples at a time:
every CAM core keeps a buffer per sample, so memory grows with cores × batch.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from nmc.compiler.driver import compile_model  # noqa: E402
from nmc.runtime.crossbar import SimOptions  # noqa: E402
from nmc.runtime.machine import execute  # noqa: E402
from nmc.runtime.timing import estimate  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trees", type=int, default=100)
    ap.add_argument("--samples", type=int, default=10000)
    ap.add_argument("--chunk", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    from sklearn.datasets import load_breast_cancer
    from sklearn.ensemble import RandomForestClassifier
    from skl2onnx import to_onnx

    x, y = load_breast_cancer(return_X_y=True)
    x = x.astype(np.float32)
    model = RandomForestClassifier(args.trees, random_state=0).fit(x, y)
    onx = to_onnx(model, x[:1], options={id(model): {"zipmap": False}})
    rng = np.random.default_rng(0)
    data = x[rng.integers(0, len(x), args.samples)] * rng.uniform(0.98, 1.02, (args.samples, x.shape[1])).astype(np.float32)
    session = ort.InferenceSession(onx.SerializeToString(), providers=["CPUExecutionProvider"])
    ort_s = min(_time(lambda: session.run(None, {"X": data})) for _ in range(args.repeats))
    ref_label, ref_prob = session.run(None, {"X": data})
    print(f"{args.trees}-tree random forest, breast cancer, {args.samples} samples")
    print(f"onnxruntime: {ort_s * 1e3:.1f} ms ({args.samples / ort_s:,.0f} samples/s)")
    for label, options in (("chip coding", None), ("lossless", {"cam-mapping": "lossless=true"})):
        t0 = time.perf_counter()
        c = compile_model(onx, "acam", pass_options=options)
        compile_s = time.perf_counter() - t0
        cam = next(m.cam for m in c.graph.mapping.values() if m.unit == "cam")

        def run(noise: bool):
            outs = [execute(c.program, {"X": data[i:i + args.chunk]}, options=SimOptions(noise=noise, seed=0))
                    for i in range(0, len(data), args.chunk)]
            return {k: np.concatenate([o[k] for o in outs]) for k in outs[0]}

        sim_s = min(_time(lambda: run(False)) for _ in range(args.repeats))
        exact = run(False)
        noisy = run(True)
        stats = estimate(c.program, c.target)
        merged = sum(code.merged for code in cam.codes)
        print(f"\n[{label}] compile {compile_s:.2f} s; {cam.paths} paths → {cam.rows} rows × {cam.columns} cells, "
              f"{cam.cores} CAM cores ({cam.arrays} arrays), utilisation {cam.utilization:.1%}, "
              f"{merged} thresholds merged")
        print(f"  simulator, noise off: {sim_s * 1e3:.1f} ms ({args.samples / sim_s:,.0f} samples/s, "
              f"{sim_s / ort_s:.1f}× onnxruntime's time)")
        print(f"  labels equal to onnxruntime: noise off {np.mean(exact['label'] == ref_label):.2%}, "
              f"noise on {np.mean(noisy['label'] == ref_label):.2%}; "
              f"max |Δp| noise off {np.abs(exact['probabilities'] - ref_prob).max():.2e}")
        print(f"  timing model: latency {stats.latency_s * 1e9:.0f} ns, throughput {stats.throughput_per_s:,.0f} "
              f"decisions/s, energy {stats.energy_total_pj / 1e3:.2f} nJ per decision "
              f"(CAM search {stats.energy_pj['cam_search']:.0f} pJ, leaves {stats.energy_pj['cam_leaf']:.0f} pJ, "
              f"reduction {stats.energy_pj['cam_reduce']:.0f} pJ)")


def _time(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


if __name__ == "__main__":
    main()
