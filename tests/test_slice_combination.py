"""Weight slices combined in charge before one ADC conversion (``slice_combination = "charge"``:
binary-weighted charge sharing, capacitor ladders) against slices converted one by one: where
quantisation happens, how many conversions a read makes, what the ADC must cover, and what it
costs."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from nmc.backends.target import CrossbarCores, Device, TargetError, load_target, with_fields
from nmc.backends.tile_arithmetic import TileArithmetic
from nmc.isa.program import Tile
from nmc.runtime import SimOptions
from nmc.runtime.crossbar import ProgrammedTile

SPEC = CrossbarCores(count=1, technology="sram-analog", rows=64, cols=64, crossbars_per_core=1, cell_bits=1,
                     weight_bits=4, input_bits=4, dac_bits=4, adc_bits=6, cols_per_adc=1, weight_scheme="offset",
                     slice_combination="charge")


def tile(adc_range, in_bits=4):
    return Tile("t", "w", 0, 0, 0, 0, in_bits, False, adc_range, SPEC.weight_bits, 0)


def test_the_arithmetic_by_hand():
    """4-bit offset weights in four 1-bit cells, 4-bit inputs in one read: one conversion per
    output whose current counts the cells 8, 4, 2, 1, against four conversions digitally."""
    charge = TileArithmetic.planned(SPEC, 4, 4)
    digital = dataclasses.replace(charge, combination="digital")
    assert (charge.slices, charge.columns_per_weight) == (digital.slices, digital.columns_per_weight) == (4, 4)
    assert charge.conversions(10) == 10 and digital.conversions(10) == 40
    assert charge.recombination().tolist() == [[1.0]]
    assert digital.recombination().tolist() == [[1.0, 2.0, 4.0, 8.0]]
    q = np.array([[-8, 7, 0]])                     # offset codes 0, 15, 8
    assert charge.conversion_levels(q)[0].tolist() == [[0, 15, 8]]
    assert [lv.tolist() for lv in digital.conversion_levels(q)] == [[[0, 1, 0]], [[0, 1, 0]], [[0, 1, 0]], [[0, 1, 1]]]
    # the largest current: 3 rows × input 15 × combined code 15, against one cell level per slice
    assert charge.worst_current(q) == 15 * (15 + 8) and digital.worst_current(q) == 15 * 2
    assert charge.worst_possible_current(3) == 3 * 15 * 15 and digital.worst_possible_current(3) == 3 * 15
    x = np.array([[1, 2, 3]])
    assert [c.tolist() for c in charge.ideal_currents(x, q)] == [[[1 * 0 + 2 * 15 + 3 * 8]]]


def test_lossless_charge_combination_is_exact():
    rng = np.random.default_rng(0)
    k, n = 40, 7
    spec = dataclasses.replace(SPEC, adc_bits=16)
    q = rng.integers(-8, 8, (n, k))
    x = rng.integers(0, 16, (13, k))
    pt = ProgrammedTile(tile(float((1 << 16) - 1)), q, spec, Device("none"), SimOptions(noise=False), rng)
    assert pt.lossless()
    np.testing.assert_array_equal(pt.mvm_physical(x), x @ q.T)


def test_a_coarse_adc_rounds_the_combined_current_once():
    """With a 6-bit ADC of step 16 the charge tile rounds Σ_j 2^j·I_j once; converting the slices
    one by one (step 8 covers a slice's current) rounds each I_j and adds the rounded codes."""
    rng = np.random.default_rng(3)
    k, n = 20, 5
    q = rng.integers(-8, 8, (n, k))
    x = rng.integers(0, 16, (50, k))
    offset = 8 * x.sum(axis=1, keepdims=True)
    pt = ProgrammedTile(tile(63 * 16.0), q, SPEC, Device("none"), SimOptions(noise=False), rng)
    assert not pt.lossless()
    combined = x @ (q + 8).T                                   # offset codes 0..15
    want = np.clip(np.rint(combined / 16), 0, 63) * 16 - offset
    np.testing.assert_array_equal(pt.mvm_physical(x), want)
    digital = dataclasses.replace(SPEC, slice_combination="digital")
    dt = ProgrammedTile(tile(63 * 8.0), q, digital, Device("none"), SimOptions(noise=False), rng)
    bits = [((q + 8) >> j) & 1 for j in range(4)]
    want_digital = sum((1 << j) * np.clip(np.rint(x @ b.T / 8), 0, 63) * 8 for j, b in enumerate(bits)) - offset
    np.testing.assert_array_equal(dt.mvm_physical(x), want_digital)
    assert not np.array_equal(want, want_digital)


def test_read_noise_of_combined_slices_adds_in_quadrature_with_their_weights():
    """The variance the ADC sees is Σ_j 4^j·var_j; the conductance it reads Σ_j 2^j·G_j."""
    rng = np.random.default_rng(4)
    spec = dataclasses.replace(SPEC, technology="pcm", weight_scheme="differential", weight_bits=4, cell_bits=1)
    q = rng.integers(-7, 8, (6, 30))
    pt = ProgrammedTile(tile(7 * 64.0), q, spec, Device("pcm-joshi2020"), SimOptions(time=3600.0), rng)
    assert pt.n_slices == 3 and pt.n_conversions == 1
    scale = np.array([1.0, 2.0, 4.0])[:, None, None]
    np.testing.assert_allclose(pt._g_t, (pt.g_eff * scale).sum(axis=0).T, rtol=1e-12)
    np.testing.assert_allclose(pt._var_t, (pt.read_var * scale ** 2).sum(axis=0).T, rtol=1e-12)


def test_a_target_states_the_combination():
    base = load_target("sram-analog")
    assert base.crossbar.slice_combination == "digital"
    charge = with_fields(base, {"cores.crossbar.slice_combination": "charge"})
    assert charge.crossbar.slice_combination == "charge"
    with pytest.raises(TargetError, match="slice_combination = 'fused'; known: digital, charge"):
        with_fields(base, {"cores.crossbar.slice_combination": "fused"})
    with pytest.raises(TargetError, match="needs analog arrays"):
        with_fields(load_target("sram-digital"), {"cores.crossbar.slice_combination": "charge"})


def test_the_digits_cnn_on_charge_combined_sram():
    """Eight 1-bit cells per weight combined before one 8-bit conversion: an eighth of the ADC
    conversions (and their energy) of slices converted one by one, predictions as before."""
    import onnxruntime as ort

    from nmc.compiler import compile_model
    from nmc.runtime.timing import estimate

    root = Path(__file__).resolve().parents[1] / "examples"
    x = np.load(root / "digits_calibration.npz")["x_image"][:120].astype(np.float32)
    session = ort.InferenceSession(str(root / "digits_cnn.onnx"))
    ref = session.run(None, {session.get_inputs()[0].name: x})[0]
    base = load_target("sram-analog")
    charge = with_fields(base, {"cores.crossbar.slice_combination": "charge"})
    energy = {}
    for target in (base, charge):
        compiled = compile_model(str(root / "digits_cnn.onnx"), target, calibration=x[:60])
        energy[target.crossbar.slice_combination] = estimate(compiled.program, target).energy_pj
        y = np.asarray(list(compiled.bound().run(x, noise=False).values())[0])
        assert (y.argmax(1) == ref.argmax(1)).mean() >= 0.97
        assert np.abs(y - ref).max() <= 0.1 * np.abs(ref).max()
    assert energy["charge"]["adc"] == pytest.approx(energy["digital"]["adc"] / 8)
    assert energy["charge"]["array"] == pytest.approx(energy["digital"]["array"])   # every bit cell still read


def test_a_combined_conversion_has_one_adc_offset_per_output():
    """Each output's one converter has one static offset (not one per slice): the result is the
    combined current plus that offset, rounded to the step once."""
    rng = np.random.default_rng(6)
    k, n, lsb = 20, 5, 16.0
    q = rng.integers(-8, 8, (n, k))
    x = rng.integers(0, 16, (40, k))
    device = Device("sram-analog", adc_offset_lsb=1.5)
    pt = ProgrammedTile(tile(63 * lsb), q, SPEC, device, SimOptions(), rng)
    assert pt.adc_offset.shape == (1, n)
    combined = x @ (q + 8).T + pt.adc_offset[0] * lsb
    want = np.clip(np.rint(combined / lsb), 0, 63) * lsb - 8 * x.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(pt.mvm_physical(x), want, rtol=0, atol=1e-3)
