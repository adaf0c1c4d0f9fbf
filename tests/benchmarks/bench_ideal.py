"""Benchmarks on the ``ideal`` target (a script, not collected by pytest).

    PYTHONPATH=. python tests/benchmarks/bench_ideal.py [--repeats 5]

Prints, for the digits CNN over its whole test split, simulator time / onnxruntime time
(measured in the same run); for ResNet-18 (random weights, built in memory), compile time,
peak memory while compiling, the instruction count, and simulation time for a batch of 2
against onnxruntime. Times are the best of ``--repeats`` runs.
"""
from __future__ import annotations

import argparse
import resource
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(EXAMPLES))

from nmc.compiler import compile_model  # noqa: E402
from make_resnet18 import build_resnet18  # noqa: E402
from nmc.runtime import execute  # noqa: E402


def best_time(fn, repeats: int) -> float:
    """Smallest wall time of ``repeats`` calls (after one warm-up call)."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def session(model: onnx.ModelProto) -> ort.InferenceSession:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def bench_digits_cnn(repeats: int) -> None:
    model = onnx.load(EXAMPLES / "digits_cnn.onnx")
    x = np.load(EXAMPLES / "digits_test.npz")["x_image"]
    feeds = {model.graph.input[0].name: x}
    program = compile_model(model, target="ideal").program
    sess = session(model)
    sim = best_time(lambda: execute(program, feeds, validated=True), repeats)
    ref = best_time(lambda: sess.run(None, feeds), repeats)
    print(f"digits CNN, {len(x)} samples: nmc sim {sim * 1e3:.2f} ms, onnxruntime {ref * 1e3:.2f} ms, "
          f"ratio {sim / ref:.1f}x  ({program.instruction_count()} instructions)")


def bench_resnet18(repeats: int) -> None:
    model = build_resnet18(seed=0)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    program = compile_model(model, target="ideal").program
    compile_s = time.perf_counter() - start
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tracemalloc.start()
    compile_model(model, target="ideal")
    traced_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    print(f"ResNet-18: compile {compile_s:.2f} s, {program.instruction_count()} instructions, "
          f"peak traced allocations while compiling {traced_peak / 2**20:.0f} MiB, "
          f"process max RSS {rss_before / 1024:.0f} → {rss_after / 1024:.0f} MiB "
          f"(the model's weights are {model.ByteSize() / 2**20:.0f} MiB)")
    feeds = {"input": np.random.default_rng(1).standard_normal((2, 3, 224, 224)).astype(np.float32)}
    sess = session(model)
    sim = best_time(lambda: execute(program, feeds, validated=True), repeats)
    ref = best_time(lambda: sess.run(None, feeds), repeats)
    print(f"ResNet-18, batch 2: nmc sim {sim:.2f} s, onnxruntime {ref * 1e3:.1f} ms, ratio {sim / ref:.0f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    bench_digits_cnn(args.repeats)
    bench_resnet18(max(1, args.repeats // 2))


if __name__ == "__main__":
    main()
