"""``nmc verify``: compile a model, run the program on the simulator and onnxruntime on the same
inputs, and compare them against the target's tolerance.

This module (with ``compiler/conformance.py``) is the one part of the compiler that imports the
runtime and onnxruntime: it is the separate verification step of the design, not the pipeline.
"""
from __future__ import annotations

import html
import os
from dataclasses import dataclass, field, replace

import numpy as np
import onnx

from nmc.backends.target import Target, load_target
from nmc.compiler.driver import compile_model
from nmc.compiler import oracle
from nmc.compiler.frontend.loader import read_model, real_inputs
from nmc.compiler.progress import ProgressCallback, part
from nmc.compiler.trials import Spread
from nmc.isa.errors import NmcError
from nmc.runtime import SimOptions, execute


@dataclass(frozen=True)
class OutputCheck:
    """The comparison of one model output: nmc against onnxruntime (and against labels).

    Over several trials the fields hold the mean (``max_abs_error`` the largest), and the
    ``*_spread`` fields the spread over trials."""

    name: str
    shape: tuple[int, ...]
    max_abs_error: float
    rel_error: float                     # max|nmc - ort| / max|ort|
    top1_agreement: float | None         # fraction of rows whose argmax agrees (2-D outputs only)
    accuracy: float | None = None        # nmc top-1 against labels
    reference_accuracy: float | None = None  # onnxruntime top-1 against labels
    rel_error_spread: Spread | None = None
    top1_spread: Spread | None = None
    accuracy_spread: Spread | None = None


