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

from nmc.backends.devices import PCM, RRAM, Programmed, hermes_pcm
from nmc.backends.target import CrossbarCores, Device
from nmc.isa.program import Tile


@dataclass(frozen=True)
class SimOptions:
    """Run-time conditions: time since programming (s), seed, noise and compensation switches."""

    time: float = 0.0
    seed: int = 0
    noise: bool = True
    drift_compensation: bool = True


def _device_model(device: Device):
    if device.model == "pcm-joshi2020":
        base = PCM()
        return PCM(g_max=device.g_max or base.g_max)
    if device.model == "pcm-hermes":
        base = hermes_pcm()
        return PCM(g_max=device.g_max or base.g_max, t0=base.t0, t_read=base.t_read)
    if device.model == "rram-wan2022":
        return RRAM(g_max=device.g_max or 40.0, levels=device.levels or 16,
                    stuck_on_rate=device.stuck_on_rate, stuck_off_rate=device.stuck_off_rate)
    return None


class ProgrammedTile:
    """One tile after programming: per weight slice, the effective conductance matrix in units
    of one cell level (G+ − G− for differential pairs)."""

    def __init__(self, tile: Tile, q: np.ndarray, spec: CrossbarCores, device: Device, options: SimOptions,
                 rng: np.random.Generator):
        self.tile, self.spec, self.device, self.options = tile, spec, device, options
        self.q = q.astype(np.int64)
        self.rng = rng
        cb, wb = spec.cell_bits, spec.weight_bits
        self.cell_max = (1 << cb) - 1
        self.model = _device_model(device) if (options.noise and spec.analog) else None
        self.noisy = self.model is not None  # conductances deviate from their targets
        if spec.weight_scheme == "differential":
            mags = [np.maximum(self.q, 0), np.maximum(-self.q, 0)]
            bits = wb - 1
        else:
            mags = [self.q + (1 << (wb - 1))]
            bits = wb
        self.n_slices = -(-bits // cb)
        self.slice_shift = [j * cb for j in range(self.n_slices)]
        # levels[j][p]: integer cell levels of weight slice j, polarity p (0: G+ / offset, 1: G−)
        self.levels = [[(m >> (j * cb)) & self.cell_max for m in mags] for j in range(self.n_slices)]
        self.states = [[self._program(lv) for lv in pair] for pair in self.levels]
        self.g_eff = np.stack(self._conductances(options.time))  # [J, N, K], fixed for the run
        sigma = self._read_sigma()
        self.read_var = None if sigma is None else np.stack(sigma) ** 2  # per-cell read variance [J, N, K]
        self.compensation = 1.0
        self.adc_offset = None
        if options.noise and spec.analog and device.adc_offset_lsb > 0:
            self.adc_offset = device.adc_offset_lsb * rng.standard_normal((self.n_slices, self.q.shape[0]))
        if self.noisy and options.drift_compensation and isinstance(self.model, PCM) and device.drift:
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
        g_max = self.model.g_max
        target = levels * (g_max / self.cell_max)
        if isinstance(self.model, PCM):
            state = self.model.program(target, self.rng)
            return state if self.device.programming_noise else Programmed(target, state.nu)
        if isinstance(self.model, RRAM):
            rram = self.model if self.device.programming_noise else RRAM(
                g_max=self.model.g_max, levels=self.model.levels, stuck_on_rate=self.model.stuck_on_rate,
                stuck_off_rate=self.model.stuck_off_rate)
            if not self.device.programming_noise:
                return Programmed(rram.quantize(target))
            return rram.program(target, self.rng, t=max(self.options.time, 1.0))
        return Programmed(target)

    def _to_levels(self, g: np.ndarray) -> np.ndarray:
        return g if not self.noisy else g * (self.cell_max / self.model.g_max)

    def _conductances(self, t: float) -> list[np.ndarray]:
        out = []
        for pair in self.states:
            gs = []
            for state in pair:
                g = state.g
                if self.noisy and isinstance(self.model, PCM) and self.device.drift:
                    g = self.model.drift(state, t)
                gs.append(self._to_levels(g))
            out.append(gs[0] - gs[1] if len(gs) == 2 else gs[0])
        return out

    def _read_sigma(self) -> list[np.ndarray] | None:
        """Per-cell read-noise standard deviation (level units) per weight slice, or None."""
        if not (self.noisy and self.device.read_noise):
            return None
        if isinstance(self.model, RRAM):
            if self.device.read_noise_rel <= 0:
                return None
            return [np.sqrt(sum((self._to_levels(np.abs(state.g)) * self.device.read_noise_rel) ** 2
                                for state in pair)) for pair in self.states]
        if not isinstance(self.model, PCM):
            return None
        sig = []
        for pair in self.states:
            var = 0.0
            for state in pair:
                g = self.model.drift(state, self.options.time) if self.device.drift else state.g
                s = self.model.read_sigma(g, self.options.time)
                var = var + (self._to_levels(np.abs(g)) * s) ** 2
            sig.append(np.sqrt(var))
        return sig

    # ------------------------------------------------------------------ reading
    def adc(self) -> tuple[float, float, float]:
        """(lsb, lowest, highest) reconstructed value of one conversion."""
        ab = self.spec.adc_bits
        if self.spec.weight_scheme == "differential":
            steps = (1 << (ab - 1)) - 1
            lsb = self.tile.adc_range / steps
            return lsb, -steps * lsb, steps * lsb
        steps = (1 << ab) - 1
        lsb = self.tile.adc_range / steps
        return lsb, 0.0, steps * lsb

    def lossless(self) -> bool:
        """Whether every possible column current is converted exactly."""
        lsb, lo, hi = self.adc()
        worst = self.q.shape[1] * ((1 << self.spec.dac_bits) - 1) * self.cell_max
        return lsb == 1.0 and hi >= worst and (lo <= -worst or self.spec.weight_scheme == "offset")

    def input_range(self) -> tuple[int, int]:
        """Inputs saturate here: unsigned [0, 2^b − 1], signed (sign-magnitude) ±(2^(b−1) − 1)."""
        b = self.tile.in_bits
        return (-(1 << (b - 1)) + 1, (1 << (b - 1)) - 1) if self.tile.in_signed else (0, (1 << b) - 1)

    def mvm(self, x: np.ndarray) -> np.ndarray:
        """``x`` [M, K] integers → [M, N] (float64 holding the digitally recombined result)."""
        x = np.clip(x.astype(np.int64), *self.input_range())
        adc_noise = self.options.noise and (self.device.adc_noise_lsb > 0 or self.device.adc_offset_lsb > 0)
        if not self.spec.analog or (not self.noisy and self.lossless() and not adc_noise):
            # exact in float64 (sums stay far below 2^53), and BLAS is much faster than int64
            return x.astype(np.float64) @ self.q.T.astype(np.float64)
        return self.mvm_physical(x)

    def mvm_physical(self, x: np.ndarray) -> np.ndarray:
        """The chip's way, slice by slice (also the reference for the exact fast path)."""
        x = np.clip(x.astype(np.int64), *self.input_range())
        if self.tile.in_signed:
            return self._phase(np.maximum(x, 0), self.tile.in_bits - 1) - \
                self._phase(np.maximum(-x, 0), self.tile.in_bits - 1)
        return self._phase(x, self.tile.in_bits)

    def _phase(self, xu: np.ndarray, bits: int) -> np.ndarray:
        """One pass of non-negative inputs of ``bits`` bits through the tile."""
        spec = self.spec
        dac = spec.dac_bits
        n_in = max(1, -(-bits // dac))
        dmask = (1 << dac) - 1
        d = np.stack([(xu >> (i * dac)) & dmask for i in range(n_in)]).astype(np.float64)  # [I, M, K]
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
        weights = np.array([[2.0 ** (i * dac + s) for s in self.slice_shift] for i in range(n_in)])  # [I, J]
        acc = np.einsum("imjn,ij->mn", codes, weights) * self.compensation
        if spec.weight_scheme == "offset":
            acc -= float(1 << (spec.weight_bits - 1)) * xu.sum(axis=1, keepdims=True)
        return acc
