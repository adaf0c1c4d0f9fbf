"""One programmed tile against the formulas of a crossbar read (module docstring of
``runtime/crossbar.py``): integer inputs saturate at the DAC range and enter as integers; a
noiseless tile over a lossless ADC returns exactly ``x @ q.T`` however large the sums; signed
inputs read in two phases with independent noise; the read-time noise a sample sees is drawn
from its documented stream (``runtime/noise.py``) and nothing else. Statistical bounds are 5
standard errors at the test's sample size."""
from __future__ import annotations

import dataclasses
import math
import types

import numpy as np
import pytest

from nmc.backends.target import CrossbarCores, Device
from nmc.isa.program import Tile
from nmc.runtime.crossbar import ProgrammedTile, SimOptions
from nmc.runtime.noise import SampleNoise, rows_noise

Z = 5.0
# one conversion per output and phase: |w| ≤ 127 in one 7-bit cell pair, one 8-bit DAC read
ONE = CrossbarCores(count=1, technology="pcm", rows=256, cols=256, crossbars_per_core=1, cell_bits=7,
                    weight_bits=8, input_bits=8, dac_bits=8, adc_bits=24, cols_per_adc=1,
                    weight_scheme="differential")
# the presets' kind: 2-bit cell pairs (4 slices), bit-serial inputs (8 reads)
SLICED = dataclasses.replace(ONE, cell_bits=2, dac_bits=1)


def steps(spec: CrossbarCores) -> int:
    return (1 << (spec.adc_bits - 1)) - 1 if spec.weight_scheme == "differential" else (1 << spec.adc_bits) - 1


def programmed(spec, q, device, lsb=1.0, signed=False, seed=0, **options) -> ProgrammedTile:
    tile = Tile("t", "w", 0, 0, 0, 0, spec.input_bits, signed, steps(spec) * lsb, spec.weight_bits, 0)
    return ProgrammedTile(tile, np.asarray(q), spec, device, SimOptions(seed=seed, **options),
                          np.random.default_rng(seed))


# ----------------------------------------------------------------------------- exact reads
@pytest.mark.parametrize("spec", [ONE, SLICED, dataclasses.replace(SLICED, weight_scheme="offset"),
                                  dataclasses.replace(ONE, cell_bits=4, dac_bits=4), dataclasses.replace(ONE, cell_bits=4)])
@pytest.mark.parametrize("signed", [False, True])
def test_inputs_truncate_and_saturate_at_the_dac_range(spec, signed):
    """Unsigned inputs saturate to [0, 255], signed (sign-magnitude) to ±127, fractions toward 0."""
    rng = np.random.default_rng(1)
    q = rng.integers(-127, 128, (5, 12))
    x = rng.uniform(-400, 400, (30, 12))
    x[0, :4] = [0.99, -0.99, 127.5, -127.5]
    hi = 127 if signed else 255
    lo = -127 if signed else 0
    want = np.clip(np.trunc(x), lo, hi) @ q.T
    pt = programmed(spec, q, Device("none"), signed=signed, noise=False)
    np.testing.assert_array_equal(pt.mvm(x), want)
    np.testing.assert_array_equal(pt.mvm_physical(x), want)
    ints = rng.integers(-400, 400, (30, 12))
    np.testing.assert_array_equal(pt.mvm(ints), np.clip(ints, lo, hi) @ q.T)


@pytest.mark.parametrize("signed", [False, True])
def test_exact_reads_stay_exact_beyond_float32(signed):
    """Sums past 2^24 (255 · 127 · 600 ≈ 1.9e7, odd) are still integers: no float32 rounding."""
    k = 600
    q = np.full((3, k), 127)
    q[1] = -127
    q[2, ::2] = -127
    x = np.full((4, k), 255 if not signed else 127)
    x[1, 0] = 254 if not signed else -127
    x[2] = np.arange(k) % 256 if not signed else np.arange(k) % 255 - 127
    x[3, :] = 0
    wide = dataclasses.replace(ONE, adc_bits=26)   # lossless up to 2^25 − 1 > 600 · 255 · 127
    pt = programmed(wide, q, Device("none"), signed=signed, noise=False)
    assert pt.exact
    got = pt.mvm(x)
    want = x.astype(np.int64) @ q.T.astype(np.int64)
    assert np.abs(want).max() > 2 ** 24 or signed
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(pt.mvm_physical(x), want)
    # and small tiles too (float32 BLAS where every sum stays below 2^24)
    small = programmed(ONE, q[:, :16], Device("none"), signed=signed, noise=False)
    np.testing.assert_array_equal(small.mvm(x[:, :16]), x[:, :16] @ q[:, :16].T)


