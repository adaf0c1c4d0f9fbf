"""Tree-ensemble benchmark on the ``acam`` target (a script, not collected by pytest).

    PYTHONPATH=. python tests/benchmarks/bench_trees.py [--trees 100] [--samples 10000] [--repeats 5]
                                                        [--chunk N] [--workers N] [--kernels]

Trains a random forest on scikit-learn's breast-cancer data, exports it with skl2onnx, compiles
it for ``acam`` (the chip's coding, and lossless coding) and prints the in-process time of
``execute`` (median of ``--repeats``, the runtime choosing chunks and workers unless told)
against onnxruntime's ``session.run`` on ``--samples`` inputs (the data set repeated with a little
jitter), the mapping (rows, cores, arrays, merged thresholds), agreement with onnxruntime
(bit-exact against onnxruntime on one thread, which adds the trees in order as the CAM blocks do)
and the timing model's latency, throughput and energy per decision. ``--kernels`` adds the time
spent in each CAM kernel and in programming the blocks. Whole processes (``nmc run`` against a
Python process running onnxruntime) are the ``forest-acam`` row of bench_table.py.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from nmc.compiler.driver import compile_model  # noqa: E402
from nmc.runtime import cam as cam_model  # noqa: E402
from nmc.runtime import machine  # noqa: E402
from nmc.runtime.crossbar import SimOptions  # noqa: E402
from nmc.runtime.machine import execute  # noqa: E402
from nmc.runtime.timing import estimate  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trees", type=int, default=100)
    ap.add_argument("--samples", type=int, default=10000)
    ap.add_argument("--chunk", type=int, default=None, help="samples per chunk (default: the runtime's choice)")
    ap.add_argument("--workers", type=int, default=None, help="threads (default: the runtime's choice)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--kernels", action="store_true", help="time each CAM kernel and the programming")
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
    session.run(None, {"X": data})
    ort_s = statistics.median(_time(lambda: session.run(None, {"X": data})) for _ in range(args.repeats))
    ref_label, ref_prob = session.run(None, {"X": data})
    one = ort.SessionOptions()
    one.intra_op_num_threads = 1
    in_order = ort.InferenceSession(onx.SerializeToString(), one, providers=["CPUExecutionProvider"])
    order_label, order_prob = in_order.run(None, {"X": data})
    print(f"{args.trees}-tree random forest, breast cancer, {args.samples} samples")
    print(f"onnxruntime: {ort_s * 1e3:.1f} ms ({args.samples / ort_s:,.0f} samples/s), median of {args.repeats}")
    kernel_s = _time_kernels() if args.kernels else None
    for label, options in (("chip coding", None), ("lossless", {"cam-mapping": "lossless=true"})):
        t0 = time.perf_counter()
        c = compile_model(onx, "acam", pass_options=options)
        compile_s = time.perf_counter() - t0
        cam = next(m.cam for m in c.graph.mapping.values() if m.unit == "cam")

        def run(noise: bool, program=c.program):
            return execute(program, {"X": data}, options=SimOptions(noise=noise, seed=0), chunk=args.chunk,
                           workers=args.workers)

        run(False)
        if kernel_s is not None:
            kernel_s.clear()
        times = [_time(lambda: run(False)) for _ in range(args.repeats)]
        sim_s = statistics.median(times)
        kernels = Counter(kernel_s or {})
        exact = run(False)
        noisy = run(True)
        stats = estimate(c.program, c.target)
        merged = sum(code.merged for code in cam.codes)
        print(f"\n[{label}] compile {compile_s:.2f} s; {cam.paths} paths → {cam.rows} rows × {cam.columns} cells, "
              f"{cam.cores} CAM cores ({cam.arrays} arrays), utilisation {cam.utilization:.1%}, "
              f"{merged} thresholds merged")
        print(f"  simulator, noise off: {sim_s * 1e3:.1f} ms ({args.samples / sim_s:,.0f} samples/s, "
              f"{sim_s / ort_s:.1f}× onnxruntime's time), median of {args.repeats} (min {min(times) * 1e3:.1f} ms)")
        if kernels:
            print("  in the kernels, per run (summed over worker threads): " + ", ".join(
                f"{name} {seconds / args.repeats * 1e3:.1f} ms" for name, seconds in kernels.most_common()))
        same = exact["probabilities"].tobytes() == order_prob.tobytes() and np.array_equal(exact["label"], order_label)
        print(f"  noise off {'bit-exact' if same else 'NOT bit-exact'} against onnxruntime on one thread; "
              f"labels equal to onnxruntime (default threads): noise off {np.mean(exact['label'] == ref_label):.2%}, "
              f"noise on {np.mean(noisy['label'] == ref_label):.2%}; "
              f"max |Δp| noise off {np.abs(exact['probabilities'] - ref_prob).max():.2e}")
        print(f"  timing model: latency {stats.latency_s * 1e9:.0f} ns, throughput {stats.throughput_per_s:,.0f} "
              f"decisions/s, energy {stats.energy_total_pj / 1e3:.2f} nJ per decision "
              f"(CAM search {stats.energy_pj['cam_search']:.0f} pJ, leaves {stats.energy_pj['cam_leaf']:.0f} pJ, "
              f"reduction {stats.energy_pj['cam_reduce']:.0f} pJ)")


def _time_kernels() -> Counter:
    """Wrap the CAM kernels and the block programming with timers; the seconds add up in the
    returned counter (with several workers, the sum over threads)."""
    spent: Counter = Counter()

    def timed(name, fn):
        def run(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[name] += time.perf_counter() - start
        return run

    for name, kernel in cam_model.KERNELS.items():
        machine.KERNELS[name] = timed(name, kernel)
    cam_model.ProgrammedCam.__init__ = timed("programming", cam_model.ProgrammedCam.__init__)
    return spent


def _time(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


if __name__ == "__main__":
    main()
