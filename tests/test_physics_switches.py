"""Each noise source and physics switch, one at a time, at the level of one programmed tile:
on, it moves the outputs by the amount its model's formula says; off, it does not move them.

Expected magnitudes are written here from the published formulas (REFERENCE_DATA.md, cited in
``backends/devices.py``), not read from the model classes, and every bound is 5 standard errors
of the statistic at the test's sample size. To see one cell's effective weight, a tile is read
with one-hot inputs through an ADC whose step (``FINE``) is far below one cell level, so the
ADC's rounding hides nothing; ADC effects themselves are read through a lossless step of 1.
"""
from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest

from nmc.backends.devices import device_model
from nmc.backends.target import CrossbarCores, Device, load_target, parse_target
from nmc.compiler.reports.report import noisy
from nmc.isa.program import Tile
from nmc.runtime import SimOptions
from nmc.runtime.cam import ProgrammedCam
from nmc.runtime.crossbar import ProgrammedTile

Z = 5.0               # standard errors allowed on every statistical check
FINE = 2.0 ** -7      # an ADC step far below a cell level (exact in binary)

# one weight slice per cell (offset scheme: w + 128 in an 8-bit cell), one 8-bit DAC read: one
# conversion per output, and a one-hot input reads exactly one cell
OFFSET_1 = CrossbarCores(count=1, technology="pcm", rows=256, cols=256, crossbars_per_core=1, cell_bits=8,
                         weight_bits=8, input_bits=8, dac_bits=8, adc_bits=24, cols_per_adc=1,
                         weight_scheme="offset")
# the presets' kind of tile: differential pairs of 2-bit cells (4 slices), bit-serial inputs (8 reads)
DIFF_SLICED = dataclasses.replace(OFFSET_1, cell_bits=2, dac_bits=1, weight_scheme="differential")

# published constants (REFERENCE_DATA.md: aihwkit PCMLikeNoiseModel / HermesNoiseModel)
PCM_MODELS = {"pcm-joshi2020": {"g_max": 25.0, "t0": 20.0, "t_read": 250e-9},
              "pcm-hermes": {"g_max": 20.7, "t0": 300.0, "t_read": 512e-9}}
# Wan et al. 2022 (NeuRRAM) σ [µS] polynomial in g_rel per time after programming, at g_max = 40 µS
WAN2022 = {1.0: (0.348, 16.030, -43.853, 45.393, -16.815),
           86400.0: (0.701, 22.086, -50.773, 47.095, -16.458),
           172800.0: (0.782, 20.274, -43.507, 37.062, -11.934)}
RRAM_G_MAX = 40.0


# ----------------------------------------------------------------------------- the formulas
_erf = np.vectorize(math.erf)


def normal_cdf(z):
    return 0.5 * (1.0 + _erf(np.asarray(z, np.float64) / math.sqrt(2.0)))


def pcm_prog_sigma(g_rel, g_max):
    """σ_prog [µS] = (0.26348 + 1.9650 g_rel − 1.1731 g_rel²) · g_max / 25."""
    return (0.26348 + 1.9650 * g_rel - 1.1731 * g_rel ** 2) * g_max / 25.0


def pcm_read_rel(g_rel, t, t_read):
    """Relative 1/f read noise: min(0.0088 / max(g_rel^0.65, 1e-3), 0.2) · sqrt(ln((t + t_read)/(2 t_read)))."""
    q_s = np.minimum(0.0088 / np.maximum(np.asarray(g_rel) ** 0.65, 1e-3), 0.2)
    return q_s * np.sqrt(np.log((max(t, t_read) + t_read) / (2 * t_read)))