def test_a_lossy_noiseless_read_is_float64_and_a_noisy_one_float32():
    """The documented output types: float64 for exact cells, float32 for noisy ones."""
    rng = np.random.default_rng(2)
    q = rng.integers(-127, 128, (4, 32))
    x = rng.integers(0, 256, (6, 32))
    narrow = dataclasses.replace(SLICED, adc_bits=5)
    lossy = programmed(narrow, q, Device("none"), lsb=4.0, noise=False)
    assert not lossy.lossless() and not lossy.exact
    assert lossy.mvm(x).dtype == np.float64
    # one conversion per output (7-bit cell pairs, an 8-bit DAC): rint(I / 4) clipped at ±31 codes
    six = dataclasses.replace(ONE, adc_bits=6)
    clipped = programmed(six, q, Device("none"), lsb=4.0, noise=False)
    current = x @ q.T
    want = np.clip(np.rint(current / 4.0), -31, 31) * 4.0
    assert (np.abs(current) > 31 * 4 + 2).any()
    np.testing.assert_array_equal(clipped.mvm(x), want)
    for spec in (SLICED, ONE):
        noisy = programmed(spec, q, Device("pcm-joshi2020"), lsb=2.0 ** -7, time=1.0)
        assert noisy.mvm(x).dtype == np.float32


def test_exact_reads_compute_in_float32_while_every_row_sum_fits_24_bits():
    """``_exact``: float32 BLAS where 255 · max_n Σ_k |q_nk| < 2^24, else float64; an empty
    tile reads as an empty product."""
    wide = dataclasses.replace(ONE, adc_bits=26)
    q = np.full((64, 500), 127)            # each row 255 · 127 · 500 ≈ 1.6e7 < 2^24; all rows far more
    x = np.full((2, 500), 255)
    fits = programmed(wide, q, Device("none"), noise=False)
    got = fits.mvm(x)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, x @ q.T)
    np.testing.assert_array_equal(fits.mvm(x), got)   # again, from the cached matrix
    big = programmed(wide, np.full((2, 600), 127), Device("none"), noise=False)
    assert big.mvm(np.full((2, 600), 255)).dtype == np.float64
    empty = programmed(ONE, np.zeros((0, 5), np.int64), Device("none"), noise=False)
    assert empty.mvm(np.ones((3, 5), np.int64)).shape == (3, 0)


def test_adc_noise_counts_only_when_noise_is_on():
    rng = np.random.default_rng(3)
    q = rng.integers(-127, 128, (4, 32))
    x = rng.integers(0, 256, (50, 32))
    dev = Device("none", adc_noise_lsb=0.8)
    off = programmed(ONE, q, dev, noise=False)
    assert off.exact
    np.testing.assert_array_equal(off.mvm(x), x @ q.T)
    np.testing.assert_array_equal(off.mvm_physical(x), x @ q.T)   # the chip's way: no ADC noise either
    on = programmed(ONE, q, dev)
    assert not on.exact
    got = on.mvm(x)
    assert got.dtype == np.float64   # ideal cells: exact conductances, only the ADC is noisy
    assert np.any(got != x @ q.T)
    offset = programmed(ONE, q, Device("none", adc_offset_lsb=0.8))
    assert not offset.exact and offset.adc_offset is not None
    assert programmed(ONE, q, Device("none", adc_offset_lsb=0.8), noise=False).adc_offset is None


