"""Programming the chip (``[programming]``): program-and-verify against its acceptance
probability, devices per weight against the 1/k variance law, per-column calibration and drift
compensation against their definitions, each technique a no-op with noise off, the costs
against hand-counted pulses, and the target overrides that switch them. Statistical bounds are
5 standard errors at the test's sample size."""
from __future__ import annotations

import dataclasses
import math
import subprocess
import sys

import numpy as np
import pytest

from nmc.backends.devices import PCM, RRAM, Switches
from nmc.backends.target import CrossbarCores, Device, Programming, TargetError, load_target, with_fields
from nmc.isa.program import Tile
from nmc.runtime.crossbar import ProgrammedTile, SimOptions

Z = 5.0
ONE = CrossbarCores(count=1, technology="pcm", rows=256, cols=256, crossbars_per_core=1, cell_bits=7,
                    weight_bits=8, input_bits=8, dac_bits=8, adc_bits=24, cols_per_adc=1,
                    weight_scheme="differential")
STEPS = (1 << 23) - 1


def tile(q, device, programming=Programming(), copies=1, seed=0, **options) -> ProgrammedTile:
    t = Tile("t", "w", 0, 0, 0, 0, 8, False, float(STEPS), 8, 0, copies)
    return ProgrammedTile(t, np.asarray(q), ONE, device, SimOptions(seed=seed, **options),
                          np.random.default_rng(seed), programming)


def sigma_prog(g_rel):
    c0, c1, c2 = PCM().prog_coeff
    return c0 + c1 * g_rel + c2 * g_rel ** 2   # µS at g_max = 25


# ----------------------------------------------------------------------------- program-and-verify
def test_verified_cells_lie_within_tolerance_and_pulses_follow_the_acceptance_probability():
    """Exact verify reads (read noise off): every cell that stopped before the last pulse is
    within tolerance; pulses per cell are geometric with p = P(|σ ξ| ≤ tol · g_max)."""
    model = PCM(switches=Switches(read_noise=False))
    n, g_t, tol = 20000, 12.5, 0.02
    state, pulses = model.program_verified(np.full(n, g_t), np.random.default_rng(0), None, tol, 50)
    p = math.erf(tol * 25.0 / (sigma_prog(0.5) * math.sqrt(2)))
    done = pulses < 50
    assert np.all(np.abs(state.g[done] - g_t) <= tol * 25.0)
    mean, sd = 1 / p, math.sqrt(1 - p) / p        # geometric distribution (few reach the cap)
    assert abs(pulses.mean() - mean) < Z * sd / math.sqrt(n)


def test_the_spread_left_shrinks_with_the_tolerance():
    model = PCM()
    g_t = np.full(20000, 12.5)
    single = np.std(model.program(g_t, np.random.default_rng(1)).g - g_t)
    spreads = [np.std(model.program_verified(g_t, np.random.default_rng(1), None, tol, 20)[0].g - g_t)
               for tol in (0.08, 0.04, 0.02)]
    assert single > spreads[0] > spreads[1] > spreads[2]
    assert spreads[2] < single / 2


def test_stuck_rram_cells_stay_stuck_and_spend_every_pulse():
    model = RRAM(stuck_on_rate=0.05)
    g_t = np.full(20000, 10.0)
    state, pulses = model.program_verified(g_t, np.random.default_rng(2), None, 0.02, 7)
    stuck = state.g == model.g_max
    assert abs(stuck.mean() - 0.05) < Z * math.sqrt(0.05 * 0.95 / g_t.size)
    assert np.all(pulses[stuck] == 7)
    assert np.all(np.abs(state.g[pulses < 7] - model.quantize(g_t)[pulses < 7]) <= 0.02 * model.g_max + 1e-9)


def test_write_verify_with_exact_cells_spends_one_pulse_each():
    pt = tile(np.full((4, 9), 60), Device("pcm-joshi2020", programming_noise=False, read_noise=False, drift=False),
              Programming(write_verify=True))
    assert pt.pulses == 4 * 9 * 2 and pt.row_pulses.tolist() == [[1] * 9]


# ----------------------------------------------------------------------------- devices per weight
@pytest.mark.parametrize("copies", [1, 2, 4])
def test_copies_divide_the_programming_variance(copies):
    """Programming noise only: the effective conductance of k copies (their mean) scatters with
    σ²/k around the target (chi-square bound on the sample variance)."""
    q = np.full((64, 64), 64)                     # level 64 of 127 in G+, 0 in G−
    dev = Device("pcm-joshi2020", drift=False, read_noise=False)
    pt = tile(q, dev, copies=copies)
    g_rel = 64 / 127
    levels = 127 / 25.0                           # level units per µS
    want = (sigma_prog(g_rel) ** 2 + sigma_prog(0.0) ** 2) / copies * levels ** 2
    got = np.var(pt.g_eff[0] - q)
    n = q.size
    assert abs(got / want - 1) < Z * math.sqrt(2 / n) + 0.02  # + clipping at 0 of the empty G− cells


