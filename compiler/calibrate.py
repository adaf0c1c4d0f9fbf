"""Calibration: the values a model's tensors take on sample inputs, from onnxruntime.

This is the separate calibration step of the design (like ``verify.py`` it imports
onnxruntime; the pipeline loads it only when ``compile_model`` is given calibration data).
The original model runs with every intermediate float tensor added as a graph output, so the
values are those of the network nmc was asked to compile, before any of nmc's passes.

Names: an IR tensor has its ONNX name, except tensors the frontend folds to constants (no range
needed), the outputs of nodes it aliases (Identity, Dropout: the IR reads the aliased
tensor, whose range is the same), tensors the converters create (fresh names, no range:
those layers fall back to per-sample scales) and the pre-BatchNorm output of a Conv/Gemm
that fold-batchnorm removes (the folded layer writes the BatchNorm output, which has its
own range). ``calibrate_graph`` keeps exactly the names the IR has.

The range of a tensor is not its extreme values but a high percentile of them
(``DEFAULT_PERCENTILE``): with 8-bit inputs one outlier pixel or activation that sets the
scale costs every other value resolution, while clipping the top 0.01 % of values costs
almost nothing. The percentile is taken over all elements of all samples, low end and high
end separately (so a tensor is non-negative when 99.99 % of its values are). On the digits
models the maximum, 99.99 and 99.9 gave the same accuracy (bounded pixels, ReLU activations);
99.99 is the conservative end that still ignores a lone outlier.
"""
from __future__ import annotations

import os
from typing import Iterator

import numpy as np
import onnx
from onnx import helper, shape_inference

from nmc.compiler import oracle
from nmc.compiler.errors import CompileError
from nmc.compiler.frontend.loader import detect_batched, read_model, real_inputs
from nmc.compiler.frontend.ops.recurrent import calibrate_states, calibration_sources
from nmc.compiler.ir import ops
from nmc.compiler.ir.graph import Graph

DEFAULT_PERCENTILE = 99.99
BATCH = 64            # samples per onnxruntime call: bounds the memory of all intermediates at once
_FLOAT = {onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16}

Samples = np.ndarray | dict[str, np.ndarray]


class CalibrationError(CompileError):
    """Calibration inputs that do not fit the model, or a model onnxruntime cannot run."""


def calibration_feeds(model: onnx.ModelProto, samples: Samples) -> dict[str, np.ndarray]:
    """``samples`` (one array for a one-input model, or input name → array) as onnxruntime feeds,
    checked against the model's inputs: same names, same sample count, the declared dtype."""
    declared = {vi.name: vi for vi in real_inputs(model)}
    if not isinstance(samples, dict):
        if len(declared) != 1:
            raise CalibrationError(f"the model takes several inputs ({', '.join(declared)}); give calibration "
                                   "data as a dict of input name -> array")
        samples = {next(iter(declared)): samples}
    unknown = sorted(set(samples) - set(declared))
    missing = sorted(set(declared) - set(samples))
    if unknown or missing:
        raise CalibrationError(f"calibration inputs {sorted(samples)} do not match the model's inputs "
                               f"{list(declared)}")
    feeds, counts = {}, set()
    for name, value in samples.items():
        value = np.asarray(value)
        dims = declared[name].type.tensor_type.shape.dim
        if value.ndim != len(dims) or value.shape[0] == 0:
            raise CalibrationError(f"calibration input {name!r} has shape {list(value.shape)}; the model "
                                   f"takes {[d.dim_value or d.dim_param or '?' for d in dims]} (leading axis: samples)")
        dtype = helper.tensor_dtype_to_np_dtype(declared[name].type.tensor_type.elem_type)
        feeds[name] = value.astype(dtype, copy=False)
        counts.add(value.shape[0])
    if len(counts) > 1:
        raise CalibrationError(f"calibration inputs hold different numbers of samples: {sorted(counts)}")
    return feeds


def _with_all_outputs(model: onnx.ModelProto, tensors: set[str] | None) -> tuple[onnx.ModelProto, list[str]]:
    """A copy of ``model`` that also outputs every float tensor a node writes (or ``tensors``)."""
    inferred = shape_inference.infer_shapes(model)
    types = {vi.name: vi.type.tensor_type.elem_type
             for vi in list(inferred.graph.value_info) + list(inferred.graph.output)}
    present = {o.name for o in model.graph.output}
    extra = []
    for node in model.graph.node:
        for t in node.output:
            if t and t not in present and types.get(t) in _FLOAT and (tensors is None or t in tensors):
                extra.append(t)
                present.add(t)
    m = onnx.ModelProto()
    m.CopyFrom(model)
    m.graph.output.extend(helper.make_tensor_value_info(t, types[t], None) for t in extra)
    names = [o.name for o in m.graph.output]
    return m, names


def iter_activations(model: str | os.PathLike | onnx.ModelProto, samples: Samples,
                     tensors: set[str] | None = None, batch: int = BATCH) -> Iterator[dict[str, np.ndarray]]:
    """The float tensors of ``model`` (inputs, intermediates, outputs; or only ``tensors``) on
    ``samples``, ``batch`` samples at a time: name → array with the samples on the leading axis."""
    proto = read_model(model)
    return _run(proto, calibration_feeds(proto, samples), tensors, batch)