# ----------------------------------------------------------------------------- read-time noise
def _conversion_rounding_zero(sigma: float) -> float:
    """P(rint(σ z₁) = rint(σ z₂)) for independent standard normals: Σ_k P(rint(σ z) = k)²."""
    def p(k):
        phi = lambda v: 0.5 * (1 + math.erf(v / math.sqrt(2)))
        return phi((k + 0.5) / sigma) - phi((k - 0.5) / sigma)
    return sum(p(k) ** 2 for k in range(-20, 21))


def test_signed_phases_draw_independent_adc_noise():
    """A zero signed input is read in two phases, each conversion with its own ADC noise
    (σ = 0.5 LSB), subtracted digitally: the output is rint(σz₁) − rint(σz₂), zero with
    probability Σ_k p_k², not always."""
    q = np.random.default_rng(4).integers(-127, 128, (16, 8))
    pt = programmed(ONE, q, Device("none", adc_noise_lsb=0.5), signed=True, seed=4)
    out = pt.mvm(np.zeros((500, 8), np.int64), SampleNoise(11, (0,), 0, 500))
    assert np.all(out == np.rint(out)) and np.abs(out).max() <= 4
    p0 = _conversion_rounding_zero(0.5)
    n = out.size
    assert abs(np.mean(out == 0) - p0) <= Z * math.sqrt(p0 * (1 - p0) / n)
    # one phase (unsigned), an ADC step of 4: 4·rint(σ z) alone, zero with probability P(|z| < 1)
    unsigned = programmed(ONE, q, Device("none", adc_noise_lsb=0.5), lsb=4.0, seed=4)
    one = unsigned.mvm(np.zeros((500, 8), np.int64), SampleNoise(11, (0,), 0, 500))
    assert np.all(one % 4 == 0) and np.abs(one).max() >= 4
    p1 = math.erf(1 / math.sqrt(2))
    assert abs(np.mean(one == 0) - p1) <= Z * math.sqrt(p1 * (1 - p1) / n)


def _standard_normals(seed, read, draw, first, samples, per):
    """The documented streams: block b of ``block`` samples draws from
    SeedSequence((seed, *read, draw, b)), its samples in order."""
    size = 256
    while size > 1 and size * per > 1 << 16:
        size //= 2
    out = []
    for s in range(first, first + samples):
        b = s // size
        stream = np.random.Generator(np.random.PCG64(np.random.SeedSequence((seed, *read, draw, b))))
        out.append(stream.standard_normal((s - b * size + 1, per), dtype=np.float32)[-1])
    return np.array(out)


def test_a_read_adds_the_samples_own_adc_noise():
    """With ADC noise only (σ LSB per conversion, one conversion per output and unsigned
    phase, lossless step 1), output − x·qᵀ = rint(σ·z) for z the sample's documented draw."""
    rng = np.random.default_rng(5)
    q = rng.integers(-127, 128, (6, 10))
    x = rng.integers(0, 256, (9, 10))
    sigma = 0.7
    pt = programmed(ONE, q, Device("none", adc_noise_lsb=sigma), seed=5)
    noise = SampleNoise(123, (2, 1), 3, 9)
    z = _standard_normals(123, (2, 1), 0, 3, 9, 6)
    np.testing.assert_array_equal(pt.mvm(x, noise) - x @ q.T, np.rint(np.float32(sigma) * z))
    np.testing.assert_array_equal(pt.mvm_physical(x, SampleNoise(123, (2, 1), 3, 9)), pt.mvm(x, noise))


