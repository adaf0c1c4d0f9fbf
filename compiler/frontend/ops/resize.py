"""Resize and Upsample with constant scales or sizes, one axis at a time (resizing is separable).

Per resized axis the converter computes, at compile time and in float32 as onnxruntime does,
which input elements each output element reads and with what weights. Nearest neighbours
that are whole-factor repeats (2× upsampling) become a broadcast copy (Reshape, Expand,
Reshape) and regular subsamplings a strided Slice: views, no arithmetic. Anything else —
linear and cubic interpolation, nearest with fractional scales or rounding that does not
follow a pattern — is a product with a constant [out, in] resampling matrix along that axis
(a MatMul on the vector unit; exact for nearest, whose rows hold one 1), and so is antialiased
downsampling, whose rows are the kernel widened by 1 / scale. Refused: tf_crop_and_resize (roi
and extrapolation) and scales or sizes computed at run time.
"""
from __future__ import annotations

import numpy as np

from nmc.compiler.frontend.context import NodeContext, norm_axis
from nmc.compiler.frontend.ops import converter
from nmc.compiler.ir import ops

_COORDINATES = ("half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "align_corners", "asymmetric",
                "tf_half_pixel_for_nn")
_NEAREST = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")
_MODES = ("nearest", "linear", "cubic")


def source_coordinates(coordinates: str, out_len: int, in_len: int, scale: float) -> np.ndarray:
    """The input coordinate each output index maps to, in float32 (onnxruntime's arithmetic)."""
    f32 = np.float32
    y, s, half = np.arange(out_len, dtype=f32), f32(scale), f32(0.5)
    if coordinates == "asymmetric":
        return y / s
    if coordinates == "half_pixel":
        return (y + half) / s - half
    if coordinates == "pytorch_half_pixel":
        return (y + half) / s - half if out_len > 1 else np.zeros(out_len, f32)
    if coordinates == "tf_half_pixel_for_nn":
        return (y + half) / s
    if coordinates == "align_corners":
        return y * f32(in_len - 1) / f32(out_len - 1) if out_len > 1 else np.zeros(out_len, f32)
    # half_pixel_symmetric: half_pixel about the centre of the implicit region of interest; the
    # last sum in double, as onnxruntime writes it
    adjustment = f32(out_len) / (s * f32(in_len))
    offset = f32(in_len) / f32(2) * (f32(1) - adjustment)
    return (np.float64(offset) + (y.astype(np.float64) + 0.5) / np.float64(s) - 0.5).astype(f32)


def nearest_indices(x: np.ndarray, nearest: str, in_len: int, downsampling: bool) -> np.ndarray:
    """The input index each coordinate rounds to, clamped to the axis. ``simple`` is Resize-10's
    and Upsample's rule in onnxruntime: ceil when downsampling, else truncate."""
    floor = np.floor(x)
    if nearest == "round_prefer_floor":
        index = np.where(x - floor == np.float32(0.5), floor, np.floor(x + np.float32(0.5)))
    elif nearest == "round_prefer_ceil":
        index = np.floor(x + np.float32(0.5))
    elif nearest == "floor":
        index = floor
    elif nearest == "ceil":
        index = np.ceil(x)
    else:
        index = np.ceil(x) if downsampling else np.trunc(x)
    return np.clip(index, 0, in_len - 1).astype(np.int64)


def _cubic_weights(ratio: np.ndarray, a: float) -> np.ndarray:
    """Keys' cubic convolution weights of the taps at distances 1 + r, r, 1 − r, 2 − r."""
    def near(d):
        return ((a + 2) * d - (a + 3)) * d * d + 1

    def far(d):
        return ((a * d - 5 * a) * d + 8 * a) * d - 4 * a

    return np.stack([far(1 + ratio), near(ratio), near(1 - ratio), far(2 - ratio)], axis=-1)


def _cubic_kernel(d: np.ndarray, a: float) -> np.ndarray:
    """Keys' cubic convolution kernel at distances ``d``: zero from 2 on."""
    d = np.abs(d)
    near = ((a + 2) * d - (a + 3)) * d * d + 1
    far = ((a * d - 5 * a) * d + 8 * a) * d - 4 * a
    return np.where(d <= 1, near, np.where(d < 2, far, 0.0))