def pcm_nu_moments(g_rel):
    """Mean and variance of ν = |μ_ν + σ_ν ξ| (a folded normal), μ_ν and σ_ν clamped as published."""
    lg = np.log(np.maximum(g_rel, 1e-7))
    mu = np.clip(-0.0155 * lg + 0.0244, 0.049, 0.1)
    sd = np.clip(-0.0125 * lg - 0.0059, 0.008, 0.045)
    mean = sd * np.sqrt(2 / np.pi) * np.exp(-mu ** 2 / (2 * sd ** 2)) + mu * (1 - 2 * normal_cdf(-mu / sd))
    return mean, mu ** 2 + sd ** 2 - mean ** 2


def pcm_decay_moments(g_rel, t, t0):
    """Mean and variance of the drift factor ((t + t0)/t0)^(−ν) over ν's distribution (quadrature)."""
    lg = np.log(np.maximum(np.asarray(g_rel, np.float64), 1e-7))[..., None]
    mu = np.clip(-0.0155 * lg + 0.0244, 0.049, 0.1)
    sd = np.clip(-0.0125 * lg - 0.0059, 0.008, 0.045)
    xi = np.linspace(-8.0, 8.0, 801)
    w = np.exp(-xi ** 2 / 2)
    w /= w.sum()
    factor = ((t + t0) / t0) ** (-np.abs(mu + sd * xi))
    mean = (factor * w).sum(axis=-1)
    return mean, (factor ** 2 * w).sum(axis=-1) - mean ** 2


def rram_sigma(g_rel, time):
    """The Wan 2022 σ [µS] of the fit nearest (in log time) to ``time`` (at least 1 s)."""
    fit = min(WAN2022, key=lambda k: abs(math.log(max(time, 1.0)) - math.log(k)))
    return sum(c * np.asarray(g_rel, np.float64) ** i for i, c in enumerate(WAN2022[fit]))


def rounding_variance(sigma: float) -> float:
    """Var of round(σξ): the code error of an ADC whose ideal current sits exactly on a code."""
    k = np.arange(-int(12 * sigma) - 2, int(12 * sigma) + 3)
    p = normal_cdf((k + 0.5) / sigma) - normal_cdf((k - 0.5) / sigma)
    return float((k ** 2 * p).sum())


def flip_probability(u: np.ndarray, sigma: float) -> np.ndarray:
    """P(round(u + σξ) ≠ round(u)): a conversion's code changed by noise of σ LSB."""
    r = np.round(u)
    return 1.0 - (normal_cdf((r + 0.5 - u) / sigma) - normal_cdf((r - 0.5 - u) / sigma))


def sum_of_squared_recombination(dac_reads: int, slices: int, dac_bits: int, cell_bits: int) -> float:
    """Σ over (input slice i, weight slice j) of (2^(i·dac_bits + j·cell_bits))²."""
    return float(sum(4.0 ** (i * dac_bits + j * cell_bits) for i in range(dac_reads) for j in range(slices)))


# ----------------------------------------------------------------------------- statistics
def assert_standard_normal(z: np.ndarray, what: str) -> None:
    """Independent z-scores: mean 0 (SE 1/√n) and mean square 1 (SE √(2/n))."""
    n = z.size
    assert abs(z.mean()) < Z / math.sqrt(n), f"{what}: mean z {z.mean():.4f}, n = {n}"
    assert abs((z ** 2).mean() - 1) < Z * math.sqrt(2 / n), f"{what}: mean z² {(z ** 2).mean():.4f}, n = {n}"


def assert_moments(dev: np.ndarray, mean, var, what: str) -> None:
    """Independent samples ``dev`` with expected ``mean`` and ``var`` (per sample or scalars): the
    total deviation within Z·√Σvar, and Σ(dev − mean)² / Σvar within Z standard errors of 1
    (the standard error measured from the samples, as their distribution need not be normal)."""
    dev = np.asarray(dev, np.float64)
    mean = np.broadcast_to(np.asarray(mean, np.float64), dev.shape).ravel()
    var = np.broadcast_to(np.asarray(var, np.float64), dev.shape).ravel()
    dev = dev.ravel()
    d = dev - mean
    se_mean = math.sqrt(var.sum()) / d.size
    assert abs(d.mean()) < Z * se_mean, f"{what}: mean off by {d.mean():.4g} (standard error {se_mean:.3g})"
    ratio = (d ** 2).sum() / var.sum()
    se = math.sqrt(((d ** 2 - var) ** 2).sum()) / var.sum()
    assert abs(ratio - 1) < Z * se, f"{what}: variance ratio {ratio:.4f} ± {se:.4f}"


