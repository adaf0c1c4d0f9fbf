"""Crossbar arithmetic: how one tile stores integer weights in cells and reads integer inputs.

The one record of these facts. Tile mapping (columns per weight), bit slicing (ADC step,
worst-case and calibrated currents), codegen (the tiles it declares), the runtime (programming
and reading), the timing model (reads and conversions per MVM) and the mapping table all ask
a ``TileArithmetic``; none works them out itself.

A signed weight of ``weight_bits`` is split into slices of ``cell_bits``: as a differential
pair, its magnitude (``weight_bits − 1`` bits) in G+ or G− cells, two columns per slice; with an
offset, ``w + 2^(weight_bits−1)`` in one column per slice, the offset removed digitally. Inputs
of ``in_bits`` (signed: sign and magnitude, one read phase per sign) enter ``dac_bits`` at a
time. Each read converts every column pair (or column) once, with an ADC step ``lsb`` over the
tile's ``adc_range``; shift-and-add recombines slices digitally. With ``combination = "charge"``
the slices of a weight are combined in the analog domain before one conversion (binary-weighted
charge sharing or a capacitor ladder: slice ``j``'s column current counts 2^(j·cell_bits)), so a
read converts each output once and the ADC covers the combined current.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SCHEMES = ("differential", "offset")
COMBINATIONS = ("digital", "charge")  # weight slices: an ADC conversion each, or combined before one


def input_max(bits: int, signed: bool) -> int:
    """The largest integer input magnitude: 2^(b−1) − 1 signed (sign-magnitude), 2^b − 1 not."""
    return (1 << (bits - 1)) - 1 if signed else (1 << bits) - 1


def quantise(x: np.ndarray, scale, lo: float, hi: float) -> np.ndarray:
    """The ``quant`` instruction: ``clip(round(x / scale), lo, hi)`` in float32."""
    with np.errstate(all="ignore"):
        q = np.round(np.asarray(x, np.float32) / scale)
    return np.clip(q, lo, hi)


@dataclass(frozen=True)
class TileArithmetic:
    """The bit-level arithmetic of one tile on one kind of crossbar."""

    weight_bits: int
    cell_bits: int
    scheme: str
    dac_bits: int
    adc_bits: int
    in_bits: int = 8
    in_signed: bool = False
    adc_range: float = 0.0
    combination: str = "digital"

    @classmethod
    def of(cls, tile, spec) -> "TileArithmetic":
        """A program's tile (``isa.program.Tile``) on a target's crossbar cores (``CrossbarCores``)."""
        return cls(tile.weight_bits, spec.cell_bits, spec.weight_scheme, spec.dac_bits, spec.adc_bits,
                   tile.in_bits, tile.in_signed, tile.adc_range, spec.slice_combination)

    @classmethod
    def planned(cls, spec, weight_bits: int, in_bits: int | None = None, in_signed: bool = False,
                adc_range: float = 0.0) -> "TileArithmetic":
        """A tile the compiler plans: the layer's own weight (and input) bits on ``spec``."""
        return cls(weight_bits, spec.cell_bits, spec.weight_scheme, spec.dac_bits, spec.adc_bits,
                   spec.input_bits if in_bits is None else in_bits, in_signed, adc_range, spec.slice_combination)

    # ------------------------------------------------------------------ weights in cells
    @property
    def differential(self) -> bool:
        return self.scheme == "differential"

    @property
    def cell_max(self) -> int:
        return (1 << self.cell_bits) - 1

    @property
    def slices(self) -> int:
        """Cell slices per weight: its magnitude (differential) or offset code, ``cell_bits`` each."""
        bits = self.weight_bits - 1 if self.differential else self.weight_bits
        return -(-bits // self.cell_bits)

    @property
    def columns_per_weight(self) -> int:
        """Physical columns one weight occupies: its slices, twice for a differential pair."""
        return self.slices * (2 if self.differential else 1)

    @property
    def slice_shifts(self) -> list[int]:
        """The binary weight of each slice: slice ``j`` holds bits ``j·cell_bits`` and up."""
        return [j * self.cell_bits for j in range(self.slices)]

    @property
    def weight_offset(self) -> int:
        """What the offset scheme adds to every weight (and removes digitally); 0 differential."""
        return 0 if self.differential else 1 << (self.weight_bits - 1)

    def polarity_levels(self, q: np.ndarray) -> list[list[np.ndarray]]:
        """Integer cell levels ``[slice][polarity]`` of weights ``q``: (G+, G−) per slice for a
        differential pair, (offset code,) otherwise."""
        q = np.asarray(q).astype(np.int64)
        mags = [np.maximum(q, 0), np.maximum(-q, 0)] if self.differential else [q + self.weight_offset]
        return [[(m >> shift) & self.cell_max for m in mags] for shift in self.slice_shifts]

    def slice_levels(self, q: np.ndarray) -> list[np.ndarray]:
        """Per slice, the level a column (pair) contributes: G+ − G− per cell, or the offset code."""
        return [pair[0] - pair[1] if len(pair) == 2 else pair[0] for pair in self.polarity_levels(q)]

    @property
    def charge(self) -> bool:
        return self.combination == "charge"

    @property
    def conversion_shifts(self) -> list[int]:
        """The binary weight of each converted quantity of an output: every slice's (digital
        combination), or one combined current (charge)."""
        return [0] if self.charge else self.slice_shifts

    def conversion_levels(self, q: np.ndarray) -> list[np.ndarray]:
        """Per conversion of an output, the level its column (pair) current counts in."""
        levels = self.slice_levels(q)
        if not self.charge:
            return levels
        return [sum(lv * (1 << s) for s, lv in zip(self.slice_shifts, levels))]

    # ------------------------------------------------------------------ inputs through DACs
    @property
    def input_bits_per_phase(self) -> int:
        """Input magnitude bits one read phase carries (sign-magnitude: one bit less)."""
        return self.in_bits - 1 if self.in_signed else self.in_bits

    @property
    def phases(self) -> int:
        """Read phases per MVM: positive and negative inputs apart when inputs are signed."""
        return 2 if self.in_signed else 1

    @property
    def dac_reads(self) -> int:
        """DAC slices of one phase's inputs."""
        return max(1, -(-self.input_bits_per_phase // self.dac_bits))

    @property
    def reads(self) -> int:
        """Array reads per MVM: phases × DAC slices."""
        return self.phases * self.dac_reads

    @property
    def bits_per_read(self) -> int:
        """Input bits one read applies (the DAC's, or fewer when the inputs are narrower)."""
        return min(self.dac_bits, max(self.input_bits_per_phase, 1))

    @property
    def input_max(self) -> int:
        return input_max(self.in_bits, self.in_signed)

    def input_range(self) -> tuple[int, int]:
        """Inputs saturate here: unsigned [0, 2^b − 1], signed (sign-magnitude) ±(2^(b−1) − 1)."""
        return (-self.input_max if self.in_signed else 0, self.input_max)

    def input_phases(self, x: np.ndarray) -> list[tuple[float, np.ndarray]]:
        """(sign, non-negative magnitudes) of each read phase of integer inputs ``x``."""
        x = np.clip(np.asarray(x).astype(np.int64), *self.input_range())
        return [(1.0, np.maximum(x, 0)), (-1.0, np.maximum(-x, 0))] if self.in_signed else [(1.0, x)]

    def dac_slices(self, xu: np.ndarray, axis: int = 0) -> np.ndarray:
        """Non-negative integer inputs → their DAC slices (least significant first) on a new
        ``axis`` of ``dac_reads``: ``[dac_reads, ...]`` by default."""
        xu = np.expand_dims(xu, axis)
        shifts = np.expand_dims(np.arange(self.dac_reads) * self.dac_bits, tuple(range(1, xu.ndim - axis)))
        codes = np.right_shift(xu, shifts.astype(xu.dtype))
        return np.bitwise_and(codes, (1 << self.dac_bits) - 1, out=codes)

    def recombination(self) -> np.ndarray:
        """``[dac_reads, slices]`` binary weights of each (input slice, weight slice) conversion."""
        return np.array([[2.0 ** (i * self.dac_bits + s) for s in self.conversion_shifts]
                         for i in range(self.dac_reads)])

    # ------------------------------------------------------------------ ADCs
    @property
    def adc_steps(self) -> int:
        """Codes on each side of zero: a signed ADC for differential pairs, unsigned otherwise."""
        return (1 << (self.adc_bits - 1)) - 1 if self.differential else (1 << self.adc_bits) - 1

    def adc(self) -> tuple[float, float, float]:
        """(lsb, lowest, highest) reconstructed value of one conversion over ``adc_range``."""
        lsb = self.adc_range / self.adc_steps
        return lsb, (-self.adc_steps * lsb if self.differential else 0.0), self.adc_steps * lsb

    def lsb_for(self, current: float) -> float:
        """The smallest power-of-two step (at least 1) whose codes reach ``current``; its range is
        ``lsb · adc_steps`` (shift-and-add stays integer; step 1 is lossless)."""
        steps = self.adc_steps
        return 1.0 if current <= steps else float(2 ** int(np.ceil(np.log2(current / steps))))

    def worst_current(self, q: np.ndarray) -> float:
        """The largest |column current| weights ``q`` [N, K] can draw: the larger polarity sum of a
        column's levels times the largest DAC input, over slices."""
        dac_max = (1 << self.dac_bits) - 1
        return float(max(max(np.maximum(lv, 0).sum(axis=1).max(), np.maximum(-lv, 0).sum(axis=1).max())
                         for lv in self.conversion_levels(q)) * dac_max)

    def worst_possible_current(self, rows: int) -> float:
        """The largest column current any weights of ``rows`` rows could draw."""
        level = sum(self.cell_max << s for s in self.slice_shifts) if self.charge else self.cell_max
        return float(rows * ((1 << self.dac_bits) - 1) * level)

    def lossless(self, rows: int) -> bool:
        """Whether every possible column current of a ``rows``-row tile converts exactly."""
        lsb, lo, hi = self.adc()
        worst = self.worst_possible_current(rows)
        return lsb == 1.0 and hi >= worst and (lo <= -worst or not self.differential)

    def conversions(self, outs: int) -> int:
        """ADC conversions per read: one per output and slice (a pair is subtracted first), one per
        output when the slices are combined in charge."""
        return outs * len(self.conversion_shifts)

    def columns(self, outs: int) -> int:
        """Physical columns ``outs`` weights per row occupy."""
        return outs * self.columns_per_weight

    def ideal_currents(self, x: np.ndarray, q: np.ndarray):
        """Per conversion, the noiseless column currents of integer inputs ``x`` [M, K] on weights
        ``q`` [N, K]: yields ``[M, N]`` per (phase, DAC slice, conversion), as the chip reads."""
        levels = [lv.T.astype(np.float64) for lv in self.conversion_levels(q)]
        for _, xu in self.input_phases(x):
            for d in self.dac_slices(xu):
                for lv in levels:
                    yield d.astype(np.float64) @ lv
