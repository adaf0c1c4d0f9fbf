"""Crossbar tiles: bit slicing and ADC recombination are exact when lossless; device physics
bends the numbers the way the device models say."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from nmc.backends.target import CrossbarCores, Device
from nmc.isa import parse_program
from nmc.isa.program import Tile
from nmc.runtime import SimOptions, execute
from nmc.runtime.crossbar import ProgrammedTile

SPEC = CrossbarCores(count=1, technology="pcm", rows=64, cols=64, crossbars_per_core=1, cell_bits=2,
                     weight_bits=8, input_bits=8, dac_bits=1, adc_bits=12, cols_per_adc=1,
                     weight_scheme="differential")


def tile(k, in_signed, adc_range):
    return Tile("t", "w", 0, 0, 0, 0, 8, in_signed, adc_range, SPEC.weight_bits, 0)


def worst_case(spec, k):
    return k * ((1 << spec.dac_bits) - 1) * ((1 << spec.cell_bits) - 1)


@pytest.mark.parametrize("scheme", ["differential", "offset"])
@pytest.mark.parametrize("signed", [False, True])
@pytest.mark.parametrize("dac_bits, cell_bits", [(1, 1), (2, 4), (4, 2), (8, 8)])
def test_physical_slicing_is_exact_when_lossless(scheme, signed, dac_bits, cell_bits):
    rng = np.random.default_rng(0)
    k, n = 40, 7
    spec = dataclasses.replace(SPEC, weight_scheme=scheme, dac_bits=dac_bits, cell_bits=cell_bits, adc_bits=24)
    q = rng.integers(-127, 128, (n, k))
    x = rng.integers(-127 if signed else 0, 128 if signed else 256, (13, k))
    steps = (1 << 23) - 1 if scheme == "differential" else (1 << 24) - 1
    t = tile(k, signed, float(steps))  # lsb = 1, range far above the worst case
    pt = ProgrammedTile(t, q, spec, Device("none"), SimOptions(noise=False), rng)
    assert pt.lossless()
    np.testing.assert_array_equal(pt.mvm_physical(x), x @ q.T)
    np.testing.assert_array_equal(pt.mvm(x), x @ q.T)


@pytest.mark.parametrize("scheme", ["differential", "offset"])
def test_a_narrow_adc_saturates_at_its_range(scheme):
    """One conversion per output (a 7- or 8-bit cell, one 8-bit DAC read) through a 6-bit ADC:
    every output is its current rounded to the step and clipped at the ADC's end codes."""
    rng = np.random.default_rng(1)
    k, n = 16, 8
    differential = scheme == "differential"
    single = dataclasses.replace(SPEC, cell_bits=7 if differential else 8, dac_bits=8, adc_bits=6,
                                 weight_scheme=scheme)
    steps, lsb = (31, 4.0) if differential else (63, 32.0)  # signed ADC over ±124, unsigned over [0, 2016]
    q = rng.integers(-20, 21, (n, k)) if differential else rng.integers(-127, 128, (n, k))
    x = rng.integers(0, 4, (200, k))
    pt = ProgrammedTile(tile(k, False, steps * lsb), q, single, Device("none"), SimOptions(noise=False), rng)
    assert not pt.lossless()
    current = x @ (q if differential else q + 128).T  # offset cells hold w + 128
    offset = np.broadcast_to(0 if differential else 128 * x.sum(axis=1, keepdims=True), current.shape)
    codes = np.clip(np.round(current / lsb), -steps if differential else 0, steps)
    got = pt.mvm(x)
    np.testing.assert_array_equal(got, codes * lsb - offset)
    high = current > steps * lsb + lsb / 2
    assert high.any()
    np.testing.assert_array_equal(got[high], steps * lsb - offset[high])  # the top code, exactly
    if differential:
        low = current < -steps * lsb - lsb / 2
        assert low.any()
        np.testing.assert_array_equal(got[low], -steps * lsb)
    assert not np.array_equal(got, np.round(current / lsb) * lsb - offset)  # saturation changed outputs