def binomial_ok(count: int, n: int, p: float) -> bool:
    return abs(count - n * p) < Z * math.sqrt(n * p * (1 - p)) + 1e-9


# ----------------------------------------------------------------------------- tiles
def adc_steps(spec: CrossbarCores) -> int:
    return (1 << (spec.adc_bits - 1)) - 1 if spec.weight_scheme == "differential" else (1 << spec.adc_bits) - 1


def programmed(spec: CrossbarCores, q: np.ndarray, device: Device, lsb: float = FINE, in_signed: bool = False,
               time: float = 0.0, seed: int = 0, **options) -> ProgrammedTile:
    """A tile of weights ``q`` [N, K] programmed on ``spec`` with ADC step ``lsb``."""
    tile = Tile("t", "w", 0, 0, 0, 0, spec.input_bits, in_signed, adc_steps(spec) * lsb, spec.weight_bits, 0)
    return ProgrammedTile(tile, q, spec, device, SimOptions(time=time, seed=seed, **options),
                          np.random.default_rng(seed))


def read_cells(pt: ProgrammedTile) -> np.ndarray:
    """[K, N]: each row read alone with input 1, i.e. every cell's effective weight."""
    return pt.mvm(np.eye(pt.q.shape[1], dtype=np.int64))


def offset_levels(q: np.ndarray) -> np.ndarray:
    """Cell levels of the offset scheme on OFFSET_1-like tiles: w + 2^(bits − 1), as [K, N]."""
    return (q + 128).T.astype(np.float64)


RNG = np.random.default_rng(2024)
# offset-scheme weights whose cells sit at levels 32..224 of 255 (g_rel 0.13–0.88): far enough
# from 0 µS that clipping at 0 is negligible (> 6 σ_prog)
Q_MID = RNG.integers(-96, 97, (64, 128))


# ----------------------------------------------------------------------------- PCM
@pytest.mark.parametrize("model", sorted(PCM_MODELS))
def test_pcm_programming_noise_has_the_published_spread(model):
    g_max = PCM_MODELS[model]["g_max"]
    dev = Device(model, drift=False, read_noise=False)
    cells = read_cells(programmed(OFFSET_1, Q_MID, dev, time=3600.0, seed=1))
    levels = offset_levels(Q_MID)
    err = cells - Q_MID.T  # level units
    sigma = pcm_prog_sigma(levels / 255, g_max) * 255 / g_max  # µS → levels
    assert_standard_normal(err / sigma, f"{model} programming noise")
    low = levels < 128  # the polynomial's shape, not only its average: low and high conductances apart
    assert_standard_normal(err[low] / sigma[low], f"{model} programming noise, g_rel < 0.5")
    assert_standard_normal(err[~low] / sigma[~low], f"{model} programming noise, g_rel ≥ 0.5")
    off = read_cells(programmed(OFFSET_1, Q_MID, dataclasses.replace(dev, programming_noise=False), time=3600.0,
                                seed=1))
    np.testing.assert_array_equal(off, Q_MID.T)


