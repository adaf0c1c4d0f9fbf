"""Typed records the crossbar passes attach to matrix layers (``Graph.mapping[node]``).

partition fills ``unit`` and ``reason``; quantize fills ``quant``; tile-mapping fills
``tiles`` (which block of the weight matrix each crossbar holds); bit-slicing sets each tile's
ADC range; placement sets each tile's core and crossbar.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Quant:
    """Symmetric per-output-channel weight quantisation and the input encoding of a layer.

    ``weights`` names an integer graph constant ``[G, Mg, Kg]`` (Kg = Cin/G · kernel, or K for
    a Dense layer with G = 1); ``weight_scale`` names a float constant ``[M]``. Inputs are
    ``input_bits`` integers, signed or not, with a fixed ``input_scale`` (from the model's QDQ
    scale or from calibration) or, when it is ``None``, a scale taken per sample from the
    largest |x| of the input tensor.
    """

    weights: str
    weight_scale: str
    weight_bits: int
    input_bits: int
    input_signed: bool
    input_scale: float | None
    input_range_source: str  # "qdq" | "calibration" | "dynamic"

    @property
    def input_max(self) -> int:
        return (1 << (self.input_bits - 1)) - 1 if self.input_signed else (1 << self.input_bits) - 1


@dataclass(frozen=True)
class TileBlock:
    """One crossbar's share of a layer: ``groups`` consecutive groups (packed block-diagonally
    when more than one), input channels ``[channel, channel + channels)`` within each group and
    outputs ``[out, out + outs)`` within each group."""

    group: int
    groups: int
    channel: int
    channels: int
    out: int
    outs: int
    rows: int            # crossbar rows used = groups · channels · kernel size
    cols: int            # crossbar columns used = groups · outs · columns per weight
    adc_range: float = 0.0
    adc_range_source: str = ""
    core: int = -1
    xbar: int = -1
    copies: int = 1      # devices per weight: the block occupies rows · copies crossbar rows
    round: int = 0       # reprogramming round that holds it (models larger than the system)
    row: int = 0         # first crossbar row (blocks stacked on one crossbar's rows: dense mapping)
    replica: int = 0     # which of ``replicas`` identical crossbars (same core) this one is: each
    replicas: int = 1    # computes a share of the output positions (throughput-oriented mapping)


@dataclass(frozen=True)
class FeatureCode:
    """The threshold code of one input feature: its code is the number of cuts it lies above,
    a cut in ``ge`` being passed when x >= t and one in ``gt`` when x > t; a NaN input gets the
    top code ``levels - 1``. ``cells`` adjacent CAM cells of the target's cell_bits hold it;
    ``merged`` thresholds had to be moved onto a neighbour to fit them."""

    feature: int
    ge: tuple[float, ...]
    gt: tuple[float, ...]
    levels: int
    cells: int
    distinct: int        # distinct cuts the model needs
    merged: int = 0


@dataclass(frozen=True)
class CamBlock:
    """Rows ``[row, row + rows)`` of the ensemble on CAM core ``core`` and the ``chained`` − 1
    cores after it (a feature set wider than one core's columns chains match lines)."""

    row: int
    rows: int
    core: int
    chained: int
    trees: int           # trees with a path in these rows: the matches of one search


@dataclass(frozen=True)
class CamMapping:
    """How a tree ensemble sits in analog CAM. ``lo``/``hi`` name graph constants [rows, F] of
    code bounds (a row matches when lo <= code < hi on every feature), ``leaves`` a constant
    [rows, targets] of leaf values (leaf memory)."""

    lo: str
    hi: str
    leaves: str
    codes: tuple[FeatureCode, ...]
    blocks: tuple[CamBlock, ...]
    paths: int           # root-to-leaf paths of the model
    rows: int            # CAM rows: paths, plus duplicates for unions (NEQ, missing values)
    columns: int         # cells per row: the sum of the features' cells
    cores: int           # CAM cores used (blocks × chained)
    arrays: int          # CAM arrays used (cores × arrays per core)
    utilization: float   # rows × columns used over the cells of the cores used
    lossless: bool       # no threshold was merged
    warnings: tuple[str, ...] = ()
    input_dacs: bool = False   # inputs coded by each core's DACs, not on the vector core
    reduction: str = "chain"   # partial sums block after block, or pairwise ("tree")


@dataclass(frozen=True)
class ChipPlan:
    """How the crossbar tiles spread over the system: ``chips`` chips joined by chip-to-chip links
    (crossbar cores chip after chip), each crossbar reprogrammed ``rounds`` times per batch."""

    chips: int
    rounds: int
    crossbars: int       # crossbars holding tiles, all chips and rounds counted


@dataclass(frozen=True)
class LayerMapping:
    unit: str            # "crossbar" | "vector" | "cam"
    reason: str
    quant: Quant | None = None
    tiles: tuple[TileBlock, ...] = field(default_factory=tuple)
    cam: CamMapping | None = None


def matrix_view(weight: np.ndarray, group: int) -> np.ndarray:
    """A Dense [N, K] or Conv [M, C/G, *k] weight as ``[G, M/G, C/G · prod(k)]``."""
    if weight.ndim == 2:
        return weight.reshape(1, *weight.shape)
    return weight.reshape(group, weight.shape[0] // group, -1)