def test_a_narrow_adc_saturates_each_sliced_conversion():
    """Bit-serial inputs and 2-bit weight slices: each (input bit, weight slice) column current is
    rounded and clipped on its own before shift-and-add (a plain reference of the scheme)."""
    rng = np.random.default_rng(11)
    k, n = 64, 8
    q = rng.integers(112, 128, (n, k))  # one sign per column; bits 4–6 set: 64 × 3 levels in slice 2
    q[n // 2:] *= -1
    x = np.vstack([rng.integers(0, 256, (40, k)), np.full((10, k), 255)])
    narrow = dataclasses.replace(SPEC, adc_bits=6)
    lsb, steps = 4.0, 31
    pt = ProgrammedTile(tile(k, False, steps * lsb), q, narrow, Device("none"), SimOptions(noise=False), rng)
    want = np.zeros(x.shape[:1] + q.shape[:1])
    saturated = 0
    pos, neg = np.maximum(q, 0), np.maximum(-q, 0)
    for j in range(4):                      # magnitude bits 2j, 2j + 1 in G+ or G−
        level = ((pos >> 2 * j) & 3) - ((neg >> 2 * j) & 3)
        for i in range(8):                  # input bit i
            current = ((x >> i) & 1) @ level.T
            saturated += int((np.abs(current) > steps * lsb + lsb / 2).sum())
            want += 2.0 ** (i + 2 * j) * np.clip(np.round(current / lsb), -steps, steps) * lsb
    assert saturated > 0
    np.testing.assert_array_equal(pt.mvm(x), want)


def test_pcm_noise_and_drift_compensation():
    rng = np.random.default_rng(2)
    k, n = 64, 16
    q = rng.integers(-127, 128, (n, k))
    x = rng.integers(0, 256, (200, k))
    exact = x @ q.T
    spec = dataclasses.replace(SPEC, adc_bits=16)
    t = tile(k, False, float((1 << 15) - 1))
    dev = Device("pcm-joshi2020")

    def error(time, compensate):
        pt = ProgrammedTile(t, q, spec, dev, SimOptions(time=time, seed=3, drift_compensation=compensate),
                            np.random.default_rng(3))
        y = pt.mvm(x)
        return np.abs(y - exact).mean() / np.abs(exact).mean(), y

    e_day_raw, y_raw = error(86400.0, False)
    e_day_comp, _ = error(86400.0, True)
    assert np.abs(y_raw).mean() < 0.8 * np.abs(exact).mean()  # drift shrinks outputs after a day
    assert e_day_comp < 0.6 * e_day_raw  # compensation recovers most of it


def _pair_levels(q):
    """Per 2-bit slice j of |w| (7 magnitude bits): the G+ and G− cell levels [4, 2, N, K]."""
    pos, neg = np.maximum(q, 0), np.maximum(-q, 0)
    return np.array([[(pos >> 2 * j) & 3, (neg >> 2 * j) & 3] for j in range(4)], np.float64)


def test_pcm_noise_sources_each_have_their_spread_on_differential_slices():
    """At 1 s, on the presets' kind of tile (G+/G− pairs of 2-bit cells, bit-serial inputs), read
    through an ADC step far below a cell level: programming noise alone and read noise alone
    each move the outputs by their formulas (REFERENCE_DATA.md, PCM). A zero-level cell is
    programmed to max(σ_prog(0)·ξ, 0): a half-normal, biased upwards."""
    from test_physics_switches import FINE, assert_moments, assert_standard_normal, pcm_prog_sigma, pcm_read_rel

    rng = np.random.default_rng(2)
    k, n = 64, 16
    q = rng.integers(-127, 128, (n, k))
    spec = dataclasses.replace(SPEC, adc_bits=24)
    t = tile(k, False, float((1 << 23) - 1) * FINE)
    levels = _pair_levels(q)                   # [slice, polarity, N, K]
    to_levels = 3 / 25.0                        # µS → cell levels (g_max = 25 µS over levels 0..3)
    rounding = FINE ** 2 / 12 * sum(4.0 ** (i + 2 * j) for i in range(8) for j in range(4))  # per output

    # programming noise: input 255 on one row reads that row's cells through all 8 bits and 4 slices
    sigma = pcm_prog_sigma(levels / 3, 25.0)
    s0 = pcm_prog_sigma(0.0, 25.0)
    zero = levels == 0
    cell_mean = np.where(zero, s0 / np.sqrt(2 * np.pi), 0.0) * to_levels
    cell_var = np.where(zero, s0 ** 2 * (0.5 - 1 / (2 * np.pi)), sigma ** 2) * to_levels ** 2
    weight = 255.0 * 4.0 ** np.arange(4)[:, None, None]  # Σ_i 2^i · 2^(2j)
    mean = (weight * (cell_mean[:, 0] - cell_mean[:, 1])).sum(axis=0).T       # [K, N]
    var = (weight ** 2 * (cell_var[:, 0] + cell_var[:, 1])).sum(axis=0).T + rounding
    prog = Device("pcm-joshi2020", drift=False, read_noise=False)
    errs = [ProgrammedTile(t, q, spec, prog, SimOptions(time=1.0, seed=s), np.random.default_rng(s))
            .mvm(255 * np.eye(k, dtype=np.int64)) - 255 * q.T for s in range(4)]
    assert_moments(np.stack(errs), mean, var, "programming noise")

    # read noise: each read of a column current scatters by σ·|g| of every cell an input bit drives
    x = rng.integers(0, 256, (400, k))
    read = Device("pcm-joshi2020", programming_noise=False, drift=False)
    pt = ProgrammedTile(t, q, spec, read, SimOptions(time=1.0, seed=5), np.random.default_rng(5))
    err = pt.mvm(x) - x @ q.T
    cell_var = ((levels * pcm_read_rel(levels / 3, 1.0, 250e-9)) ** 2).sum(axis=1)  # [slice, N, K], both cells
    var = sum(4.0 ** (i + 2 * j) * (((x >> i) & 1) @ cell_var[j].T) for i in range(8) for j in range(4)) + rounding
    assert_standard_normal(err / np.sqrt(var), "read noise")


PROGRAM = """\
.nmc 2
.target "pcm-test"
.batched true
.input "x" in0 f32 [12]
.output "y" out0 f32 [3]
.buffer in0 f32 12 global
.buffer x f32 12 core0
.buffer q i32 12 core0
.buffer acc i32 3 core0
.buffer y f32 3 core0
.buffer out0 f32 3 global
.const w i32 [3, 12]
.const scale f32 [3]
.tile t0 weights=w core=0 xbar=0 row=0 col=0 in_bits=8 in_signed=1 adc_range=2047.0 weight_bits=8 layer=-1
.core 0
    load x[0; 12:1], in0[0; 12:1]
    quant q[0; 12:1], x[0; 12:1], #0.05, #-127.0, #127.0
    xmvm acc[0; 3:1], @t0, q[0; 12:1]
    dequant y[0; 3:1], acc[0; 3:1], scale[0; 3:1]
    store out0[0; 3:1], y[0; 3:1]
"""


def test_quantised_program_matches_integer_reference():
    from nmc.backends.target import parse_target

    target = parse_target("""
[chip]
name = "pcm-test"
summary = "test"
clock_ghz = 1.0
[verify]
rtol = 0.1
min_top1_agreement = 0.5
[[cores]]
kind = "vector"
count = 1
precision = "f32"
[[cores]]
kind = "crossbar"
count = 1
technology = "pcm"
rows = 64
cols = 64
cell_bits = 4
weight_bits = 8
input_bits = 8
dac_bits = 1
adc_bits = 12
[device]
model = "pcm-joshi2020"
""")
    p = parse_program(PROGRAM)
    rng = np.random.default_rng(4)
    w = rng.integers(-127, 128, (3, 12)).astype(np.int32)
    scale = np.array([0.01, 0.02, 0.03], np.float32)
    p.data = {"w": w, "scale": scale}
    x = rng.standard_normal((6, 12)).astype(np.float32)
    got = execute(p, {"x": x}, target=target, options=SimOptions(noise=False))["y"]
    qx = np.clip(np.round(x / np.float32(0.05)), -127, 127).astype(np.int64)
    want = (qx @ w.T.astype(np.int64)).astype(np.float32) * scale
    np.testing.assert_array_equal(got, want)
    noisy = execute(p, {"x": x}, target=target, options=SimOptions(time=3600.0, seed=1))["y"]
    assert 0 < np.abs(noisy - want).max() < 0.3 * np.abs(want).max()


def test_rram_read_noise_and_adc_offset_are_switchable():
    rng = np.random.default_rng(5)
    k, n = 64, 8
    q = rng.integers(-127, 128, (n, k))
    x = rng.integers(0, 256, (300, k))
    spec = dataclasses.replace(SPEC, technology="rram", cell_bits=4, adc_bits=16)
    t = tile(k, False, float((1 << 15) - 1))
    quiet = Device("rram-wan2022", levels=16, programming_noise=False)

    def spread(device, seed=6):
        pt = ProgrammedTile(t, q, spec, device, SimOptions(seed=seed), np.random.default_rng(seed))
        return (pt.mvm(x) - x @ q.T).std()

    assert spread(quiet) == 0.0  # 16 levels hold 4-bit slices exactly, no noise source on
    assert spread(dataclasses.replace(quiet, read_noise_rel=0.02)) > 0
    offset = dataclasses.replace(quiet, adc_offset_lsb=0.6)
    pt = ProgrammedTile(t, q, spec, offset, SimOptions(seed=7), np.random.default_rng(7))
    zeros = pt.mvm(np.zeros((2, k), np.int64))
    # a static offset: every read of a column is off by the same codes
    np.testing.assert_array_equal(zeros[0], zeros[1])
    assert np.abs(zeros).max() > 0
    assert (pt.mvm(x) - x @ q.T).std() > 0


@pytest.mark.parametrize("time", [0.0, 86400.0])
def test_pcm_read_variance_is_the_drifted_cells_spread(time):
    """A tile's read variance per cell is Σ over the pair (|g(t)| · σ_rel(g(t), t))², in cell-level
    units, from each device's conductance at the run's time (drifted once: ``read_sigma_at`` is
    handed those conductances) — the same as asking the model from scratch."""
    rng = np.random.default_rng(4)
    q = rng.integers(-127, 128, (6, 20))
    pt = ProgrammedTile(tile(20, False, 4095.0), q, SPEC, Device("pcm-joshi2020"), SimOptions(time=time, seed=1),
                        np.random.default_rng(1))
    model, to_levels = pt.model, pt.cell_max / pt.model.g_max
    for j, pair in enumerate(pt.states):
        want = 0.0
        for copies in pair:
            (state,) = copies
            g = model.conductance(state, time)
            want = want + np.square(np.abs(g) * to_levels * model.read_spread(g, time))
            np.testing.assert_array_equal(model.read_sigma_at(state, time, g), model.read_sigma(state, time))
        np.testing.assert_allclose(pt.read_var[j], want, rtol=1e-12)