@pytest.mark.parametrize("model", sorted(PCM_MODELS))
def test_pcm_drift_decays_each_cell_by_its_own_exponent(model):
    t0 = PCM_MODELS[model]["t0"]
    day = 86400.0
    dev = Device(model, programming_noise=False, read_noise=False)
    q = np.random.default_rng(20).integers(-127, 128, (64, 128))  # the clamps of μ_ν and σ_ν all matter
    q[:, :16] = -127  # 1024 cells at level 1 (g_rel 0.004): ν ~ |N(0.1, 0.045²)|, 1.3 % of it folded
    levels = offset_levels(q)
    drifted = read_cells(programmed(OFFSET_1, q, dev, time=day, seed=2, drift_compensation=False)) + 128
    nu = -np.log(drifted / levels) / np.log((day + t0) / t0)  # g(t) = g · ((t + t0)/t0)^(−ν)
    mean, var = pcm_nu_moments(levels / 255)
    assert_moments(nu, mean, var, f"{model} drift exponents")
    assert (drifted <= levels + FINE / 2).all()  # ν = |μ_ν + σ_ν ξ| ≥ 0: no cell's conductance rises
    # at programming time and with the switch off, nothing moves
    np.testing.assert_array_equal(read_cells(programmed(OFFSET_1, q, dev, time=0.0, seed=2)), q.T)
    no_drift = dataclasses.replace(dev, drift=False)
    np.testing.assert_array_equal(read_cells(programmed(OFFSET_1, q, no_drift, time=day, seed=2,
                                                         drift_compensation=False)), q.T)


def test_drift_compensation_rescales_by_the_all_ones_read():
    """The array read with all ones right after programming and at t: outputs scaled by the ratio
    of the two summed |column outputs|, which puts the mean output back where it was."""
    day = 86400.0
    quiet = Device("pcm-joshi2020", programming_noise=False, read_noise=False)
    levels = offset_levels(Q_MID)  # cells of the offset scheme: the all-ones read sees w + 128
    raw = read_cells(programmed(OFFSET_1, Q_MID, quiet, time=day, seed=3, drift_compensation=False)) + 128
    comp = read_cells(programmed(OFFSET_1, Q_MID, quiet, time=day, seed=3)) + 128
    decay, decay_var = pcm_decay_moments(levels / 255, day, 20.0)
    assert abs(raw.sum() - (levels * decay).sum()) < Z * math.sqrt((levels ** 2 * decay_var).sum())
    ratio = levels.sum() / raw.sum()  # Σ_n |Σ_k g(0)| / Σ_n |Σ_k g(t)|: every column sum is positive here
    np.testing.assert_allclose(comp, ratio * raw, rtol=1e-5)  # FINE rounding of g(t) in `raw` only
    assert abs(comp.sum() / levels.sum() - 1) < 1e-5
    # the reference read is of the programmed conductances, programming noise included
    noisy_dev = dataclasses.replace(quiet, programming_noise=True)
    at_0 = read_cells(programmed(OFFSET_1, Q_MID, noisy_dev, time=0.0, seed=4)) + 128
    at_day = read_cells(programmed(OFFSET_1, Q_MID, noisy_dev, time=day, seed=4)) + 128
    assert abs(at_day.sum() / at_0.sum() - 1) < 1e-5
    np.testing.assert_array_equal(  # right after programming the two reads agree: no scaling at all
        at_0, read_cells(programmed(OFFSET_1, Q_MID, noisy_dev, time=0.0, seed=4, drift_compensation=False)) + 128)
    # off: the switch, a model without drift, and time 0 leave outputs unscaled
    np.testing.assert_array_equal(
        read_cells(programmed(OFFSET_1, Q_MID, quiet, time=day, seed=3, drift_compensation=False)) + 128, raw)
    np.testing.assert_array_equal(read_cells(programmed(OFFSET_1, Q_MID, dataclasses.replace(quiet, drift=False),
                                                        time=day, seed=3)), Q_MID.T)
    np.testing.assert_array_equal(read_cells(programmed(OFFSET_1, Q_MID, quiet, time=0.0, seed=3)), Q_MID.T)