def antialias_matrix(mode: str, x: np.ndarray, in_len: int, scale: float, cubic_a: float = -0.75,
                     exclude_outside: bool = False) -> np.ndarray:
    """The [out, in] matrix of Resize-18's antialiased linear or cubic downsampling (scale < 1):
    the kernel is widened by 1 / scale, so each output element averages every input element
    within 1 / scale (linear) or 2 / scale (cubic) of its source coordinate, with weights
    normalised to sum 1. Taps beyond the axis read its end values (or, with exclude_outside,
    drop out before normalising)."""
    reach = 1 if mode == "linear" else 2
    first = int(np.floor(-reach / scale)) + 1  # the taps base + first .. base + 1 - first
    offsets = np.arange(first, 2 - first, dtype=np.float64)
    base = np.ceil(x.astype(np.float64)) - 1  # the tap just left of x (x itself when x is whole, counted from 1)
    ratio = x.astype(np.float64) - base  # in (0, 1]
    distance = scale * (offsets[None, :] - ratio[:, None])
    weights = np.clip(1 - np.abs(distance), 0, 1) if mode == "linear" else _cubic_kernel(distance, cubic_a)
    taps = base.astype(np.int64)[:, None] + offsets.astype(np.int64)[None, :]
    if exclude_outside:
        weights = np.where((taps < 0) | (taps >= in_len), 0.0, weights)
    weights = weights / weights.sum(axis=1, keepdims=True)
    matrix = np.zeros((len(x), in_len), np.float64)
    rows = np.repeat(np.arange(len(x)), taps.shape[1])
    np.add.at(matrix, (rows, np.clip(taps, 0, in_len - 1).reshape(-1)), weights.reshape(-1))
    return matrix.astype(np.float32)


def resampling_matrix(mode: str, x: np.ndarray, in_len: int, nearest: str = "round_prefer_floor",
                      downsampling: bool = False, cubic_a: float = -0.75, exclude_outside: bool = False) -> np.ndarray:
    """The [out, in] matrix whose rows weight the input elements each output element reads."""
    out_len = len(x)
    matrix = np.zeros((out_len, in_len), np.float64)
    rows = np.arange(out_len)
    if mode == "nearest":
        matrix[rows, nearest_indices(x, nearest, in_len, downsampling)] = 1.0
    elif mode == "linear":
        clamped = np.clip(x, np.float32(0), np.float32(in_len - 1))
        low = np.floor(clamped).astype(np.int64)
        high = np.minimum(low + 1, in_len - 1)
        upper = clamped - low.astype(np.float32)
        np.add.at(matrix, (rows, low), np.float32(1) - upper)
        np.add.at(matrix, (rows, high), upper)
    else:
        base = np.floor(x)
        weights = _cubic_weights((x - base).astype(np.float64), cubic_a)
        taps = base.astype(np.int64)[:, None] + np.arange(-1, 3)[None, :]
        if exclude_outside:
            weights = np.where((taps < 0) | (taps >= in_len), 0.0, weights)
            weights = weights / weights.sum(axis=1, keepdims=True)
        np.add.at(matrix, (np.repeat(rows, 4), np.clip(taps, 0, in_len - 1).reshape(-1)), weights.reshape(-1))
    return matrix.astype(np.float32)


