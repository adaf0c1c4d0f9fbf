"""Device models reproduce the published statistics they cite (REFERENCE_DATA.md)."""
from __future__ import annotations

import numpy as np

from nmc.backends.devices import PCM, RRAM, WAN2022_FITS, hermes_pcm


def test_pcm_programming_noise_follows_the_polynomial():
    pcm = PCM()
    rng = np.random.default_rng(0)
    for g_rel in (0.1, 0.5, 0.9):
        g = np.full(200_000, g_rel * pcm.g_max)
        state = pcm.program(g, rng)
        want = 0.26348 + 1.9650 * g_rel - 1.1731 * g_rel ** 2
        assert abs(state.g.std() / want - 1) < 0.02
        assert abs(state.g.mean() - g[0]) < 0.02


def test_pcm_drift_exponent_statistics_and_decay():
    pcm = PCM()
    rng = np.random.default_rng(1)
    g_rel = 0.5
    state = pcm.program(np.full(200_000, g_rel * pcm.g_max), rng)
    mu = np.clip(-0.0155 * np.log(g_rel) + 0.0244, 0.049, 0.1)
    assert abs(np.median(state.nu) - mu) < 0.003
    day = 86400.0
    ratio = pcm.drift(state, day) / state.g
    np.testing.assert_allclose(ratio, ((day + 20.0) / 20.0) ** (-state.nu))
    assert 0.4 < ratio.mean() < 0.7  # about 40 % lost after a day at ν ≈ 0.035–0.07
    np.testing.assert_array_equal(pcm.drift(state, 0.0), state.g)


def test_pcm_read_noise_grows_with_time():
    pcm = PCM()
    rng = np.random.default_rng(2)
    g = np.full(100_000, 0.5 * pcm.g_max)
    spread_1s = (pcm.read(g, 1.0, rng) - g).std()
    spread_1y = (pcm.read(g, 3.15e7, rng) - g).std()
    q_s = min(0.0088 / 0.5 ** 0.65, 0.2)
    assert abs(spread_1s / (g[0] * q_s * np.sqrt(np.log((1.0 + 250e-9) / 500e-9))) - 1) < 0.02
    assert spread_1y > spread_1s


def test_hermes_variant_constants():
    h = hermes_pcm()
    assert (h.g_max, h.t0, h.t_read) == (20.7, 300.0, 512e-9)


def test_rram_levels_spread_and_stuck_cells():
    rram = RRAM(levels=9, stuck_on_rate=0.01, stuck_off_rate=0.02)
    targets = np.linspace(0, 40, 1000)
    assert len(np.unique(rram.quantize(targets))) == 9  # 20 µS is a level
    rng = np.random.default_rng(3)
    g = np.full(200_000, 20.0)
    state = rram.program(g, rng)
    assert abs((state.g == 40.0).mean() - 0.01) < 0.002
    assert abs((state.g == 0.0).mean() - 0.02) < 0.002
    healthy = state.g[(state.g != 40.0) & (state.g != 0.0)]
    c = WAN2022_FITS[1.0]
    want = sum(ci * 0.5 ** i for i, ci in enumerate(c))
    assert abs(healthy.std() / want - 1) < 0.03
    later = RRAM().sigma(np.array([20.0]), 86400.0)[0]
    assert later == sum(ci * 0.5 ** i for i, ci in enumerate(WAN2022_FITS[86400.0]))
