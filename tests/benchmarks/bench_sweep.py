"""Speed-up of a sweep on 2 Dask workers over 1 (a script, not collected by pytest).

    python tests/benchmarks/bench_sweep.py [--repeats 3] [--samples 359]

The grid: 8 design points (pcm and rram × ADC of 6, 7, 8 and 9 bits) × 24 chips × 2 times on
the digits CNN. Each run is a whole `sweep` on a fresh ``LocalCluster`` (1 or 2 worker processes,
one thread each), cluster start included, results to a new file; the two alternate and the
speed-up is the median of the per-pair ratios, measured in one run. Each worker simulates with one
thread (Dask sets OMP_NUM_THREADS=1 in its workers), so 1 worker is one core; the scheduler, the
client and the results file share the cores with the workers. Measured 2026-12-02 on this
2-core machine: 1 worker 26.6 s, 2 workers 14.9 s, 1.81× (earlier the same day 1.63×, before the
workers' profiler was turned off and results were taken in batches). Of a 2-worker run about 1.5 s
is starting the cluster and importing nmc in the workers, which 1 worker pays too; a chip takes
0.119 s in a lone worker and 0.131 s in each of two (the driver's scheduler takes ~9 % of a core).
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from nmc.compiler.sweep import DaskEngine, load_grid, sweep

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
GRID = """
targets = ["pcm", "rram"]
times = ["1h", "1d"]
trials = 24
[fields]
"cores.crossbar.adc_bits" = [6, 7, 8, 9]
"""


def timed(workers: int, grid, feeds, labels, work: Path) -> float:
    out = work / f"w{workers}-{time.monotonic_ns()}.parquet"
    start = time.perf_counter()
    sweep(EXAMPLES / "digits_cnn.onnx", grid, feeds, out, labels=labels, engine=DaskEngine(workers=workers))
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--samples", type=int, default=359)
    args = ap.parse_args()
    data = np.load(EXAMPLES / "digits_test.npz")
    feeds, labels = {"input": data["x_image"][:args.samples]}, data["y"][:args.samples]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "grid.toml").write_text(GRID)
        grid = load_grid(work / "grid.toml")
        ratios, ones, twos = [], [], []
        for _ in range(args.repeats):
            one, two = timed(1, grid, feeds, labels, work), timed(2, grid, feeds, labels, work)
            ones.append(one)
            twos.append(two)
            ratios.append(one / two)
    print(f"grid: {len(grid.points)} points × {grid.trials} chips × {len(grid.times)} times, {args.samples} images")
    print(f"1 worker: median {statistics.median(ones):.1f} s; 2 workers: median {statistics.median(twos):.1f} s")
    print(f"speed-up of 2 workers over 1: {statistics.median(ratios):.2f}× (median of {len(ratios)} pairs)")


if __name__ == "__main__":
    main()