def _run(proto: onnx.ModelProto, feeds: dict[str, np.ndarray], tensors: set[str] | None,
         batch: int = BATCH) -> Iterator[dict[str, np.ndarray]]:
    extended, names = _with_all_outputs(proto, tensors)
    try:
        session = oracle.session(extended)
    except Exception as e:  # onnxruntime raises its own untyped exceptions
        raise CalibrationError(f"onnxruntime cannot load the model for calibration: {_first_line(e)}") from None
    count = next(iter(feeds.values())).shape[0]
    if not detect_batched(proto):  # a fixed leading size: run exactly that many samples at a time
        batch = max(1, real_inputs(proto)[0].type.tensor_type.shape.dim[0].dim_value)
        if count % batch:
            raise CalibrationError(f"the model takes batches of exactly {batch}; give a multiple of {batch} "
                                   f"calibration samples, not {count}")
    wanted = (lambda name, v: v.dtype.kind == "f" and (tensors is None or name in tensors))
    for start in range(0, count, batch):
        chunk = {k: v[start:start + batch] for k, v in feeds.items()}
        try:
            values = session.run(names, chunk)
        except Exception as e:
            raise CalibrationError(f"onnxruntime cannot run the model on the calibration data: {_first_line(e)}") \
                from None
        out = {k: v for k, v in chunk.items() if wanted(k, v)}
        out.update((n, v) for n, v in zip(names, map(np.asarray, values)) if wanted(n, v))
        yield out


class _Tails:
    """The k lowest and k highest values seen of one tensor, k fixed by the percentile and the
    total count: enough to read the percentile exactly after streaming every batch."""

    def __init__(self, k: int):
        self.k, self.low, self.high = k, np.empty(0, np.float64), np.empty(0, np.float64)

    def add(self, values: np.ndarray) -> None:
        v = values.astype(np.float64, copy=False).reshape(-1)
        v = v[np.isfinite(v)]
        low, high = np.concatenate([self.low, v]), np.concatenate([self.high, v])
        k = self.k
        self.low = np.partition(low, k - 1)[:k] if low.size > k else low
        self.high = np.partition(high, high.size - k)[-k:] if high.size > k else high

    def range(self) -> tuple[float, float] | None:
        if self.high.size == 0:
            return None
        return float(np.max(self.low)), float(np.min(self.high))


def _tail_size(elements: int, percentile: float) -> int:
    """Nearest rank: the range excludes fewer than (100 − percentile) % of ``elements`` per end."""
    return max(1, int(np.floor((100.0 - percentile) / 100.0 * elements)) + 1)


def activation_ranges(model: str | os.PathLike | onnx.ModelProto, samples: Samples,
                      percentile: float = DEFAULT_PERCENTILE,
                      tensors: set[str] | None = None) -> dict[str, tuple[float, float]]:
    """Tensor name → (low, high): the ``100 − percentile`` and ``percentile`` percentiles (nearest
    rank) of each float tensor's values over all elements of all samples; ``percentile=100``
    gives the minimum and maximum. ``tensors`` limits which tensors are measured."""
    proto = read_model(model)
    ranges, _ = _ranges_and_values(proto, calibration_feeds(proto, samples), percentile, tensors)
    return ranges


def _ranges_and_values(proto: onnx.ModelProto, feeds: dict[str, np.ndarray], percentile: float,
                       tensors: set[str] | None, keep: set[str] = frozenset(), max_samples: int = 0):
    """The ranges, and the values of the tensors in ``keep`` on the first ``max_samples`` samples."""
    if not 50.0 < percentile <= 100.0:
        raise CalibrationError(f"calibration percentile {percentile} must be in (50, 100]")
    count = next(iter(feeds.values())).shape[0]
    tails: dict[str, _Tails] = {}
    kept: dict[str, list[np.ndarray]] = {}
    seen = 0
    for values in _run(proto, feeds, tensors):
        rows = 0
        for name, v in values.items():
            if name not in tails:
                per_sample = v[0].size if v.ndim else 1
                tails[name] = _Tails(_tail_size(per_sample * count, percentile))
            tails[name].add(v)
            rows = len(v) if v.ndim else 1
            if name in keep and seen < max_samples:
                kept.setdefault(name, []).append(v[:max_samples - seen])
        seen += rows
    ranges = {name: r for name, t in tails.items() if (r := t.range()) is not None}
    return ranges, {name: np.concatenate(parts) for name, parts in kept.items()}


def calibrate_graph(g: Graph, model: str | os.PathLike | onnx.ModelProto, samples: Samples,
                    percentile: float = DEFAULT_PERCENTILE, max_samples: int = 256) -> None:
    """Set ``g.ranges`` for every IR tensor calibration measured, and ``g.calibration`` to the
    values of the inputs of matrix layers (Dense, Conv) on the first ``max_samples`` samples,
    which the bit-slicing pass turns into column currents to size the ADCs."""
    proto = read_model(model)
    wanted = {t for t in g.tensors if not g.is_const(t)}
    matrix_inputs = {n.inputs[0] for n in g.nodes() if isinstance(n.op, (ops.Dense, ops.Conv))} & wanted
    hidden = calibration_sources(g)  # a recurrence's Y stands for the states its loop reads
    ranges, values = _ranges_and_values(proto, calibration_feeds(proto, samples), percentile, wanted,
                                        matrix_inputs | hidden, max_samples)
    g.ranges = ranges
    g.calibration = {t: v for t, v in values.items() if t in matrix_inputs}
    calibrate_states(g, ranges, values)


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