@dataclass(frozen=True)
class VerifyReport:
    target: Target
    samples: int
    outputs: tuple[OutputCheck, ...]
    failures: tuple[str, ...] = field(default=())
    trials: int = 1
    first_seed: int = 0

    @property
    def ok(self) -> bool:
        return not self.failures

    def _repr_html_(self) -> str:
        return f"<pre>{html.escape(self.format())}</pre>"

    def format(self) -> str:
        """The table ``nmc verify`` prints (with several trials, mean ± std [min, max])."""
        t = self.target
        rows = [("output", "shape", "max abs err", "rel err", "top-1 agree", "accuracy nmc / ort")]
        for o in self.outputs:
            rel = o.rel_error_spread.format(".3g") if o.rel_error_spread else f"{o.rel_error:.3g}"
            top1 = "-" if o.top1_agreement is None else (
                o.top1_spread.format(".2%") if o.top1_spread else f"{o.top1_agreement:.2%}")
            accuracy = "-" if o.accuracy is None else (
                f"{o.accuracy_spread.format('.2%') if o.accuracy_spread else f'{o.accuracy:.2%}'} / "
                f"{o.reference_accuracy:.2%}")
            rows.append((o.name, "[" + ",".join(map(str, o.shape)) + "]", f"{o.max_abs_error:.3g}", rel, top1,
                         accuracy))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        lines = [f"target {t.name}: {self.samples} sample(s); tolerance rel err <= {t.rtol:g} (or one step of a "
                 f"QDQ output's grid), top-1 agreement >= {t.min_top1_agreement:.2%}"]
        if self.trials > 1:
            lines.append(f"{self.trials} trials (seeds {self.first_seed}..{self.first_seed + self.trials - 1}): "
                         "mean ± std [min, max]; the tolerance applies to the mean")
        lines += ["  " + "  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in rows]
        lines += [f"FAIL: {f}" for f in self.failures] or ["PASS"]
        return "\n".join(lines)


def verify_model(model: str | os.PathLike | onnx.ModelProto, inputs: dict[str, np.ndarray],
                 target: str | Target = "ideal", labels: np.ndarray | None = None,
                 pass_options: dict[str, str] | None = None,
                 options: SimOptions | None = None, trials: int = 1,
                 calibration: np.ndarray | dict[str, np.ndarray] | None = None,
                 progress: ProgressCallback | None = None) -> VerifyReport:
    """Compile ``model`` for ``target``, run it on ``inputs`` (ONNX input name → array) with the
    simulator and with onnxruntime, and compare every output.

    An output fails when its relative error exceeds ``target.rtol`` or, for a 2-D output
    (rows of class scores), when the fraction of rows with the same argmax is below
    ``target.min_top1_agreement``. ``labels`` (one class index per row) adds accuracies;
    ``options`` are the simulator's run-time conditions (time since programming, noise, seed).
    ``trials`` runs that many independent programming instances (seeds ``options.seed`` to
    ``options.seed + trials − 1``) and judges the mean; ``calibration`` goes to ``compile_model``.
    ``progress(done, total, note)`` follows compiling, each trial and onnxruntime.
    """
    if trials < 1:
        raise NmcError(f"trials must be at least 1, not {trials}")
    tgt = target if isinstance(target, Target) else load_target(target)
    options = options or SimOptions()
    proto = read_model(model)
    declared = [vi.name for vi in real_inputs(proto)]
    unknown = sorted(set(inputs) - set(declared))
    if unknown:
        raise NmcError(f"unknown input(s) {unknown}; the model takes {declared}")
    steps = trials + 2
    compiled = compile_model(proto, tgt, pass_options=pass_options, calibration=calibration,
                             progress=part(progress, 0, steps, "compiling"))
    runs = [execute(compiled.program, inputs, tgt, replace(options, seed=options.seed + i),
                    progress=part(progress, 1 + i, steps, f"trial {i + 1}/{trials}" if trials > 1 else "nmc"))
            for i in range(trials)]
    if progress is not None:
        progress(steps - 1, steps, "onnxruntime")
    theirs = _run_onnxruntime(proto, inputs)
    grid = output_steps(proto)
    checks, failures = [], []
    for name in runs[0]:
        want = np.asarray(theirs[name], dtype=np.float64)
        per_trial = [_compare(name, np.asarray(run[name], dtype=np.float64), want, labels) for run in runs]
        abs_err = max(c[0] for c in per_trial)
        rel = Spread.of(c[1] for c in per_trial)
        top1 = Spread.of(c[2] for c in per_trial) if per_trial[0][2] is not None else None
        acc = Spread.of(c[3] for c in per_trial) if per_trial[0][3] is not None else None
        ref_accuracy = per_trial[0][4]
        # an output on a QDQ grid may land one step away where a value sits on a rounding tie
        # (a sum in another order flips it): one step is agreement
        on_grid = name in grid and abs_err <= 1.001 * grid[name]
        if not rel.mean <= tgt.rtol and not on_grid:
            failures.append(f"output {name!r}: relative error {rel.mean:.3g} exceeds the target's rtol {tgt.rtol:g}"
                            + (f" and the model's output step {grid[name]:.3g}" if name in grid else ""))
        if top1 is not None and top1.mean < tgt.min_top1_agreement:
            failures.append(f"output {name!r}: top-1 agreement {top1.mean:.2%} is below the target's "
                            f"{tgt.min_top1_agreement:.2%}")
        many = trials > 1
        checks.append(OutputCheck(name, tuple(want.shape), abs_err, rel.mean, top1 and top1.mean,
                                  acc and acc.mean, ref_accuracy, rel if many else None,
                                  top1 if many else None, acc if many else None))
    samples = next(iter(inputs.values())).shape[0] if compiled.program.batched and inputs else 1
    return VerifyReport(tgt, int(samples), tuple(checks), tuple(failures), trials, options.seed)


def output_steps(proto: onnx.ModelProto) -> dict[str, float]:
    """For outputs written by a DequantizeLinear with a constant scale (a QDQ model's grid):
    the largest step of that grid."""
    constants = {init.name: init for init in proto.graph.initializer}
    for node in proto.graph.node:
        if node.op_type == "Constant" and node.attribute:
            constants[node.output[0]] = node.attribute[0].t
    producer = {out: node for node in proto.graph.node for out in node.output}
    steps = {}
    for output in proto.graph.output:
        node = producer.get(output.name)
        while node is not None and node.op_type in _KEEP_GRID:  # these move values, never change them
            node = producer.get(node.input[0])
        if node is not None and node.op_type == "DequantizeLinear" and node.input[1] in constants:
            scale = onnx.numpy_helper.to_array(constants[node.input[1]])
            steps[output.name] = float(np.max(np.abs(scale)))
    return steps


_KEEP_GRID = {"Identity", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose"}


def _compare(name: str, got: np.ndarray, want: np.ndarray, labels: np.ndarray | None):
    """(max abs error, relative error, top-1 agreement, accuracy, reference accuracy) of one run."""
    if got.shape != want.shape:
        raise NmcError(f"output {name!r}: nmc gives shape {list(got.shape)}, onnxruntime {list(want.shape)}")
    abs_err = _max_abs_error(got, want)
    scale = float(np.max(np.abs(want[np.isfinite(want)]), initial=0.0))
    rel_err = abs_err / scale if scale > 0 else (0.0 if abs_err == 0 else float("inf"))
    top1 = accuracy = ref_accuracy = None
    if got.ndim == 2 and got.shape[1] > 0:
        top1 = float(np.mean(np.argmax(got, axis=1) == np.argmax(want, axis=1)))
        if labels is not None:
            y = _labels_for(labels, got.shape[0], name)
            accuracy = float(np.mean(np.argmax(got, axis=1) == y))
            ref_accuracy = float(np.mean(np.argmax(want, axis=1) == y))
    return abs_err, rel_err, top1, accuracy, ref_accuracy


def _max_abs_error(got: np.ndarray, want: np.ndarray) -> float:
    """max |got - want|, where equal infinities and NaN against NaN count as agreement and any
    other non-finite mismatch as an infinite error."""
    same = (got == want) | (np.isnan(got) & np.isnan(want))
    diff = np.where(same, 0.0, np.abs(got - want))
    diff = np.where(np.isnan(diff), np.inf, diff)
    return float(np.max(diff, initial=0.0))


def _labels_for(labels: np.ndarray, rows: int, output: str) -> np.ndarray:
    y = np.asarray(labels).reshape(-1)
    if y.shape[0] != rows:
        raise NmcError(f"labels hold {y.shape[0]} entries but output {output!r} has {rows} rows")
    return y


def _run_onnxruntime(proto: onnx.ModelProto, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    feeds = {}
    for vi in real_inputs(proto):
        if vi.name in inputs:
            dtype = onnx.helper.tensor_dtype_to_np_dtype(vi.type.tensor_type.elem_type)
            feeds[vi.name] = np.asarray(inputs[vi.name]).astype(dtype, copy=False)
    try:
        session = oracle.session(proto)
        values = session.run(None, feeds)
    except Exception as e:  # onnxruntime raises its own untyped exceptions
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise NmcError(f"onnxruntime cannot run the model: {first}") from None
    return {out.name: value for out, value in zip(session.get_outputs(), values)}