def _as_views(matrix: np.ndarray) -> tuple[str, int, int] | None:
    """("repeat", factor, 0) or ("slice", start, step) when a 0/1 matrix with one 1 per row is
    addressing; else None."""
    if not np.all((matrix == 0) | (matrix == 1)) or not np.all(matrix.sum(axis=1) == 1):
        return None
    index = matrix.argmax(axis=1)
    out_len, in_len = matrix.shape
    if out_len % in_len == 0 and np.array_equal(index, np.arange(out_len) // (out_len // in_len)):
        return "repeat", out_len // in_len, 0
    step = int(index[1] - index[0]) if out_len > 1 else 1
    if step >= 1 and np.array_equal(index, index[0] + step * np.arange(out_len)):
        return "slice", int(index[0]), step
    return None


def emit_resize(ctx: NodeContext, matrices: dict[int, np.ndarray]) -> None:
    """Resample input 0 along each axis of ``matrices`` ([out, in] per axis): strided slices
    first, then products with the matrices, then the whole-factor repeats."""
    shape = list(ctx.shape(0))
    rank = len(shape)
    slices, repeats, products = {}, {}, {}
    for axis, matrix in matrices.items():
        if matrix.shape[0] == matrix.shape[1] and np.array_equal(matrix, np.eye(len(matrix), dtype=np.float32)):
            continue
        view = _as_views(matrix)
        if view is not None and view[0] == "repeat":
            repeats[axis] = view[1]
        elif view is not None:
            slices[axis] = (view[1], view[2], matrix.shape[0])
        else:
            products[axis] = matrix
    steps = []
    if slices:
        starts, strides = [0] * rank, [1] * rank
        for axis, (start, step, count) in slices.items():
            starts[axis], strides[axis], shape[axis] = start, step, count
        steps.append((ops.Slice(tuple(starts), tuple(strides)), tuple(shape), "subsampled"))
    for axis, matrix in products.items():
        out_len, in_len = matrix.shape
        before = tuple(shape[:axis])
        if axis == rank - 1:
            steps.append((ops.MatMul(), before + (out_len,), f"resized{axis}",
                          [None, ctx.add_const(f"resample{axis}", np.ascontiguousarray(matrix.T))]))
        else:
            rest = int(np.prod(shape[axis + 1:]))
            if axis != rank - 2:
                steps.append((ops.Reshape(), before + (in_len, rest), f"columns{axis}"))
            steps.append((ops.MatMul(), before + (out_len, rest), f"resized{axis}",
                          [ctx.add_const(f"resample{axis}", matrix), None]))
            if axis != rank - 2:
                steps.append((ops.Reshape(), before + (out_len,) + tuple(shape[axis + 1:]), f"resized{axis}_axes"))
        shape[axis] = out_len
    if repeats:
        inserted = [d for axis, size in enumerate(shape) for d in ((size, 1) if axis in repeats else (size,))]
        broadcast = [d for axis, size in enumerate(shape)
                     for d in ((size, repeats[axis]) if axis in repeats else (size,))]
        final = tuple(size * repeats.get(axis, 1) for axis, size in enumerate(shape))
        steps += [(ops.Reshape(), inserted, "inserted"), (ops.Expand(), broadcast, "repeated"),
                  (ops.Reshape(), final, "upsampled")]
        shape = list(final)
    if tuple(shape) != ctx.out_shape():
        raise ctx.fail(f"the resized shape {shape} differs from the inferred output shape {list(ctx.out_shape())}")
    ctx.chain(ctx.input(0), steps)


def _positive(ctx: NodeContext, values, what: str) -> list[float]:
    values = [float(v) for v in np.asarray(values).reshape(-1)]
    if not all(v > 0 for v in values):
        raise ctx.fail(f"{what} {values} must all be positive")
    return values


@converter("Resize", opsets="10+",
           limits="nearest (every nearest_mode), linear, cubic; every coordinate mode but tf_crop_and_resize; "
                  "constant scales or sizes, axes, keep_aspect_ratio_policy; antialias (linear, cubic: the kernel "
                  "widened by 1 / scale when downsampling)")
def resize(ctx: NodeContext) -> None:
    shape = ctx.shape(0)
    rank = len(shape)
    mode = ctx.attr("mode", "nearest")
    if mode not in _MODES:
        raise ctx.fail(f"mode={mode!r}; supported: {', '.join(_MODES)}")
    if ctx.opset < 11:
        coordinates, nearest = "asymmetric", "simple"
        scales, sizes = ctx.need_const(1, "scales"), None
    else:
        coordinates = ctx.attr("coordinate_transformation_mode", "half_pixel")
        nearest = ctx.attr("nearest_mode", "round_prefer_floor")
        if coordinates not in _COORDINATES:
            raise ctx.fail(f"coordinate_transformation_mode={coordinates!r}; supported: {', '.join(_COORDINATES)} "
                           "(tf_crop_and_resize, with its roi and extrapolation, is not)")
        if nearest not in _NEAREST:
            raise ctx.fail(f"nearest_mode={nearest!r}; supported: {', '.join(_NEAREST)}")
        scales, sizes = ctx.optional_const(2, "scales"), ctx.optional_const(3, "sizes")
        if scales is not None and np.asarray(scales).size == 0:
            scales = None
        if sizes is not None and np.asarray(sizes).size == 0:
            sizes = None
        if (scales is None) == (sizes is None):
            raise ctx.fail("exactly one of scales and sizes must be given")
    antialias = bool(ctx.attr("antialias", 0)) if ctx.opset >= 18 else False
    if antialias and mode == "nearest":
        raise ctx.fail("antialias=1 with mode='nearest' is not defined; ONNX antialiases linear and cubic")
    axes = [norm_axis(int(a), rank, ctx) for a in ctx.attr("axes", list(range(rank)))]
    policy = ctx.attr("keep_aspect_ratio_policy", "stretch")
    if policy not in ("stretch", "not_larger", "not_smaller"):
        raise ctx.fail(f"keep_aspect_ratio_policy={policy!r}; supported: stretch, not_larger, not_smaller")
    if scales is not None:
        factors = _positive(ctx, scales, "scales")
        if len(factors) != len(axes):
            raise ctx.fail(f"{len(factors)} scales for {len(axes)} axes")
        lengths = [int(np.float32(f) * np.float32(shape[a])) for f, a in zip(factors, axes)]
    else:
        lengths = [int(v) for v in np.asarray(sizes).reshape(-1)]
        if len(lengths) != len(axes) or min(lengths) < 1:
            raise ctx.fail(f"sizes {lengths} must be {len(axes)} positive values")
        factors = [float(np.float32(n) / np.float32(shape[a])) for n, a in zip(lengths, axes)]
        if policy != "stretch":
            common = min(factors) if policy == "not_larger" else max(factors)
            factors = [common] * len(axes)
            lengths = [int(common * shape[a] + 0.5) for a in axes]
    cubic_a, exclude = float(ctx.attr("cubic_coeff_a", -0.75)), bool(ctx.attr("exclude_outside", 0))
    matrices = {}
    for axis, factor, length in zip(axes, factors, lengths):
        if factor == 1 and length == shape[axis]:
            continue  # untouched, as in onnxruntime, whose modes would otherwise shift it (tf_half_pixel_for_nn)
        x = source_coordinates(coordinates, length, shape[axis], factor)
        if antialias and factor < 1:  # upsampling: the kernel keeps its width, as without antialias
            matrices[axis] = antialias_matrix(mode, x, shape[axis], factor, cubic_a, exclude)
        else:
            matrices[axis] = resampling_matrix(mode, x, shape[axis], nearest, factor < 1, cubic_a, exclude)
    emit_resize(ctx, matrices)


@converter("Upsample", opsets="7-9", limits="nearest, linear; constant scales (an attribute at opset 7)")
def upsample(ctx: NodeContext) -> None:
    """Resize before Resize: asymmetric coordinates, onnxruntime's rounding for nearest."""
    shape = ctx.shape(0)
    mode = ctx.attr("mode", "nearest")
    if mode == "bilinear":
        mode = "linear"
    if mode not in ("nearest", "linear"):
        raise ctx.fail(f"mode={mode!r}; supported: nearest, linear")
    if ctx.opset < 9:
        if ctx.attr("scales") is None:
            raise ctx.fail("Upsample before opset 9 needs its scales attribute")
        factors = _positive(ctx, ctx.attr("scales"), "scales")
    else:
        factors = _positive(ctx, ctx.need_const(1, "scales"), "scales")
    if len(factors) != len(shape):
        raise ctx.fail(f"{len(factors)} scales for an input of rank {len(shape)}")
    matrices = {}
    for axis, factor in enumerate(factors):
        if factor == 1:
            continue
        length = int(np.float32(factor) * np.float32(shape[axis]))
        x = source_coordinates("asymmetric", length, shape[axis], factor)
        matrices[axis] = resampling_matrix(mode, x, shape[axis], "simple", factor < 1)
    emit_resize(ctx, matrices)