@pytest.mark.parametrize("model", sorted(PCM_MODELS))
def test_pcm_read_noise_is_1_over_f_and_grows_with_time(model):
    t_read = PCM_MODELS[model]["t_read"]
    q = Q_MID[:16, :32]
    dev = Device(model, programming_noise=False, drift=False)
    x = np.ones((2000, q.shape[1]), np.int64)  # the same input read 2000 times
    levels = offset_levels(q)
    spreads = {}
    for t in (1.0, 86400.0):
        err = programmed(OFFSET_1, q, dev, time=t, seed=5).mvm(x) - x @ q.T
        sigma = np.sqrt(((levels * pcm_read_rel(levels / 255, t, t_read)) ** 2).sum(axis=0))  # per column
        assert_standard_normal(err / sigma, f"{model} read noise at t = {t} s")
        spreads[t] = (err ** 2).mean() ** 0.5, np.broadcast_to(sigma, err.shape)
    # the same cells a day later: every σ larger by the factor sqrt(ln) gives
    grows = math.sqrt(math.log((86400.0 + t_read) / (2 * t_read)) / math.log((1.0 + t_read) / (2 * t_read)))
    s = spreads[1.0][1]
    rel_se = math.sqrt(2 * (s ** 4).sum()) / (s ** 2).sum() / math.sqrt(2)  # of the ratio of two rms values
    assert abs(spreads[86400.0][0] / spreads[1.0][0] / grows - 1) < Z * rel_se
    # at t = 0 (a read right after programming: ln 1 = 0) and with the switch off, reads are exact
    np.testing.assert_array_equal(programmed(OFFSET_1, q, dev, time=0.0, seed=5).mvm(x), x @ q.T)
    off = dataclasses.replace(dev, read_noise=False)
    np.testing.assert_array_equal(programmed(OFFSET_1, q, off, time=86400.0, seed=5).mvm(x), x @ q.T)


# ----------------------------------------------------------------------------- RRAM
RRAM_1 = dataclasses.replace(OFFSET_1, technology="rram", cell_bits=4, weight_bits=4)  # levels w + 8 of 15
Q_RRAM = RNG.integers(-3, 7, (64, 128))  # levels 5..14: > 3 σ above 0 µS


@pytest.mark.parametrize("time", [0.0, 1.0, 3600.0, 86400.0, 2 * 86400.0, 1e7])
def test_rram_programming_spread_follows_the_wan2022_fit_nearest_the_runs_time(time):
    dev = Device("rram-wan2022", levels=16)
    cells = read_cells(programmed(RRAM_1, Q_RRAM, dev, time=time, seed=6))
    levels = (Q_RRAM + 8).T
    sigma = rram_sigma(levels / 15, time) * 15 / RRAM_G_MAX  # µS → levels
    assert_standard_normal((cells - Q_RRAM.T) / sigma, f"RRAM spread at t = {time} s")
    off = dataclasses.replace(dev, programming_noise=False)
    np.testing.assert_array_equal(read_cells(programmed(RRAM_1, Q_RRAM, off, time=time, seed=6)), Q_RRAM.T)


def test_rram_read_noise_is_read_noise_rel_of_each_cell():
    """``read_noise_rel`` > 0 reaches the simulator (``RRAM.read_sigma``): each read of a column
    scatters by rel·sqrt(Σ g²) over its cells, both cells of each differential pair."""
    spec = dataclasses.replace(RRAM_1, weight_bits=5, weight_scheme="differential")  # G+/G− of 4-bit cells
    q = np.random.default_rng(21).integers(-15, 16, (16, 32))
    rel = 0.05
    dev = Device("rram-wan2022", levels=16, programming_noise=False, read_noise_rel=rel)
    x = np.ones((2000, q.shape[1]), np.int64)
    err = programmed(spec, q, dev, time=1.0, seed=7).mvm(x) - x @ q.T
    sigma = rel * np.sqrt((q.astype(np.float64) ** 2).sum(axis=1))  # one cell of each pair holds |w|
    assert_standard_normal(err / sigma, "RRAM read noise")
    for off in (dataclasses.replace(dev, read_noise=False), dataclasses.replace(dev, read_noise_rel=0.0)):
        np.testing.assert_array_equal(programmed(spec, q, off, time=1.0, seed=7).mvm(x), x @ q.T)