def test_copies_average_the_read_variance():
    q = np.full((8, 32), 100)
    dev = Device("pcm-joshi2020", drift=False, programming_noise=False)
    one, four = tile(q, dev, time=3600.0), tile(q, dev, copies=4, time=3600.0)
    np.testing.assert_allclose(four.read_var, one.read_var / 4, rtol=1e-12)


# ----------------------------------------------------------------------------- calibration
def test_column_calibration_removes_static_column_offsets():
    """ADC offsets of 4 LSB per column (static): calibrated, the error left is the rounding's."""
    rng = np.random.default_rng(3)
    q = rng.integers(-127, 128, (16, 64))
    x = rng.integers(0, 256, (200, 64))
    spec_dev = Device("none", adc_offset_lsb=4.0)
    lsb_tile = dataclasses.replace
    raw = ProgrammedTile(Tile("t", "w", 0, 0, 0, 0, 8, False, 127 * 255 * 64 / 4, 8, 0), q,
                         dataclasses.replace(ONE, adc_bits=10), spec_dev, SimOptions(seed=0),
                         np.random.default_rng(0))
    cal = ProgrammedTile(raw.tile, q, raw.spec, spec_dev, SimOptions(seed=0), np.random.default_rng(0),
                         Programming(column_calibration=True, calibration_inputs=256))
    exact = x @ q.T
    lsb = raw.adc()[0]
    before, after = np.abs(raw.mvm(x) - exact).mean(), np.abs(cal.mvm(x) - exact).mean()
    assert before > 2 * lsb and after < 0.5 * lsb < before / 4
    del lsb_tile


def test_column_drift_compensation_is_each_columns_ratio():
    q = np.random.default_rng(4).integers(-127, 128, (6, 40))
    dev = Device("pcm-joshi2020", read_noise=False)
    t = 86400.0
    pt = tile(q, dev, Programming(drift_compensation="column"), time=t)
    ref = sum(pt._conductance(0, p, 0.0).sum(axis=1) for p in (0, 1))
    now = sum(pt._conductance(0, p, t).sum(axis=1) for p in (0, 1))
    np.testing.assert_allclose(pt.column_gain, ref / now, rtol=1e-6)
    assert pt.compensation == 1.0
    off = tile(q, dev, Programming(drift_compensation="none"), time=t)
    assert off.column_gain is None and off.compensation == 1.0


# ----------------------------------------------------------------------------- whole programs
@pytest.fixture(scope="module")
def digits():
    from pathlib import Path

    here = Path(__file__).resolve().parents[1] / "examples"
    data = np.load(here / "digits_test.npz")
    return here / "digits_mlp.onnx", data["x_flat"][:100], data["x_flat"][100:160]


@pytest.mark.parametrize("fields", [{"programming.write_verify": True}, {"programming.column_calibration": True},
                                    {"programming.drift_compensation": "column"}, {"programming.copies": 4}])
def test_with_noise_off_every_technique_leaves_the_outputs_unchanged(digits, fields):
    """Rows enough for 4 copies of every layer (1,024), so copies do not change the tiling."""
    import nmc

    model, cal, x = digits
    base = with_fields(load_target("pcm"), {"cores.crossbar.rows": 1024})
    plain = nmc.compile(model, base, calibration=cal)
    changed = nmc.compile(model, with_fields(base, fields), calibration=cal)
    if "programming.copies" in fields:
        assert {t.copies for t in changed.program.tiles.values()} == {4}
        assert len(changed.program.tiles) == len(plain.program.tiles)
    for t in ("0s", "1d"):
        np.testing.assert_array_equal(changed.run(x, noise=False, time=t)["probabilities"],
                                      plain.run(x, noise=False, time=t)["probabilities"])


def test_copies_stay_within_their_crossbar_budget(digits):
    import nmc

    model, cal, _ = digits
    plain = nmc.compile(model, "pcm", calibration=cal)
    for budget in (1, 3):
        p = nmc.compile(model, with_fields(load_target("pcm"), {"programming.copies": 4,
                                                                "programming.copies_budget": budget}),
                        calibration=cal)
        assert len(p.program.tiles) - len(plain.program.tiles) <= budget
        assert max(t.copies for t in p.program.tiles.values()) > 1   # the first layer's copies are free


