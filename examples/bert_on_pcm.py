"""A BERT-style encoder on a phase-change-memory chip: accuracy against the float model, and time
and energy per sequence and per token.

    python examples/bert_on_pcm.py [--trials 3] [--sequences 300] [--time 1d] [--quick]

The model (``examples/bert_encoder.onnx``, made by ``make_bert_encoder.py`` without torch) is a
2-layer, 4-head, d=32 encoder over 16 tokens: int64 ``input_ids`` and ``attention_mask`` inputs,
token and position embeddings, LayerNorm, GELU, a classifier on the first token, trained to tell
which of 4 topics a sequence's tokens come from (chance 25 %). What the script does, with the
public Python API (``nmc.compile``, ``.run``, ``.trials``, ``nmc.report``):

1. runs the float model (onnxruntime) on the first ``--sequences`` test sequences of
   ``examples/bert_sequences.npz`` (400 held out), and the ``ideal`` target's program, which
   must match it within 1e-4 relative;
2. compiles for the ``pcm`` preset (IBM HERMES-like), calibrated on 64 sequences that are not
   test sequences (fixed input scales and ADC ranges), and runs it with device noise off (what
   8-bit weights, inputs and ADCs cost alone) and on ``--trials`` independently programmed chips
   read ``--time`` after programming, with drift compensation;
3. prints accuracy (mean ± std over chips), top-1 agreement with the float model, the output
   error (largest and mean |y − y_float| over the largest and mean |y_float|), latency and energy
   per sequence and per token (per sequence ÷ 16 positions: the program computes every position,
   padding included), and where each layer runs: the 14 weight matrices (Q, K, V, output
   projection and both feed-forward layers of each encoder layer, pooler, classifier) on crossbars,
   the activation × activation products of attention (q·kᵀ and probs·v) digital, with the reason.

It takes about 6 s (``--quick``: 2 chips and 60 sequences, about 3 s, as the tests run it).
"""
from __future__ import annotations

import argparse
import json
import time as clock
from collections import Counter
from pathlib import Path

import numpy as np

import nmc

HERE = Path(__file__).resolve().parent
MODEL = HERE / "bert_encoder.onnx"
DATA = HERE / "bert_sequences.npz"
IDEAL_TOLERANCE = 1e-4
CLASSES = 4


def run(trials: int = 3, sequences: int | None = 300, time: str = "1d", model: Path = MODEL,
        data: Path = DATA) -> dict:
    """Compile, run and compare; returns the figures printed (for the tests)."""
    arrays = np.load(data)
    feeds = {"input_ids": arrays["input_ids"], "attention_mask": arrays["attention_mask"]}
    labels = arrays["y"]
    if sequences is not None:
        feeds, labels = {k: v[:sequences] for k, v in feeds.items()}, labels[:sequences]
    calibration = {"input_ids": arrays["calibration_input_ids"],
                   "attention_mask": arrays["calibration_attention_mask"]}

    # 1. the float model, and the ideal target's program against it
    y_float = _onnxruntime(model, feeds)
    y_ideal = nmc.compile(model, "ideal").run(feeds)["logits"]
    ideal_error = _errors(y_ideal, y_float)["max"]

    # 2. pcm, calibrated: noise off, then several programmed chips read `time` after programming
    chip = nmc.compile(model, "pcm", calibration=calibration)
    quantised = _compare(chip.run(feeds, time=time, noise=False)["logits"], y_float, labels)
    chips = [_compare(r["logits"], y_float, labels) for r in chip.trials(feeds, trials, times=[time])]
    spread = {key: _spread([c[key] for c in chips]) for key in chips[0]}

    # 3. time, energy and the mapping, as `nmc report` shows them
    report = nmc.report(chip)
    summary, layers = report["summary"], report["layers"]
    ir_ops = {layer["index"]: layer["ir_op"] for layer in json.loads(chip.attachments["mapping.json"])["layers"]}
    crossbar = [row for row in layers if row["unit"] == "crossbar"]
    attention = [row for row in layers if ir_ops[row["index"]] == "MatMul"]  # activation × activation
    digital = Counter(row["reason"] for row in layers
                      if row["unit"] != "crossbar" and ir_ops[row["index"]] != "MatMul")
    figures = {"sequences": len(labels), "calibration_sequences": len(calibration["input_ids"]), "trials": trials, "time": time, "tokens": summary["per_token"]["tokens"],
               "float_accuracy": _accuracy(y_float, labels), "ideal_rel_error": ideal_error,
               "quantised": quantised, "pcm": spread, "summary": summary,
               "crossbar_layers": [(row["name"], row["tiles"]) for row in crossbar],
               "attention_products": [(row["name"], row["unit"], row["reason"]) for row in attention],
               "other_digital": dict(digital), "report": report}
    _print(figures, arrays["attention_mask"][:len(labels)])
    return figures


def _onnxruntime(model: Path, feeds: dict) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    return session.run(["logits"], feeds)[0]


