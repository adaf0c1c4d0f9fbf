"""Benchmarks on crossbar targets (a script, not collected by pytest).

    PYTHONPATH=. python tests/benchmarks/bench_crossbar.py [--repeats 5] [--targets pcm sram-digital]

Prints, for the digits CNN over its whole test split, simulator time / onnxruntime time
(measured in the same run) on each target: ``pcm`` with device noise on (programming noise,
drift at one day, read noise; programming is part of every run, as each run programs a chip)
and ``sram-digital`` (bit-exact integers). Times are the best of ``--repeats`` runs.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
sys.path.insert(0, str(ROOT))

from nmc.compiler import compile_model  # noqa: E402
from nmc.runtime import SimOptions, execute  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_ideal import best_time  # noqa: E402  (one timing rule for all benchmarks)

DAY = 86400.0
CONDITIONS = {
    "pcm": SimOptions(time=DAY, seed=0, noise=True),
    "rram": SimOptions(time=DAY, seed=0, noise=True),
    "sram-analog": SimOptions(seed=0, noise=True),
    "sram-digital": SimOptions(),
}


def bench_digits_cnn(targets: list[str], repeats: int) -> None:
    model = onnx.load(EXAMPLES / "digits_cnn.onnx")
    data = np.load(EXAMPLES / "digits_test.npz")
    x, labels = data["x_image"], data["y"]
    feeds = {model.graph.input[0].name: x}
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    ref = best_time(lambda: sess.run(None, feeds), repeats)
    print(f"digits CNN, {len(x)} samples: onnxruntime {ref * 1e3:.2f} ms")
    for target in targets:
        compiled = compile_model(model, target=target)
        options = CONDITIONS[target]

        def run():
            return execute(compiled.program, feeds, target=compiled.target, options=options, validated=True)

        sim = best_time(run, repeats)
        accuracy = (next(iter(run().values())).argmax(1) == labels).mean()
        print(f"  {target:<13} {options}: nmc sim {sim * 1e3:.1f} ms, ratio {sim / ref:.0f}x  "
              f"({len(compiled.program.tiles)} tiles, accuracy {accuracy * 100:.1f} %)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--targets", nargs="+", default=["pcm", "sram-digital"], choices=sorted(CONDITIONS))
    args = parser.parse_args()
    bench_digits_cnn(args.targets, args.repeats)


if __name__ == "__main__":
    main()