def test_programming_costs_match_hand_counts(digits):
    """Exact cells (noise switched off in the device): one pulse per device; under
    program-and-verify also one verify read each; rows program one after another."""
    import nmc

    model, cal, _ = digits
    fields = {"device.programming_noise": False, "device.read_noise": False, "device.drift": False,
              "programming.pulse_ns": 50.0, "programming.pulse_pj": 2.0, "programming.verify_ns": 30.0,
              "programming.verify_pj": 0.5}
    target = with_fields(load_target("pcm"), fields)
    p = nmc.compile(model, target, calibration=cal)
    devices = sum(2 * np.prod(p.program.consts[t.weights].shape) for t in p.program.tiles.values())
    rows = [p.program.consts[t.weights].shape[1] for t in p.program.tiles.values()]
    c = p.programming()
    assert c.devices == devices and c.pulses == devices
    assert c.energy_pj == pytest.approx(devices * 2.0)
    assert c.time_s == pytest.approx(max(rows) * 50e-9) if len(p.program.tiles) == 1 or \
        len({t.core for t in p.program.tiles.values()}) == len(p.program.tiles) else True
    per_core: dict[int, float] = {}
    for t, r in zip(p.program.tiles.values(), rows):
        per_core[t.core] = per_core.get(t.core, 0.0) + r * 50e-9
    assert c.time_s == pytest.approx(max(per_core.values()))
    v = nmc.compile(model, with_fields(target, {"programming.write_verify": True}), calibration=cal).programming()
    assert v.pulses == devices and v.energy_pj == pytest.approx(devices * 2.5)
    assert v.time_s == pytest.approx(c.time_s * 80 / 50)
    k = nmc.compile(model, with_fields(target, {"programming.copies": 2, "cores.crossbar.rows": 1024}),
                    calibration=cal).programming()
    assert k.devices == 2 * devices and k.energy_pj == pytest.approx(2 * devices * 2.0)


def test_calibration_reads_are_charged_as_mvms(digits):
    import nmc
    from nmc.runtime.costs import Cost, CostModel

    model, cal, _ = digits
    target = with_fields(load_target("pcm"), {"programming.column_calibration": True,
                                              "programming.calibration_inputs": 10, "programming.pulse_pj": 0.0})
    p = nmc.compile(model, target, calibration=cal)
    want = 0.0
    for name in p.program.tiles:
        cost = Cost()
        CostModel(p.program, target).mvm(name, cost)
        want += 10 * sum(cost.energy.values())
    c = p.programming(time="1h")
    assert c.energy_pj == pytest.approx(want)
    assert all(layer.calibration_mvms == 10 for layer in c.layers)


# ----------------------------------------------------------------------------- switching them
def test_target_fields_are_checked():
    pcm = load_target("pcm")
    assert pcm.programming == Programming()
    with pytest.raises(TargetError, match="unknown field programming.copes"):
        with_fields(pcm, {"programming.copes": 2})
    with pytest.raises(TargetError, match="drift_compensation"):
        with_fields(pcm, {"programming.drift_compensation": "sometimes"})
    with pytest.raises(TargetError, match="must be positive"):
        with_fields(pcm, {"programming.max_pulses": 0})
    with pytest.raises(TargetError, match="no \\[\\[cores\\]\\] group"):
        with_fields(pcm, {"cores.cam.rows": 8})
    same = with_fields(pcm, {"programming.write_verify": False})
    assert (same.cores, same.device, same.costs, same.name) == (pcm.cores, pcm.device, pcm.costs, pcm.name)


def test_the_command_line_sets_target_fields(tmp_path, digits):
    model, _, _ = digits
    out = tmp_path / "m.nmc"
    ok = subprocess.run([sys.executable, "-m", "nmc.compiler.cli", "compile", str(model), "-t", "pcm",
                         "--set", "programming.write_verify=true", "--set", "programming.copies=2",
                         "-o", str(out), "-q"], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert "program-and-verify" in ok.stdout and "2 devices per weight" in ok.stdout
    import nmc

    assert nmc.load(out).target.programming.write_verify
    bad = subprocess.run([sys.executable, "-m", "nmc.compiler.cli", "compile", str(model), "-t", "pcm",
                          "--set", "programming.tolerance=abc", "-o", str(tmp_path / "b.nmc"), "-q"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "programming.tolerance" in bad.stderr and "Traceback" not in bad.stderr
    assert not (tmp_path / "b.nmc").exists()


@pytest.mark.parametrize("fields", [{}, {"programming.column_calibration": True, "programming.copies": 2},
                                    {"device.programming_noise": False}])
def test_without_verify_the_cost_needs_no_programmed_chip(digits, fields):
    """One pulse per device: the figures from the program alone equal those of a programmed chip."""
    import nmc
    from nmc.runtime.programming import expected_cost

    model, cal, _ = digits
    p = nmc.compile(model, with_fields(load_target("pcm"), fields) if fields else "pcm", calibration=cal)
    assert expected_cost(p.program, p.target) == p.programming(time="1h")
    verified = nmc.compile(model, with_fields(load_target("pcm"), {"programming.write_verify": True}), calibration=cal)
    assert expected_cost(verified.program, verified.target) is None