def test_rram_stuck_at_faults_have_their_own_switch():
    on_rate, off_rate = 0.03, 0.05
    q = np.random.default_rng(22).integers(-3, 7, (128, 128))
    levels = (q + 8).T
    dev = Device("rram-wan2022", levels=16, stuck_on_rate=on_rate, stuck_off_rate=off_rate, programming_noise=False)
    cells = read_cells(programmed(RRAM_1, q, dev, seed=8)) + 8
    stuck_on, stuck_off = cells == 15, cells == 0
    n = cells.size
    assert binomial_ok(int(stuck_on.sum()), n, on_rate) and binomial_ok(int(stuck_off.sum()), n, off_rate)
    healthy = ~(stuck_on | stuck_off)
    np.testing.assert_array_equal(cells[healthy], levels[healthy])  # no programming spread: exact levels
    # the same cells stick with the programming spread on (a seed is one chip)
    spread = read_cells(programmed(RRAM_1, q, dataclasses.replace(dev, programming_noise=True), seed=8)) + 8
    assert (spread[stuck_on] == 15).all() and (spread[stuck_off] == 0).all()
    assert not np.array_equal(spread[healthy], levels[healthy])
    # off: no stuck cells, with or without the spread
    np.testing.assert_array_equal(
        read_cells(programmed(RRAM_1, q, dataclasses.replace(dev, stuck_at=False), seed=8)), q.T)
    spread_only = read_cells(programmed(RRAM_1, q, dataclasses.replace(dev, stuck_at=False, programming_noise=True),
                                        seed=8)) + 8
    np.testing.assert_array_equal(spread_only[healthy], spread[healthy])  # the same spread drawn either way
    assert not np.array_equal(spread_only[~healthy], spread[~healthy])
    # a target file switches it
    text = load_target("rram").source.replace("stuck_off_rate = 0.0005", "stuck_off_rate = 0.0005\nstuck_at = false")
    target = parse_target(text, "rram-healthy")
    assert not target.device.stuck_at and not device_model(target.device).switches.stuck_at
    assert load_target("rram").device.stuck_at


# ----------------------------------------------------------------------------- ADC
@pytest.mark.parametrize("signed", [False, True])
@pytest.mark.parametrize("sigma_lsb", [1.0, 0.3])
def test_adc_noise_spreads_outputs_by_the_recombined_lsb(sigma_lsb, signed):
    """Exact cells and currents on the code grid (lsb 1): each conversion's code moves by
    round(σξ), recombined with weights 2^(i·dac_bits + j·cell_bits), in both phases when signed."""
    spec = DIFF_SLICED
    rng = np.random.default_rng(23)
    q = rng.integers(-127, 128, (16, 32))
    x = rng.integers(-127 if signed else 0, 128 if signed else 256, (500, 32))
    dev = Device("none", adc_noise_lsb=sigma_lsb)
    err = programmed(spec, q, dev, lsb=1.0, in_signed=signed, seed=9).mvm(x) - x @ q.T
    reads = 7 if signed else 8          # magnitude bits through a 1-bit DAC
    phases = 2 if signed else 1
    var = phases * rounding_variance(sigma_lsb) * sum_of_squared_recombination(reads, 4, 1, 2)
    assert_moments(err, 0.0, var, f"ADC noise {sigma_lsb} LSB")
    exact = x @ q.T
    np.testing.assert_array_equal(programmed(spec, q, Device("none"), lsb=1.0, in_signed=signed).mvm(x), exact)
    np.testing.assert_array_equal(programmed(spec, q, dev, lsb=1.0, in_signed=signed, noise=False).mvm(x), exact)
    digital = dataclasses.replace(spec, technology="sram-digital")
    np.testing.assert_array_equal(programmed(digital, q, dev, lsb=1.0, in_signed=signed).mvm(x), exact)