def test_a_direct_read_draws_row_i_as_sample_i_of_a_stream_seeded_from_the_tiles_generator():
    """Without a SampleNoise, rows are samples 0, 1, … of a stream whose seed is the tile
    generator's next integer below 2^63 (``rows_noise``)."""
    rng = np.random.default_rng(6)
    q = rng.integers(-127, 128, (6, 10))
    x = rng.integers(0, 256, (7, 10))
    sigma = 0.7
    pt = programmed(ONE, q, Device("none", adc_noise_lsb=sigma), seed=6)
    mirror = np.random.default_rng(6)   # ideal cells and no ADC offsets draw nothing at programming
    seed = int(mirror.integers(2 ** 63))
    z = _standard_normals(seed, (), 0, 0, 7, 6)
    np.testing.assert_array_equal(pt.mvm(x) - x @ q.T, np.rint(np.float32(sigma) * z))
    # the same through mvm_physical: the next seed of the generator
    seed = int(mirror.integers(2 ** 63))
    z = _standard_normals(seed, (), 0, 0, 7, 6)
    np.testing.assert_array_equal(pt.mvm_physical(x) - x @ q.T, np.rint(np.float32(sigma) * z))


def test_rows_noise_is_samples_from_zero_of_a_63_bit_seed():
    rng = np.random.default_rng(7)
    mirror = np.random.default_rng(7)
    seeds = set()
    for rows in (1, 3, 300):
        noise = rows_noise(rng, rows)
        seed = int(mirror.integers(2 ** 63))
        np.testing.assert_array_equal(noise.normal(1, (5,)), _standard_normals(seed, (), 1, 0, rows, 5))
        seeds.add(seed)
    draws = {rows_noise(rng, 1).normal(0, (2,)).tobytes() for _ in range(300)}
    assert len(draws) == 300   # 300 distinct streams: seeds from far more than 300 values


# ----------------------------------------------------------------------------- reordered rows
@pytest.mark.parametrize("device", [Device("none"), Device("pcm-joshi2020"),
                                    Device("pcm-joshi2020", programming_noise=False, drift=False)])
def test_a_reordered_tile_reads_the_same_cells(device):
    """A gathered operand's order permutes the tile's rows, not its cells: reading x through the
    reordered tile is reading x scattered back to the original rows, noise and all (one input per
    row and sample, so every sum has one term and no rounding order)."""
    rng = np.random.default_rng(8)
    k = 12
    q = rng.integers(-127, 128, (5, k))
    pt = programmed(SLICED, q, device, lsb=2.0 ** -7, time=100.0, seed=8)
    perm = rng.permutation(k)
    order = types.SimpleNamespace(indices=perm)
    re = pt.reordered(order)
    assert pt.reordered(types.SimpleNamespace(indices=perm.copy())) is re
    x = np.zeros((k, k), np.int64)
    x[np.arange(k), rng.permutation(k)] = rng.integers(1, 256, k)
    scattered = np.zeros_like(x)
    scattered[:, perm] = x
    a = re.mvm(x, SampleNoise(9, (1,), 0, k))
    b = pt.mvm(scattered, SampleNoise(9, (1,), 0, k))
    np.testing.assert_array_equal(a, b)
    if device.model == "none":
        np.testing.assert_array_equal(a, x @ q[:, perm].T)
    # the original still reads in its own order
    np.testing.assert_array_equal(pt.mvm(scattered, SampleNoise(9, (1,), 0, k)), b)
    other = rng.permutation(k)
    back = pt.reordered(types.SimpleNamespace(indices=other))
    assert back is not re
    spread = np.zeros_like(x)
    spread[:, other] = x
    np.testing.assert_array_equal(back.mvm(x, SampleNoise(9, (1,), 0, k)), pt.mvm(spread, SampleNoise(9, (1,), 0, k)))
    twice = re.reordered(types.SimpleNamespace(indices=np.argsort(perm)))
    np.testing.assert_array_equal(twice.mvm(scattered, SampleNoise(9, (1,), 0, k)), b)


