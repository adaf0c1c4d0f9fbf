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


def test_a_narrow_adc_clips_and_rounds():
    rng = np.random.default_rng(1)
    k, n = 64, 8
    q = rng.integers(-127, 128, (n, k))
    x = rng.integers(0, 256, (50, k))
    exact = x @ q.T
    narrow = dataclasses.replace(SPEC, adc_bits=6)
    pt = ProgrammedTile(tile(k, False, 31.0 * 4), q, narrow, Device("none"), SimOptions(noise=False), rng)
    assert not pt.lossless()
    err = np.abs(pt.mvm(x) - exact).max() / np.abs(exact).max()
    assert 0 < err < 0.5


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

    e0, _ = error(1.0, True)
    e_day_raw, y_raw = error(86400.0, False)
    e_day_comp, _ = error(86400.0, True)
    assert 0.005 < e0 < 0.3             # programming + read noise are visible at 1 s
    assert np.abs(y_raw).mean() < 0.8 * np.abs(exact).mean()  # drift shrinks outputs after a day
    assert e_day_comp < 0.6 * e_day_raw  # compensation recovers most of it


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
