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


@dataclass(frozen=True)
class LayerMapping:
    unit: str            # "crossbar" | "vector"
    reason: str
    quant: Quant | None = None
    tiles: tuple[TileBlock, ...] = field(default_factory=tuple)


def matrix_view(weight: np.ndarray, group: int) -> np.ndarray:
    """A Dense [N, K] or Conv [M, C/G, *k] weight as ``[G, M/G, C/G · prod(k)]``."""
    if weight.ndim == 2:
        return weight.reshape(1, *weight.shape)
    return weight.reshape(group, weight.shape[0] // group, -1)