# ----------------------------------------------------------------------------- drift compensation
def test_drift_compensation_is_the_ratio_of_all_ones_reads():
    """PCM drift only: every cell g·((t + t0)/t0)^−ν; compensation = Σ|Σ_k G(0)| / Σ|Σ_k G(t)|
    over slices and outputs, in cell levels, and outputs scale by it."""
    rng = np.random.default_rng(10)
    q = rng.integers(-127, 128, (6, 20))
    dev = Device("pcm-joshi2020", programming_noise=False, read_noise=False)
    t = 3600.0
    pt = programmed(SLICED, q, dev, lsb=2.0 ** -7, time=t, seed=10)
    raw = programmed(SLICED, q, dev, lsb=2.0 ** -7, time=t, seed=10, drift_compensation=False)
    assert raw.compensation == 1.0
    decay = ((t + 20.0) / 20.0)
    ref = now = 0.0
    for pair in pt.states:
        g0 = [s[0].g for s in pair]
        gt = [s[0].g * decay ** (-s[0].nu) for s in pair]
        ref += np.abs((g0[0] - g0[1]).sum(axis=1)).sum()
        now += np.abs((gt[0] - gt[1]).sum(axis=1)).sum()
    assert pt.compensation == pytest.approx(ref / now, rel=1e-12)
    assert pt.compensation > 1.0
    x = rng.integers(0, 256, (8, 20))
    np.testing.assert_allclose(pt.mvm(x), raw.mvm(x) * pt.compensation, rtol=1e-5, atol=1.0)


def test_noise_off_or_digital_cores_read_exactly_whatever_the_device():
    rng = np.random.default_rng(12)
    q = rng.integers(-127, 128, (4, 24))
    x = rng.integers(0, 256, (10, 24))
    for device in (Device("pcm-joshi2020"), Device("rram-wan2022", stuck_on_rate=0.1)):
        off = programmed(SLICED, q, device, noise=False)
        assert off.exact
        np.testing.assert_array_equal(off.mvm(x), x @ q.T)
        digital = programmed(dataclasses.replace(SLICED, technology="sram-digital"), q, device)
        np.testing.assert_array_equal(digital.mvm(x), x @ q.T)


def test_pcm_with_every_physics_switch_off_holds_its_targets():
    """Programming noise, drift and read noise off: each cell sits at level · g_max / cell_max,
    so a read through a step-1 ADC is exact (in float32, the noisy cells' type)."""
    rng = np.random.default_rng(13)
    q = rng.integers(-127, 128, (5, 30))
    x = rng.integers(0, 256, (12, 30))
    quiet = Device("pcm-joshi2020", programming_noise=False, drift=False, read_noise=False)
    pt = programmed(SLICED, q, quiet, time=1e5)
    got = pt.mvm(x)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, x @ q.T)
    for j, pair in enumerate(pt.states):   # µS: level × 25 / 3 per 2-bit cell
        pos = (np.maximum(q, 0) >> 2 * j) & 3
        np.testing.assert_allclose(pair[0][0].g, pos * 25.0 / 3, rtol=1e-12)


def test_adc_offsets_are_static_per_column_with_their_spread():
    """Offsets of σ LSB drawn once per column (N = 1500 columns, K = 3 rows, step 2): zero inputs
    read 2·rint(σξ_n), the same at every read; P(0) = P(|ξ| < ½/σ) within 5 standard errors."""
    n, sigma = 1500, 0.8
    q = np.zeros((n, 3), np.int64)
    pt = programmed(ONE, q, Device("none", adc_offset_lsb=sigma), lsb=2.0, seed=14)
    zeros = np.zeros((2, 3), np.int64)
    out = pt.mvm(zeros) / 2.0   # in LSB
    np.testing.assert_array_equal(out[0], out[1])
    np.testing.assert_array_equal(pt.mvm(zeros) / 2.0, out)
    p0 = math.erf(0.5 / sigma / math.sqrt(2))
    assert abs(np.mean(out[0] == 0) - p0) <= Z * math.sqrt(p0 * (1 - p0) / n)
    p1 = 0.5 * (math.erf(1.5 / sigma / math.sqrt(2)) - math.erf(0.5 / sigma / math.sqrt(2)))   # code +1
    assert abs(np.mean(out[0] == 1) - p1) <= Z * math.sqrt(p1 * (1 - p1) / n)


