"""Statistical device models of analog memory cells (conductances in µS).

Each model answers three questions the runtime asks of a crossbar: what conductance does a
cell get when programmed to a target (programming noise, drawn once per programming), what
is it at time t after programming (drift), and what does one read see (read noise).
Sources are cited beside the constants; see REFERENCE_DATA.md in the shared folder.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Programmed:
    """The state of an array after programming: conductances and per-device drift exponents."""

    g: np.ndarray
    nu: np.ndarray | None = None


@dataclass(frozen=True)
class PCM:
    """Phase-change memory, the statistical model of Nandakumar et al. / Joshi et al.
    (Nat. Commun. 2020) as implemented in IBM aihwkit's ``PCMLikeNoiseModel``."""

    g_max: float = 25.0              # µS (aihwkit PCMLikeNoiseModel)
    t0: float = 20.0                 # s, drift reference time (ibid.)
    t_read: float = 250e-9           # s, read duration for 1/f noise (ibid.)
    prog_coeff: tuple[float, float, float] = (0.26348, 1.9650, -1.1731)  # σ_prog polynomial (ibid.)

    def program(self, g_target: np.ndarray, rng: np.random.Generator) -> Programmed:
        g_rel = np.clip(g_target / self.g_max, 0.0, 1.0)
        c0, c1, c2 = self.prog_coeff
        sigma = (c0 + c1 * g_rel + c2 * g_rel ** 2) * self.g_max / 25.0
        g_prog = np.maximum(g_target + sigma * rng.standard_normal(g_target.shape), 0.0)
        # drift exponent per device, drawn at programming (aihwkit PCMLikeNoiseModel)
        g_rel_c = np.maximum(g_rel, 1e-7)
        mu_nu = np.clip(-0.0155 * np.log(g_rel_c) + 0.0244, 0.049, 0.1)
        sigma_nu = np.clip(-0.0125 * np.log(g_rel_c) - 0.0059, 0.008, 0.045)
        nu = np.abs(mu_nu + sigma_nu * rng.standard_normal(g_target.shape))
        return Programmed(g_prog, nu)

    def drift(self, state: Programmed, t: float) -> np.ndarray:
        """g(t) = g_prog · ((t + t0) / t0)^(−ν)."""
        if t <= 0:
            return state.g
        return state.g * ((t + self.t0) / self.t0) ** (-state.nu)

    def read_sigma(self, g: np.ndarray, t: float) -> np.ndarray:
        """Relative 1/f read noise at time t: Q_s = min(0.0088 / max(g_rel^0.65, 1e-3), 0.2),
        σ = Q_s·sqrt(ln((t + t_read) / (2 t_read)))."""
        t_eff = max(t, self.t_read)  # the formula needs t + t_read ≥ 2 t_read
        g_rel = np.abs(g) / self.g_max
        q_s = np.minimum(0.0088 / np.maximum(g_rel ** 0.65, 1e-3), 0.2)
        return q_s * np.sqrt(np.log((t_eff + self.t_read) / (2 * self.t_read)))

    def read(self, g: np.ndarray, t: float, rng: np.random.Generator) -> np.ndarray:
        """One read: g ← max(g + |g|·σ·ξ, 0)."""
        return np.maximum(g + np.abs(g) * self.read_sigma(g, t) * rng.standard_normal(g.shape), 0.0)


def hermes_pcm() -> PCM:
    """Hardware-fitted variant (IBM HERMES chip, aihwkit ``HermesNoiseModel``):
    g_max 20.7 µS, t0 = 300 s, t_read = 512 ns."""
    return PCM(g_max=20.7, t0=300.0, t_read=512e-9)


# Wan et al., Nature 2022 (NeuRRAM), as fitted in aihwkit ReRamWan2022NoiseModel:
# σ [µS] = c0 + c1 g_rel + ... + c4 g_rel^4, per time after programming, at g_max = 40 µS.
WAN2022_FITS: dict[float, tuple[float, ...]] = {
    1.0: (0.348, 16.030, -43.853, 45.393, -16.815),
    86400.0: (0.701, 22.086, -50.773, 47.095, -16.458),
    172800.0: (0.782, 20.274, -43.507, 37.062, -11.934),
}


@dataclass(frozen=True)
class RRAM:
    """Resistive RAM: programming spread from the NeuRRAM fit (Wan et al. 2022, aihwkit
    ``ReRamWan2022NoiseModel``), a finite number of conductance levels, stuck-at faults."""

    g_max: float = 40.0            # µS, the fit's range (Wan 2022)
    g_min: float = 0.0
    levels: int = 16               # distinct conductances (8–16 shown at array level: Mehonic 2024, Sec. III B)
    stuck_on_rate: float = 0.0     # fraction of cells stuck at g_max (stuck-at faults: MNSIM 2.0)
    stuck_off_rate: float = 0.0    # fraction of cells stuck at g_min
    read_sigma: float = 0.0        # relative read noise per read (device-dependent; 0 = off)

    def quantize(self, g_target: np.ndarray) -> np.ndarray:
        """Snap targets to the nearest of ``levels`` evenly spaced conductances."""
        step = (self.g_max - self.g_min) / (self.levels - 1)
        return self.g_min + np.round((np.clip(g_target, self.g_min, self.g_max) - self.g_min) / step) * step

    def sigma(self, g: np.ndarray, t: float) -> np.ndarray:
        """Programming spread σ(g) at the fitted time nearest to ``t`` (seconds)."""
        t_fit = min(WAN2022_FITS, key=lambda k: abs(np.log(max(t, 1.0)) - np.log(k)))
        coeffs = WAN2022_FITS[t_fit]
        g_rel = np.clip(g / self.g_max, 0.0, 1.0)
        return np.maximum(sum(c * g_rel ** i for i, c in enumerate(coeffs)), 0.0)

    def program(self, g_target: np.ndarray, rng: np.random.Generator, t: float = 1.0) -> Programmed:
        g = self.quantize(g_target)
        g = np.clip(g + self.sigma(g, t) * rng.standard_normal(g.shape), 0.0, None)
        u = rng.random(g.shape)
        g = np.where(u < self.stuck_on_rate, self.g_max, g)
        g = np.where((u >= self.stuck_on_rate) & (u < self.stuck_on_rate + self.stuck_off_rate), self.g_min, g)
        return Programmed(g)

    def read(self, g: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if self.read_sigma == 0:
            return g
        return np.maximum(g + np.abs(g) * self.read_sigma * rng.standard_normal(g.shape), 0.0)