def _errors(y: np.ndarray, y_float: np.ndarray) -> dict:
    diff = np.abs(y.astype(np.float64) - y_float)
    return {"max": float(diff.max() / np.abs(y_float).max()), "mean": float(diff.mean() / np.abs(y_float).mean())}


def _accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(logits.argmax(-1) == labels))


def _compare(y: np.ndarray, y_float: np.ndarray, labels: np.ndarray) -> dict:
    errors = _errors(y, y_float)
    return {"accuracy": _accuracy(y, labels), "agreement": float(np.mean(y.argmax(-1) == y_float.argmax(-1))),
            "max_rel_error": errors["max"], "mean_rel_error": errors["mean"]}


def _spread(values: list[float]) -> dict:
    return {"mean": float(np.mean(values)), "std": float(np.std(values)), "n": len(values)}


def _pm(spread: dict, percent: bool = True) -> str:
    fmt = (lambda v: f"{v:.1%}") if percent else (lambda v: f"{v:.3f}")
    return f"{fmt(spread['mean'])} ± {fmt(spread['std'])}" if spread["n"] > 1 else fmt(spread["mean"])


def _si(value: float, unit: str) -> str:
    for factor, prefix in ((1e-12, "p"), (1e-9, "n"), (1e-6, "µ"), (1e-3, "m"), (1.0, "")):
        if abs(value) < factor * 1000:
            return f"{value / factor:.3g} {prefix}{unit}"
    return f"{value:.3g} {unit}"


def _print(f: dict, mask: np.ndarray) -> None:
    s, token, pcm, q = f["summary"], f["summary"]["per_token"], f["pcm"], f["quantised"]

    def line(label: str, text: str) -> None:
        print(f"  {label:<28}{text}")

    print(f"BERT-style encoder (2 layers, 4 heads, d=32, {f['tokens']} tokens) on pcm, calibrated on {f['calibration_sequences']} sequences; "
          f"{f['sequences']} test sequences ({mask.sum(1).mean():.1f} real tokens on average), "
          f"{f['trials']} programmed chip(s) read {f['time']} after programming")
    line("float model (onnxruntime)", f"accuracy {f['float_accuracy']:.1%} (chance {1 / CLASSES:.0%}); "
         f"ideal target: relative error {f['ideal_rel_error']:.2g} (≤ {IDEAL_TOLERANCE:g})")
    line("pcm, noise off", f"accuracy {q['accuracy']:.1%}, agreement with float {q['agreement']:.1%}, "
         f"relative error max {q['max_rel_error']:.3f} mean {q['mean_rel_error']:.3f}")
    line(f"pcm at {f['time']}, mean ± std", f"accuracy {_pm(pcm['accuracy'])}, agreement with float "
         f"{_pm(pcm['agreement'])}, relative error max {_pm(pcm['max_rel_error'], False)} "
         f"mean {_pm(pcm['mean_rel_error'], False)}")
    line("per sequence", f"{_si(s['latency_s'], 's')}, {_si(s['energy_per_inference_j'], 'J')}, "
         f"{s['throughput_per_s']:,.0f} sequences/s pipelined")
    line("per token", f"{_si(token['latency_s'], 's')}, {_si(token['energy_j'], 'J')}, "
         f"{token['throughput_per_s']:,.0f} tokens/s: per sequence ÷ {token['tokens']} positions of "
         f"{token['input']} (the program computes every position, padding included)")
    line("on crossbars", f"{len(f['crossbar_layers'])} layers on {s['crossbars_used']} of {s['crossbars_available']} "
         f"pcm crossbars, {s['analog_mac_fraction']:.0%} of {s['macs']:,.0f} MACs: "
         + ", ".join(name for name, _ in f["crossbar_layers"]))
    reasons = "; ".join(sorted({reason for _, _, reason in f["attention_products"]}))
    line("digital", f"{len(f['attention_products'])} attention products ("
         + ", ".join(name for name, _, _ in f["attention_products"]) + f"): {reasons}")
    line("", "and " + ", ".join(f"{n} × {reason}" for reason, n in sorted(f["other_digital"].items(),
                                                                          key=lambda kv: -kv[1])))


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=3, help="independently programmed chips (default: 3)")
    parser.add_argument("--sequences", type=int, default=300, help="test sequences to run (default: 300 of 400)")
    parser.add_argument("--time", default="1d", help="time since programming (default: 1d)")
    parser.add_argument("--quick", action="store_true", help="2 chips and 60 sequences")
    args = parser.parse_args(argv)
    if args.trials < 1 or args.sequences < 1:
        parser.error("--trials and --sequences: give at least one")
    start = clock.perf_counter()
    figures = run(trials=2 if args.quick else args.trials, sequences=60 if args.quick else args.sequences,
                  time=args.time)
    print(f"({clock.perf_counter() - start:.1f} s)")
    return figures


if __name__ == "__main__":
    main()
