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

import copy
from dataclasses import dataclass

import numpy as np

from nmc.backends.devices import Programmed, device_model
from nmc.backends.target import CrossbarCores, Device, Programming
from nmc.backends.tile_arithmetic import TileArithmetic
from nmc.isa.program import Tile
from nmc.runtime.noise import SampleNoise, rows_noise

FLOAT32_EXACT = 1 << 24   # integer sums below this are exact in float32 (its 24-bit significand)


@dataclass(frozen=True)
class SimOptions:
    """Run-time conditions: time since programming (s), seed, noise and compensation switches."""

    time: float = 0.0
    seed: int = 0
    noise: bool = True
    drift_compensation: bool = True
    noisy_layers: frozenset[int] | None = None  # noise in these layers' tiles only (None: all)


class ProgrammedTile:
    """One tile after programming: per weight slice, the effective conductance matrix in units
    of one cell level (G+ − G− for differential pairs). The device model
    (``backends.devices``) programs, drifts and reads the cells; an ideal one is skipped."""

    def __init__(self, tile: Tile, q: np.ndarray, spec: CrossbarCores, device: Device, options: SimOptions,
                 rng: np.random.Generator, programming: Programming = Programming()):
        self.tile, self.spec, self.device, self.options = tile, spec, device, options
        self.programming = programming
        self.q = q.astype(np.int64)
        self.rng = rng
        self.pulses = 0  # programming pulses spent on this tile's cells (copies included)
        # pulses of each physical row (copy, input row): its slowest cell's; rows program one by one
        self.row_pulses = np.ones((tile.copies, q.shape[1]), np.int32)
        self.arith = TileArithmetic.of(tile, spec)
        self.cell_max = self.arith.cell_max
        self.noise_on = options.noise and (options.noisy_layers is None or tile.layer in options.noisy_layers)
        model = device_model(device) if (self.noise_on and spec.analog) else None
        self.model = None if model is None or model.ideal else model
        self.noisy = self.model is not None  # conductances deviate from their targets
        self.n_slices = self.arith.slices
        # levels[j][p]: integer cell levels of weight slice j, polarity p (0: G+ / offset, 1: G−)
        self.levels = self.arith.polarity_levels(self.q)
        # states[j][p]: the programmed copies (devices per weight) of slice j, polarity p
        self.states = [[self._program(lv) for lv in pair] for pair in self.levels]
        self._now = None
        self._now = [[self._conductance(j, p, options.time) for p in range(len(pair))]
                     for j, pair in enumerate(self.states)] if self.noisy else None  # µS at the run's time
        self.g_eff = np.stack(self._conductances(options.time))  # [J, N, K], fixed for the run
        variance = self._read_variance()
        self.read_var = None if variance is None else np.stack(variance)  # per-cell read variance [J, N, K]
        self._now = None
        k = self.q.shape[1]
        # what the ADCs convert, per conversion of an output (C = J slices apart, or 1 combined in charge)
        self.n_conversions = len(self.arith.conversion_shifts)
        g_conv, var_conv = self.g_eff, self.read_var
        if self.arith.charge and self.n_slices > 1:  # slice j's current counts 2^shift_j, its variance 4^shift_j
            scale = np.array([float(1 << s) for s in self.arith.slice_shifts])[:, None, None]
            g_conv = (self.g_eff * scale).sum(axis=0, keepdims=True)
            var_conv = None if self.read_var is None else (self.read_var * scale ** 2).sum(axis=0, keepdims=True)
        self._g_t = np.ascontiguousarray(g_conv.reshape(-1, k).T)  # [K, C·N]: one GEMM per read
        self._var_t = None if var_conv is None else np.ascontiguousarray(var_conv.reshape(-1, k).T)
        self._q_t = None
        self._f32_exact = None  # largest Σ|g| of a column (exact cells), once asked
        self._orders: dict[bytes, ProgrammedTile] = {}
        self.compensation = 1.0
        self.column_gain = self.column_offset = None  # per output column, after recombination
        self.adc_offset = None
        if self.noise_on and spec.analog and device.adc_offset_lsb > 0:
            self.adc_offset = device.adc_offset_lsb * rng.standard_normal((self.n_conversions, self.q.shape[0]))
        scheme = programming.drift_compensation
        if self.noisy and options.drift_compensation and self.model.drifts and scheme != "none":
            self._compensate_drift(scheme)
        if programming.column_calibration and self.noise_on and (self.noisy or self.adc_offset is not None
                                                                   or device.adc_noise_lsb > 0):
            self._calibrate_columns()  # noise off: nothing to calibrate, the outputs stay as they are

    def _compensate_drift(self, scheme: str) -> None:
        """Drift compensation: a known input (all rows driven) read right after programming and
        now; ``global`` scales every output of the tile by the ratio of the summed |currents|,
        ``column`` each output by its own columns' ratio (the devices of both polarities)."""
        if scheme == "global":
            ones = np.ones(self.q.shape[1])
            programmed = self._conductances(0.0)
            ref = sum(np.abs(programmed[j] @ ones).sum() for j in range(self.n_slices))
            now = sum(np.abs(self.g_eff[j] @ ones).sum() for j in range(self.n_slices))
            self.compensation = float(ref / now) if now > 0 else 1.0
            return
        ref = now = 0.0
        for j, pair in enumerate(self.states):
            for p in range(len(pair)):
                ref = ref + self._conductance(j, p, 0.0).sum(axis=1)
                now = now + self._conductance(j, p, self.options.time).sum(axis=1)
        gain = np.where(now > 0, ref / np.where(now > 0, now, 1.0), 1.0)
        self.column_gain = gain.astype(np.float32)

    def _calibrate_columns(self) -> None:
        """Per-column affine calibration at the run's time: ``calibration_inputs`` random input
        vectors read through the tile (with its noise) against their exact products; a
        least-squares gain and offset per output column. Its draws come after the programming's,
        from a stream of their own, so switching it on leaves the programmed cells as they were."""
        rng = np.random.default_rng((self.rng.integers(1 << 62), 1))
        lo, hi = self.input_range()
        x = rng.integers(lo, hi + 1, size=(self.programming.calibration_inputs, self.q.shape[1])).astype(np.float32)
        x *= rng.random(x.shape) < 0.5  # half the rows driven, as sparse activations drive them
        measured = self._physical(x, rows_noise(rng, x.shape[0])).astype(np.float64)
        exact = x.astype(np.float64) @ self.q.T.astype(np.float64)
        mx, ex = measured.mean(axis=0), exact.mean(axis=0)
        var = ((measured - mx) ** 2).sum(axis=0)
        gain = np.where(var > 0, ((measured - mx) * (exact - ex)).sum(axis=0) / np.where(var > 0, var, 1.0), 1.0)
        base = 1.0 if self.column_gain is None else self.column_gain.astype(np.float64)
        self.column_gain = (gain * base).astype(np.float32)
        self.column_offset = (ex - gain * mx).astype(np.float32)
    # ------------------------------------------------------------------ programming
    def _program(self, levels: np.ndarray) -> list[Programmed]:
        """The ``copies`` devices of each cell programmed (with program-and-verify when the
        target asks for it); counts the pulses spent."""
        copies = self.tile.copies
        if not self.noisy:
            self.pulses += levels.size * copies
            return [Programmed(levels.astype(np.float64))]
        target = levels * (self.model.g_max / self.cell_max)
        prog = self.programming
        out = []
        for c in range(copies):
            if prog.write_verify:
                state, pulses = self.model.program_verified(target, self.rng, self.options, prog.tolerance,
                                                            prog.max_pulses)
                self.pulses += int(pulses.sum())
                np.maximum(self.row_pulses[c], pulses.max(axis=0, initial=1), out=self.row_pulses[c])
            else:
                state = self.model.program(target, self.rng, self.options)
                self.pulses += levels.size
            out.append(state)
        return out

    def _to_levels(self, g: np.ndarray) -> np.ndarray:
        return g if not self.noisy else g * (self.cell_max / self.model.g_max)

    def _conductance(self, j: int, p: int, t: float) -> np.ndarray:
        """Cell conductances (µS, or levels for exact cells) of slice j, polarity p at time t:
        the mean of the weight's copies (their currents add; the ADC reads the mean)."""
        states = self.states[j][p]
        if not self.noisy:
            return states[0].g
        if self._now is not None and t == self.options.time:
            return self._now[j][p]
        g = self.model.conductance(states[0], t)
        for state in states[1:]:
            g = g + self.model.conductance(state, t)
        return g / len(states) if len(states) > 1 else g

    def _conductances(self, t: float) -> list[np.ndarray]:
        out = []
        for j, pair in enumerate(self.states):
            gs = [self._to_levels(self._conductance(j, p, t)) for p in range(len(pair))]
            out.append(gs[0] - gs[1] if len(gs) == 2 else gs[0])
        return out

    def _read_variance(self) -> list[np.ndarray] | None:
        """Per-cell read-noise variance (level units²) per weight slice, or None."""
        if not self.noisy:
            return None
        t = self.options.time
        out = []
        for j, pair in enumerate(self.states):
            var = 0.0
            for p, copies in enumerate(pair):
                for state in copies:  # independent reads of the copies; their mean's variance / copies²
                    # a single copy's conductance now is the slice's, already drifted for the run
                    g = self._now[j][p] if len(copies) == 1 else self.model.conductance(state, t)
                    rel = self.model.read_sigma_at(state, t, g)  # σ / |g(t)|
                    if rel is None:
                        return None
                    var = var + np.square(self._to_levels(np.abs(g)) * rel) / len(copies) ** 2
            out.append(var)
        return out

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

    def mvm(self, x: np.ndarray, noise: SampleNoise | None = None) -> np.ndarray:
        """``x`` [M, K] integers → [M, N], the digitally recombined result (float64, or float32
        for noisy cells).
        ``noise`` draws the read-time noise of the samples the rows belong to (rows are samples
        one after another); without it each row is a sample of a stream seeded from the tile's."""
        x = self._inputs(x)
        if self.exact:
            return self._exact(x)
        return self._physical(x, noise)

    def _inputs(self, x: np.ndarray) -> np.ndarray:
        """Integer inputs saturated to the DAC range, as float32 (exact: DAC codes stay far
        below 2^24)."""
        x = np.asarray(x)
        x = np.trunc(x, dtype=np.float32) if x.dtype.kind == "f" else x.astype(np.float32)
        lo, hi = self.input_range()
        np.maximum(x, lo, out=x)
        return np.minimum(x, hi, out=x)

    def reordered(self, order) -> "ProgrammedTile":
        """This tile with its K inputs in a gathered operand's order (``runtime.machine.Order``):
        the same programmed cells, rows permuted."""
        key = order.indices.tobytes()
        if key not in self._orders:
            tile = copy.copy(self)
            idx = order.indices
            tile.q = self.q[:, idx]
            tile._g_t = np.ascontiguousarray(self._g_t[idx])
            tile._var_t = None if self._var_t is None else np.ascontiguousarray(self._var_t[idx])
            tile._q_t, tile._orders = None, {}
            self._orders[key] = tile
        return self._orders[key]

    @property
    def exact(self) -> bool:
        """Whether a read is ``x @ q.T`` exactly: digital cores, or noiseless cells and ADC over
        a lossless range."""
        adc_noise = self.noise_on and (self.device.adc_noise_lsb > 0 or self.device.adc_offset_lsb > 0)
        return not self.spec.analog or (not self.noisy and self.lossless() and not adc_noise)

    def _exact(self, x: np.ndarray) -> np.ndarray:
        """``x @ q.T`` by BLAS: in float32 where every partial sum stays below 2^24 (exact), else
        float64 (sums stay far below 2^53)."""
        lo, hi = self.input_range()
        bound = max(abs(lo), abs(hi)) * float(np.abs(self.q).sum(axis=1).max(initial=0))
        dtype = np.float32 if bound < FLOAT32_EXACT else np.float64
        if self._q_t is None or self._q_t.dtype != dtype:
            self._q_t = np.ascontiguousarray(self.q.T, dtype=dtype)
        return x.astype(dtype, copy=False) @ self._q_t

    def mvm_physical(self, x: np.ndarray, noise: SampleNoise | None = None) -> np.ndarray:
        """The chip's way, phase by phase and slice by slice (also the reference for the exact
        fast path): signed inputs in a positive and a negative phase, subtracted digitally."""
        return self._physical(self._inputs(x), noise)

    def _physical(self, x: np.ndarray, noise: SampleNoise | None) -> np.ndarray:
        if noise is None:
            noise = rows_noise(self.rng, x.shape[0])
        phases = [(1.0, np.maximum(x, 0)), (-1.0, np.maximum(-x, 0))] if self.arith.in_signed else [(1.0, x)]
        out = None
        for phase, (sign, xu) in enumerate(phases):
            part = self._phase(xu, noise, phase)
            if sign < 0:
                np.negative(part, out=part)
            out = part if out is None else np.add(out, part, out=out)
        return self._columns(out)

    def _phase(self, xu: np.ndarray, noise: SampleNoise, phase: int) -> np.ndarray:
        """One pass of non-negative inputs through the tile, in sample-major order: row
        (m, i) is input slice i of row m; its columns are (conversion c, output n). Noisy
        cells are read in float32 (its rounding is far below their noise), exact ones in float64."""
        arith = self.arith
        m, k = xu.shape
        n, slices = self.q.shape[0], self.n_conversions
        dtype = np.float32 if self.noisy else np.float64
        # exact cells: a float32 product is exact while every column sum stays below 2^24
        level_max = arith.input_max if arith.dac_reads == 1 else (1 << arith.dac_bits) - 1  # one read's largest input
        product = np.float32 if self.noisy or self._exact_in_float32(level_max) else dtype
        if arith.dac_reads == 1:
            n_in, d = 1, xu.astype(product)
        elif arith.dac_bits == 1 and arith.in_bits <= 8:  # bit planes [M, I, K], least significant first
            n_in = arith.dac_reads
            planes = np.unpackbits(xu.astype(np.uint8)[:, None, :], axis=1, count=n_in, bitorder="little")
            d = planes.astype(product).reshape(m * n_in, k)
        else:  # input slices in sample-major order [M, I, K]: row (m, i) is slice i of row m
            n_in = arith.dac_reads
            d = arith.dac_slices(xu.astype(np.int32), axis=1).astype(product).reshape(m * n_in, k)
        g_t, var_t = self._matrices(product)
        currents = d @ g_t  # [M·I, C·N]
        lsb, lo, hi = self.adc()
        variance = None  # per conversion: read noise of the driven cells, plus the ADC's own
        if var_t is not None:
            variance = np.square(d, out=d) @ var_t
        if self.noise_on and self.device.adc_noise_lsb > 0:
            adc = (self.device.adc_noise_lsb * lsb) ** 2
            variance = adc if variance is None else np.add(variance, adc, out=variance)
        codes = currents.reshape(m, n_in * slices, n)
        if currents.dtype != dtype and variance is None and self.adc_offset is None:
            codes = np.divide(codes, lsb, dtype=dtype)   # exact float32 sums, converted as they are scaled
        else:
            if currents.dtype != dtype:  # exact sums from a float32 product, converted in dtype
                codes = codes.astype(dtype)
            if variance is not None:  # one draw per conversion: the two Gaussians' sum
                z = noise.normal(phase, (codes.size // noise.samples,)).reshape(codes.shape)
                z *= np.sqrt(variance, out=variance).reshape(codes.shape) if isinstance(variance, np.ndarray) \
                    else np.sqrt(variance)
                codes += z
            if self.adc_offset is not None:  # [C, N] per column, the same at every read
                codes += np.tile(self.adc_offset, (n_in, 1))[None] * lsb
            np.divide(codes, lsb, out=codes)
        np.rint(codes, out=codes)
        np.clip(codes, lo / lsb, hi / lsb, out=codes)
        weights = arith.recombination().reshape(-1) * (lsb * self.compensation)  # [I·C], (i, c) order
        if len(weights) == 1:
            acc = codes[:, 0] * dtype(weights[0])
        else:
            acc = np.einsum("mpn,p->mn", codes, weights.astype(dtype))
        if arith.weight_offset:
            acc -= float(arith.weight_offset) * xu.sum(axis=1, keepdims=True)
        return acc

    def _columns(self, out: np.ndarray) -> np.ndarray:
        """The per-column gain and offset (drift compensation, calibration) on a tile's result."""
        if self.column_gain is not None:
            out *= self.column_gain
        if self.column_offset is not None:
            out += self.column_offset
        return out

    def _exact_in_float32(self, input_max: int) -> bool:
        """Whether exact cells' column sums for inputs up to ``input_max`` stay below 2^24."""
        if self._f32_exact is None:
            self._f32_exact = float(np.abs(self._g_t).sum(axis=0).max(initial=0))
        return input_max * self._f32_exact < FLOAT32_EXACT

    def _matrices(self, dtype) -> tuple[np.ndarray, np.ndarray | None]:
        """The conductance and read-variance matrices [K, C·N] in ``dtype``."""
        if self._g_t.dtype != dtype:
            self._g_t = self._g_t.astype(dtype)
            self._var_t = None if self._var_t is None else self._var_t.astype(dtype)
        return self._g_t, self._var_t