@pytest.mark.parametrize("lsb, sigma_lsb", [(1.0, 0.1), (2.0, 0.1), (4.0, 0.1), (4.0, 0.3)])
def test_adc_noise_flips_codes_as_often_as_the_rounding_boundaries_say(lsb, sigma_lsb):
    """Why sram-analog's 0.1 LSB changes (almost) nothing: exact cells draw integer currents,
    which at lsb = 1 sit on a code, 5 σ from either rounding boundary (P ≈ 6e-7 a conversion).
    With a coarser step the currents fall between codes and the noise flips the codes it should."""
    spec = dataclasses.replace(OFFSET_1, cell_bits=7, weight_scheme="differential")  # one conversion per output
    rng = np.random.default_rng(24)
    q = rng.integers(-127, 128, (64, 16))
    x = rng.integers(0, 4, (500, 16))  # currents well inside the ADC's range
    current = (x @ q.T).astype(np.float64)
    quiet = programmed(spec, q, Device("none"), lsb=lsb).mvm(x)
    np.testing.assert_array_equal(quiet, np.round(current / lsb) * lsb)
    noisy_adc = Device("none", adc_noise_lsb=sigma_lsb)
    flips = int((programmed(spec, q, noisy_adc, lsb=lsb, seed=10).mvm(x) != quiet).sum())
    p = flip_probability(current / lsb, sigma_lsb)
    expected, sd = p.sum(), math.sqrt((p * (1 - p)).sum())
    assert abs(flips - expected) < Z * sd + 1, f"{flips} codes flipped, {expected:.1f} ± {sd:.1f} expected"
    if lsb == 1.0:
        assert expected < 0.05 and flips <= 1  # 32000 conversions at P ≈ 5.7e-7 each
    else:
        assert flips > 1000  # the odd (lsb 2) or quarter (lsb 4) currents sit on a rounding boundary


def test_adc_offsets_are_static_per_column_with_the_drawn_spread():
    spec = DIFF_SLICED
    rng = np.random.default_rng(25)
    q = rng.integers(-127, 128, (4000, 4))
    x = np.vstack([np.zeros((1, 4), np.int64), rng.integers(0, 256, (3, 4))])
    sigma = 0.6
    dev = Device("none", adc_offset_lsb=sigma)
    err = programmed(spec, q, dev, lsb=1.0, seed=11).mvm(x) - x @ q.T
    np.testing.assert_array_equal(err, np.broadcast_to(err[0], err.shape))  # the same at every read
    # per column Σ_j round(o_j)·Σ_i 2^(i + 2j): each (weight slice, column) ADC's offset in all 8 reads
    per_slice = [sum(2.0 ** (i + 2 * j) for i in range(8)) for j in range(4)]
    var = rounding_variance(sigma) * sum(w ** 2 for w in per_slice)
    assert_moments(err[0], 0.0, var, "ADC offsets")
    # drawn per programming: the seed is the chip
    np.testing.assert_array_equal(programmed(spec, q, dev, lsb=1.0, seed=11).mvm(x) - x @ q.T, err)
    assert not np.array_equal(programmed(spec, q, dev, lsb=1.0, seed=12).mvm(x) - x @ q.T, err)
    # a signed input's two phases go through the same ADC and are subtracted: the offset cancels
    xs = rng.integers(-127, 128, (5, 4))
    np.testing.assert_array_equal(programmed(spec, q, dev, lsb=1.0, in_signed=True, seed=11).mvm(xs), xs @ q.T)
    np.testing.assert_array_equal(programmed(spec, q, dev, lsb=1.0, seed=11, noise=False).mvm(x), x @ q.T)


