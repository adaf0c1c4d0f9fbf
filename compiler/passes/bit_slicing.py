"""bit-slicing: choose each tile's ADC range, from calibration currents or its worst case."""
from __future__ import annotations

import itertools
from dataclasses import dataclass, replace

import numpy as np

from nmc.backends.tile_arithmetic import TileArithmetic, quantise
from nmc.compiler.ir import ops
from nmc.compiler.ir.graph import Graph, Node
from nmc.compiler.ir.mapping import Quant, TileBlock
from nmc.compiler.passes.base import Pass, crossbar_layers

WORST_CASE = "worst case of the programmed weights"


def block_matrix(q: np.ndarray, b: TileBlock, kernel: int) -> np.ndarray:
    """The integer weights a tile holds, ``[outs_total, rows]``, block-diagonal when packed."""
    rows_per_group = b.channels * kernel
    out = np.zeros((b.groups * b.outs, b.groups * rows_per_group), np.int32)
    for i in range(b.groups):
        sub = q[b.group + i, b.out:b.out + b.outs, b.channel * kernel:(b.channel + b.channels) * kernel]
        out[i * b.outs:(i + 1) * b.outs, i * rows_per_group:(i + 1) * rows_per_group] = sub
    return out


def quantise_input(x: np.ndarray, quant: Quant) -> np.ndarray:
    """Float layer inputs ``[S, ...]`` → the integers the crossbars receive, as the program's
    ``quant`` instruction makes them (fixed scale, or per sample from the largest |x|)."""
    x = x.astype(np.float32)
    if quant.input_scale is None:
        scale = np.maximum(np.abs(x).reshape(len(x), -1).max(axis=1) / np.float32(quant.input_max), np.float32(1e-30))
        scale = scale.reshape(-1, *[1] * (x.ndim - 1))
    else:
        scale = np.float32(quant.input_scale)
    lo = -quant.input_max if quant.input_signed else 0
    return quantise(x, scale, lo, quant.input_max).astype(np.int64)


def im2col(x: np.ndarray, op: ops.Conv) -> np.ndarray:
    """``[S, C, *spatial]`` → ``[S, G, positions, C/G · prod(kernel)]`` (channel-major rows,
    the order of ``matrix_view``), zero padding."""
    rank = len(op.kernel)
    s, c = x.shape[:2]
    pads = [(0, 0), (0, 0)] + [(op.pads[a], op.pads[rank + a]) for a in range(rank)]
    xp = np.pad(x, pads)
    out = [(xp.shape[2 + a] - (op.kernel[a] - 1) * op.dilations[a] - 1) // op.strides[a] + 1 for a in range(rank)]
    taps = []
    for offset in itertools.product(*[range(k) for k in op.kernel]):
        index = tuple(slice(offset[a] * op.dilations[a], offset[a] * op.dilations[a] + op.strides[a] * out[a],
                            op.strides[a]) for a in range(rank))
        taps.append(xp[(slice(None), slice(None)) + index].reshape(s, c, -1))
    cols = np.stack(taps, axis=2)                                   # [S, C, k, P]
    g = op.group
    return cols.reshape(s, g, c // g * len(taps), -1).transpose(0, 1, 3, 2)


def tile_inputs(node: Node, quant: Quant, values: np.ndarray, tiles: tuple[TileBlock, ...],
                max_vectors: int) -> list[np.ndarray]:
    """Per tile, the integer input vectors ``[vectors, rows]`` it reads on the calibration
    samples ``values`` (at most ``max_vectors``, a fixed random subset)."""
    rng = np.random.default_rng(0)
    if isinstance(node.op, ops.Conv):
        per_sample = int(np.prod(values.shape[2:])) or 1
        values = values[:max(1, -(-max_vectors // per_sample))]  # enough samples for max_vectors windows
        cols = im2col(quantise_input(values, quant), node.op)     # [S, G, P, Kg]
        kernel = int(np.prod(node.op.kernel))
        out = []
        for b in tiles:
            parts = [cols[:, b.group + i, :, b.channel * kernel:(b.channel + b.channels) * kernel]
                     for i in range(b.groups)]
            out.append(np.concatenate(parts, axis=-1).reshape(-1, b.rows))
    else:
        k = values.shape[-1]
        flat = quantise_input(values, quant).reshape(-1, k)
        out = [flat[:, b.channel:b.channel + b.channels] for b in tiles]
    if out and len(out[0]) > max_vectors:
        pick = rng.choice(len(out[0]), max_vectors, replace=False)
        out = [v[pick] for v in out]
    return out


def current_percentile(x: np.ndarray, q: np.ndarray, arith: TileArithmetic, percentile: float) -> tuple[float, int]:
    """The ``percentile`` of |column current| over every conversion the tile makes for inputs
    ``x`` (each sign phase × input slice × conversion × vector × column, as the runtime reads
    it), and the number of conversions."""
    total = arith.reads * arith.conversions(q.shape[0]) * x.shape[0]
    if total == 0:
        return 0.0, 0
    k = max(1, int(np.floor((100.0 - percentile) / 100.0 * total)) + 1)   # nearest rank from the top
    top = np.empty(0, np.float64)
    for currents in arith.ideal_currents(x, q):
        both = np.concatenate([top, np.abs(currents).reshape(-1)])
        top = np.partition(both, both.size - k)[-k:] if both.size > k else both
    return float(top.min()), total


@dataclass(frozen=True)
class BitSlicing(Pass):
    """Each tile's ADC covers its range with a power-of-two step (shift-and-add stays integer;
    when the ADC has enough codes the step is 1 and the conversion is lossless).

    Without calibration the range is the largest column current the tile can draw: the sum of
    its cells' levels times the largest input slice — safe, but real inputs rarely use more
    than a small part of it, so most ADC codes go unused. With calibration values of the
    layer's input (``graph.calibration``), the range covers the ``percentile`` of |column
    current| over the conversions the tile makes on them (capped at the worst case): clipping
    one conversion in ten thousand costs less than the resolution a single outlier would take
    from all of them."""

    name = "bit-slicing"
    requires = ("crossbar-layers-quantized", "crossbar-layers-tiled")
    ensures = ("adc-ranges-set",)
    percentile: float = 99.9
    max_vectors: int = 2048  # input vectors per tile drawn from the calibration samples

    def run(self, g: Graph, target=None) -> bool:
        crossbar = target.crossbar if target is not None else None
        changed = False
        for node, mapping in crossbar_layers(g):
            quant = mapping.quant
            q = g.constants[quant.weights]
            kernel = int(np.prod(node.op.kernel)) if isinstance(node.op, ops.Conv) else 1
            arith = TileArithmetic.planned(crossbar, quant.weight_bits, quant.input_bits, quant.input_signed)
            values = g.calibration.get(node.inputs[0])
            inputs = (tile_inputs(node, quant, values, mapping.tiles, self.max_vectors)
                      if values is not None and crossbar.analog else [None] * len(mapping.tiles))
            tiles = []
            for b, x in zip(mapping.tiles, inputs):
                matrix = block_matrix(q, b, kernel)
                lsb, source = arith.lsb_for(arith.worst_current(matrix)), WORST_CASE
                if x is not None:
                    current, conversions = current_percentile(x, matrix, arith, self.percentile)
                    lsb = min(lsb, arith.lsb_for(current))
                    source = (f"calibration: {self.percentile:g}th percentile of |column current| over "
                              f"{conversions} conversions")
                tiles.append(replace(b, adc_range=lsb * arith.adc_steps, adc_range_source=source))
            g.mapping[node.name] = replace(mapping, tiles=tuple(tiles))
            changed = True
        return changed
