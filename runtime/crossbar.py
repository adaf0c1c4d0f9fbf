"""What a crossbar does to a matrix-vector product: bit slicing, device physics, ADCs.

A tile holds signed integer weights ``q`` [N, K] (``weight_bits`` wide). Weights are split
into slices of ``cell_bits`` stored as conductances — as a differential pair (G+ − G−) or
with an offset of 2^(weight_bits−1) removed digitally. Inputs enter ``dac_bits`` at a time
(signed inputs as sign and magnitude: a positive phase and a negative phase whose results
are subtracted digitally). Every (input slice, weight slice)
pair gives column currents that an ADC digitises over the tile's range; digital shift-and-add
recombines them. With a noiseless device and a lossless ADC the result is exactly ``x @ q.T``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nmc.backends.devices import Programmed, device_model
from nmc.backends.target import CrossbarCores, Device
from nmc.backends.tile_arithmetic import TileArithmetic
from nmc.isa.program import Tile


@dataclass(frozen=True)
class SimOptions:
    """Run-time conditions: time since programming (s), seed, noise and compensation switches."""

    time: float = 0.0
    seed: int = 0
    noise: bool = True
    drift_compensation: bool = True


class ProgrammedTile:
    """One tile after programming: per weight slice, the effective conductance matrix in units
    of one cell level (G+ − G− for differential pairs). The device model
    (``backends.devices``) programs, drifts and reads the cells; an ideal one is skipped."""

    def __init__(self, tile: Tile, q: np.ndarray, spec: CrossbarCores, device: Device, options: SimOptions,
                 rng: np.random.Generator):
        self.tile, self.spec, self.device, self.options = tile, spec, device, options
        self.q = q.astype(np.int64)
        self.rng = rng
        self.arith = TileArithmetic.of(tile, spec)
        self.cell_max = self.arith.cell_max
        model = device_model(device) if (options.noise and spec.analog) else None
        self.model = None if model is None or model.ideal else model
        self.noisy = self.model is not None  # conductances deviate from their targets
        self.n_slices = self.arith.slices
        # levels[j][p]: integer cell levels of weight slice j, polarity p (0: G+ / offset, 1: G−)
        self.levels = self.arith.polarity_levels(self.q)
        self.states = [[self._program(lv) for lv in pair] for pair in self.levels]
        self.g_eff = np.stack(self._conductances(options.time))  # [J, N, K], fixed for the run
        sigma = self._read_sigma()
        self.read_var = None if sigma is None else np.stack(sigma) ** 2  # per-cell read variance [J, N, K]
        self.compensation = 1.0
        self.adc_offset = None
        if options.noise and spec.analog and device.adc_offset_lsb > 0:
            self.adc_offset = device.adc_offset_lsb * rng.standard_normal((self.n_slices, self.q.shape[0]))
        if self.noisy and options.drift_compensation and self.model.drifts:
            # global drift compensation: a known input read right after programming and now
            ones = np.ones(self.q.shape[1])
            programmed = self._conductances(0.0)
            ref = sum(np.abs(programmed[j] @ ones).sum() for j in range(self.n_slices))
            now = sum(np.abs(self.g_eff[j] @ ones).sum() for j in range(self.n_slices))
            self.compensation = float(ref / now) if now > 0 else 1.0

    # ------------------------------------------------------------------ programming
    def _program(self, levels: np.ndarray):
        if not self.noisy:
            return Programmed(levels.astype(np.float64))
        target = levels * (self.model.g_max / self.cell_max)
        return self.model.program(target, self.rng, self.options)

    def _to_levels(self, g: np.ndarray) -> np.ndarray:
        return g if not self.noisy else g * (self.cell_max / self.model.g_max)

    def _conductances(self, t: float) -> list[np.ndarray]:
        out = []
        for pair in self.states:
            gs = []
            for state in pair:
                gs.append(self._to_levels(self.model.conductance(state, t) if self.noisy else state.g))
            out.append(gs[0] - gs[1] if len(gs) == 2 else gs[0])
        return out

    def _read_sigma(self) -> list[np.ndarray] | None:
        """Per-cell read-noise standard deviation (level units) per weight slice, or None."""
        if not self.noisy:
            return None
        t = self.options.time
        sig = []
        for pair in self.states:
            var = 0.0
            for state in pair:
                rel = self.model.read_sigma(state, t)  # σ / |g(t)|
                if rel is None:
                    return None
                var = var + (self._to_levels(np.abs(self.model.conductance(state, t))) * rel) ** 2
            sig.append(np.sqrt(var))
        return sig

    # ------------------------------------------------------------------ reading
    def adc(self) -> tuple[float, float, float]:
        """(lsb, lowest, highest) reconstructed value of one conversion."""
        return self.arith.adc()

    def lossless(self) -> bool:
        """Whether every possible column current is converted exactly."""
        return self.arith.lossless(self.q.shape[1])

    def input_range(self) -> tuple[int, int]:
        """Inputs saturate here: unsigned [0, 2^b − 1], signed (sign-magnitude) ±(2^(b−1) − 1)."""
        return self.arith.input_range()

    def mvm(self, x: np.ndarray) -> np.ndarray:
        """``x`` [M, K] integers → [M, N] (float64 holding the digitally recombined result)."""
        x = np.clip(x.astype(np.int64), *self.input_range())
        adc_noise = self.options.noise and (self.device.adc_noise_lsb > 0 or self.device.adc_offset_lsb > 0)
        if not self.spec.analog or (not self.noisy and self.lossless() and not adc_noise):
            # exact in float64 (sums stay far below 2^53), and BLAS is much faster than int64
            return x.astype(np.float64) @ self.q.T.astype(np.float64)
        return self.mvm_physical(x)

    def mvm_physical(self, x: np.ndarray) -> np.ndarray:
        """The chip's way, phase by phase and slice by slice (also the reference for the exact
        fast path): signed inputs in a positive and a negative phase, subtracted digitally."""
        out = None
        for sign, xu in self.arith.input_phases(x):
            part = sign * self._phase(xu)
            out = part if out is None else out + part
        return out

    def _phase(self, xu: np.ndarray) -> np.ndarray:
        """One pass of non-negative inputs through the tile."""
        arith = self.arith
        d = arith.dac_slices(xu).astype(np.float64)  # [I, M, K]
        n_in = d.shape[0]
        m, k = xu.shape
        n = self.q.shape[0]
        currents = (d.reshape(n_in * m, k) @ self.g_eff.reshape(-1, k).T).reshape(n_in, m, self.n_slices, n)
        if self.read_var is not None:
            var = (d ** 2).reshape(n_in * m, k) @ self.read_var.reshape(-1, k).T
            currents = currents + np.sqrt(var).reshape(currents.shape) * self.rng.standard_normal(currents.shape)
        lsb, lo, hi = self.adc()
        if self.options.noise and self.device.adc_noise_lsb > 0:
            currents = currents + self.device.adc_noise_lsb * lsb * self.rng.standard_normal(currents.shape)
        if self.adc_offset is not None:
            currents = currents + self.adc_offset * lsb  # [J, N] per column, the same at every read
        codes = np.clip(np.round(currents / lsb), lo / lsb, hi / lsb) * lsb
        acc = np.einsum("imjn,ij->mn", codes, arith.recombination()) * self.compensation
        if arith.weight_offset:
            acc -= float(arith.weight_offset) * xu.sum(axis=1, keepdims=True)
        return acc