def test_report_counts_adc_offsets_as_noise():
    text = load_target("sram-analog").source.replace("adc_noise_lsb = 0.1", "adc_noise_lsb = 0.0")
    assert not noisy(parse_target(text, "quiet"))
    assert noisy(parse_target(text.replace("adc_noise_lsb = 0.0", "adc_offset_lsb = 0.5"), "offsets"))
    assert noisy(load_target("sram-analog")) and not noisy(load_target("sram-digital"))


# ----------------------------------------------------------------------------- analog CAM
def test_cam_bounds_move_by_the_neurram_spread():
    """A closed bound L becomes ceil(L + σ_L ξ) (σ in code levels: the Wan 2022 σ at 1 s of the
    bound's conductance over one level), so a row [L, H) matches a query code c with probability
    Φ((c − L)/σ_L)·Φ((H − c)/σ_H); open bounds (0 and the number of levels) never move."""
    rows, cell_bits, lo_code, hi_code = 4000, 4, 5, 11
    step = RRAM_G_MAX / 15
    lo = np.full((rows, 2), lo_code)
    hi = np.full((rows, 2), hi_code)
    lo[:, 1], hi[:, 1] = 0, 16  # a wildcard feature
    model = device_model(Device("rram-wan2022", levels=16))
    cam = ProgrammedCam(lo, hi, np.array([16, 16]), sigma_levels=model.cam_bound_sigma(cell_bits),
                        rng=np.random.default_rng(13))
    codes = np.stack([np.arange(16), np.full(16, 7)], axis=1)
    matched = cam.search(codes).mean(axis=1)
    sigma_lo = rram_sigma(lo_code * step / RRAM_G_MAX, 1.0) / step
    sigma_hi = rram_sigma(hi_code * step / RRAM_G_MAX, 1.0) / step
    c = np.arange(16)
    p = normal_cdf((c - lo_code) / sigma_lo) * normal_cdf((hi_code - c) / sigma_hi)
    np.testing.assert_array_less(np.abs(matched - p), Z * np.sqrt(p * (1 - p) / rows) + 1e-9)
    assert (cam.lo[:, 1] == 0).all() and (cam.hi[:, 1] == 16).all()
    # off: the switch (or SimOptions(noise=False), which never asks the model)
    assert device_model(Device("rram-wan2022", levels=16, programming_noise=False)).cam_bound_sigma(cell_bits) is None
    exact = ProgrammedCam(lo, hi, np.array([16, 16])).search(codes)
    np.testing.assert_array_equal(exact.mean(axis=1), ((c >= lo_code) & (c < hi_code)).astype(float))


def test_report_on_a_noisy_cam_runs_several_trials(tmp_path):
    pytest.importorskip("skl2onnx")
    from sklearn.ensemble import RandomForestClassifier
    from skl2onnx import to_onnx

    from nmc.compiler.cli import main

    rng = np.random.default_rng(14)
    x = rng.standard_normal((300, 4)).astype(np.float32)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(np.int64)
    forest = RandomForestClassifier(n_estimators=4, max_depth=4, random_state=0).fit(x, y)
    model = to_onnx(forest, x[:1], options={id(forest): {"zipmap": False}}, target_opset={"": 17, "ai.onnx.ml": 3})
    (tmp_path / "rf.onnx").write_bytes(model.SerializeToString())
    np.savez(tmp_path / "d.npz", x=x, y=y)
    program = tmp_path / "rf.nmc"
    assert main(["compile", str(tmp_path / "rf.onnx"), "--target", "acam", "-o", str(program), "-q"]) == 0
    out = tmp_path / "r.json"
    assert main(["report", str(program), "--input", f"{tmp_path / 'd.npz'}:x", "--labels", f"{tmp_path / 'd.npz'}:y",
                 "--format", "json", "-o", str(out), "-q"]) == 0
    evaluation = json.loads(out.read_text())["evaluation"]
    assert evaluation["trials"] > 1
    assert not any("every trial gives the same result" in note for note in evaluation["notes"])
