"""Record what the simulator computes today, for tests that a faster implementation changes
nothing but speed (a script, run by hand once before a rewrite of the runtime):

    python tests/data/make_baseline.py

Writes ``baseline_outputs.npz`` (``ideal`` and digital outputs of the shipped examples on the
first 64 test samples) and ``noise_baseline.json`` (per seed, over 20 seeds: top-1 accuracy and
mean |error| against ``ideal`` of the digits CNN on the noisy presets, the whole test split).
``tests/test_baseline.py`` holds the current implementation to both.
"""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np

import nmc

HERE = Path(__file__).resolve().parent
EXAMPLES = HERE.parents[1] / "examples"
SEEDS = 20
# (model, input key, target, time): the noisy conditions the statistics are kept for
NOISY = [("digits_cnn", "x_image", "pcm", "1d"), ("digits_cnn", "x_image", "rram", "1d"),
         ("digits_cnn", "x_image", "sram-analog", "0"), ("digits_mlp", "x_flat", "pcm", "1h")]
EXACT = [("digits_cnn", "x_image", "ideal"), ("digits_mlp", "x_flat", "ideal"),
         ("tiny_transformer", "x_tokens", "ideal"), ("digits_cnn", "x_image", "sram-digital"),
         ("digits_mlp", "x_flat", "sram-digital")]


def main() -> None:
    data = np.load(EXAMPLES / "digits_test.npz")
    calib = np.load(EXAMPLES / "digits_calibration.npz")
    outputs = {}
    for model, key, target in EXACT:
        program = nmc.compile(EXAMPLES / f"{model}.onnx", target,
                              calibration=None if target == "ideal" else calib[key])
        y = program.run(data[key][:64])
        outputs[f"{model}/{target}"] = next(iter(y.values()))
    np.savez_compressed(HERE / "baseline_outputs.npz", **outputs)
    stats = {"commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                      cwd=HERE).stdout.strip(), "seeds": SEEDS, "conditions": {}}
    for model, key, target, time in NOISY:
        x, labels = data[key], data["y"]
        ideal = next(iter(nmc.compile(EXAMPLES / f"{model}.onnx", "ideal").run(x).values()))
        program = nmc.compile(EXAMPLES / f"{model}.onnx", target, calibration=calib[key])
        acc, err = [], []
        for seed in range(SEEDS):
            y = next(iter(program.run(x, time=time, seed=seed).values()))
            acc.append(float((y.argmax(1) == labels).mean()))
            err.append(float(np.abs(y - ideal).mean()))
        stats["conditions"][f"{model}/{target}@{time}"] = {"accuracy": acc, "mean_abs_error": err}
    (HERE / "noise_baseline.json").write_text(json.dumps(stats, indent=1) + "\n")


if __name__ == "__main__":
    main()