def test_drift_compensation_of_an_empty_or_tiny_tile():
    """No conductance at all: nothing to compensate (factor 1, outputs are the ADC noise alone);
    one cell of one level: the factor is its own decay, however small its current; at t = 0, 1."""
    dev = Device("pcm-joshi2020", programming_noise=False, read_noise=False, adc_noise_lsb=0.5)
    zero = np.zeros((3, 8), np.int64)
    x = np.random.default_rng(15).integers(0, 256, (20, 8))
    comp = programmed(SLICED, zero, dev, time=86400.0, seed=15)
    raw = programmed(SLICED, zero, dev, time=86400.0, seed=15, drift_compensation=False)
    assert comp.compensation == 1.0
    np.testing.assert_array_equal(comp.mvm(x, SampleNoise(1, (), 0, 20)), raw.mvm(x, SampleNoise(1, (), 0, 20)))
    one = zero.copy()
    one[0, 0] = 1
    t = 86400.0
    tiny = programmed(SLICED, one, dev, time=t, seed=16)
    nu = tiny.states[0][0][0].nu[0, 0]
    assert tiny.compensation == pytest.approx(((t + 20.0) / 20.0) ** nu, rel=1e-9)
    assert programmed(SLICED, one, dev, time=0.0, seed=16).compensation == 1.0


@pytest.mark.parametrize("first, samples, per", [(300, 400, 5), (3, 200, 1000), (0, 1, 70000), (1, 3, 40000), (513, 2, 3)])
def test_sample_noise_follows_the_documented_blocks(first, samples, per):
    noise = SampleNoise(77, (4, 2), first, samples)
    got = noise.normal(3, (per,))
    assert got.dtype == np.float32 and got.shape == (samples, per)
    np.testing.assert_array_equal(got, _standard_normals(77, (4, 2), 3, first, samples, per))
    shaped = noise.normal(3, (1, per))
    assert shaped.shape == (samples, 1, per)
    np.testing.assert_array_equal(shaped[:, 0], got)


def pcm_read_rel(level, t, cell_max=127, t_read=250e-9):
    """REFERENCE_DATA.md, PCM read noise: Q_s = min(0.0088 / max(g_rel^0.65, 1e-3), 0.2),
    σ/|g| = Q_s · sqrt(ln((t + t_read) / (2 t_read)))."""
    g_rel = level / cell_max
    q_s = np.minimum(0.0088 / np.maximum(g_rel ** 0.65, 1e-3), 0.2)
    return q_s * math.sqrt(math.log((t + t_read) / (2 * t_read)))


@pytest.mark.parametrize("signed", [False, True])
def test_read_noise_has_the_published_sigma_per_conversion(signed):
    """PCM read noise alone (plus a small ADC noise, 2 LSB of a fine step): input v on one row
    reads w·v + v·|w|·σ_rel(w)·ξ per conversion (one 7-bit cell pair per weight, the other cell
    of the pair at 0 µS, silent); standardised errors have mean 0 and variance 1 (5 SE)."""
    rng = np.random.default_rng(20)
    n, k, reps = 16, 32, 60
    q = rng.integers(-127, 128, (n, k))
    q[0, :3] = 0
    lsb, adc = 2.0 ** -7, 2.0
    dev = Device("pcm-joshi2020", programming_noise=False, drift=False, adc_noise_lsb=adc)
    t = 10.0
    pt = programmed(ONE, q, dev, lsb=lsb, signed=signed, time=t, seed=21)
    v = 100 if not signed else -100
    x = np.tile(v * np.eye(k, dtype=np.int64), (reps, 1))
    err = pt.mvm(x, SampleNoise(5, (), 0, len(x))).astype(np.float64) - x @ q.T
    w = np.tile(q.T, (reps, 1)).astype(np.float64)             # [samples, N]: the weight each read
    var = (v * np.abs(w) * pcm_read_rel(np.abs(w), t)) ** 2 + (adc * lsb) ** 2 + lsb ** 2 / 12
    z = err / np.sqrt(var)
    m = z.size
    assert abs(z.mean()) <= Z / math.sqrt(m)
    assert abs(z.var() - 1) <= Z * math.sqrt(2 / m)
    # zero weights: only the ADC noise (a few LSB), far below the read noise of the others
    assert np.abs(err[w == 0]).max() <= 12 * lsb
