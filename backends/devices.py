"""Device technologies of analog memory cells (conductances in µS): one class each, in a
registry keyed by the ``[device] model`` name of a target file.

Each model answers what the runtime asks of a cell: what conductance it gets when programmed to
a target (programming noise, drawn once per programming), what it is at time t after
programming (drift), how much one read scatters (read noise) and, for analog-CAM cells, how far
a programmed bound moves. The target validator, the crossbar and CAM simulators and the reports
ask a model (``device_model(target.device)``) instead of comparing names, so a new technology
is one class here (``@register("name")``) and one preset in ``backends/targets/``.
Sources are cited beside the constants; see REFERENCE_DATA.md in the shared folder.
"""
from __future__ import annotations

import dataclasses
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, ClassVar, Protocol

import numpy as np

if TYPE_CHECKING:
    from nmc.backends.target import Device

# [device] fields that set a model's parameter of the same name (when the model has one)
DEVICE_PARAMETERS = ("g_max", "levels", "stuck_on_rate", "stuck_off_rate", "read_noise_rel")


@dataclass(frozen=True)
class Programmed:
    """The state of an array after programming: conductances and per-device drift exponents."""

    g: np.ndarray
    nu: np.ndarray | None = None


@dataclass(frozen=True)
class Switches:
    """The target's on/off switches of each effect (``[device] programming_noise``, ``drift``,
    ``read_noise``, ``stuck_at``); a model honours them itself, each independently of the others."""

    programming_noise: bool = True
    drift: bool = True
    read_noise: bool = True
    stuck_at: bool = True


class RunConditions(Protocol):
    """What a model may read of a run (``runtime.crossbar.SimOptions`` is one)."""

    time: float  # s since programming


@dataclass(frozen=True)
class DeviceModel(ABC):
    """A device technology. A subclass is a frozen dataclass whose fields are the technology's
    parameters with their published defaults: ``from_device`` sets those named like a
    ``[device]`` field (``DEVICE_PARAMETERS``) from the target when given there, and ``switches``
    from its on/off switches. Conductances are in µS, ``g_max`` the largest a cell is programmed
    to (a cell level ℓ of a ``c``-bit slice is programmed to ℓ·g_max/(2^c − 1)).

    The properties say what the technology does, for the simulator and the reports:
    ``ideal`` (cells hold their targets exactly: the simulator skips the model), ``drifts``
    (conductances change after programming: runtime drift compensation applies),
    ``time_dependent`` (the time since programming changes a run, e.g. read noise that grows
    with time; reports sweep times) and ``stochastic`` (two programmings or reads differ;
    reports run several trials)."""

    name: ClassVar[str] = ""  # set by @register
    ideal: ClassVar[bool] = False
    g_max: float
    switches: Switches = field(default=Switches(), kw_only=True)

    @classmethod
    def from_device(cls, device: Device) -> DeviceModel:
        """The model of a target's ``[device]`` table."""
        params = {f.name for f in dataclasses.fields(cls) if f.init}
        given = {key: getattr(device, key) for key in DEVICE_PARAMETERS
                 if key in params and getattr(device, key) is not None}
        return cls(**given, switches=Switches(device.programming_noise, device.drift, device.read_noise,
                                              device.stuck_at))

    @abstractmethod
    def program(self, g_target: np.ndarray, rng: np.random.Generator,
                options: RunConditions | None = None) -> Programmed:
        """Cells programmed to ``g_target`` (µS), drawing from ``rng``; ``options.time`` is the
        time of the run, for models whose programmed spread depends on it."""

    def program_verified(self, g_target: np.ndarray, rng: np.random.Generator, options: RunConditions | None,
                         tolerance: float, max_pulses: int) -> tuple[Programmed, np.ndarray]:
        """Iterative program-and-verify: program every cell, read it back (with the read noise of
        a read ``VERIFY_TIME`` after the pulse), and program again the cells farther than
        ``tolerance`` · g_max from their targets, at most ``max_pulses`` times; then let the cells
        settle until the run's time (``settle``). Returns the state and the pulses per cell.
        The spread left is that of the accepted attempts (bounded by the tolerance and the verify
        read's noise), so it shrinks with tighter tolerances and more pulses, as measured on PCM
        (Papandreou et al., ISCAS 2011) and RRAM arrays (Wan et al., Nature 2022, Methods)."""
        shape = g_target.shape
        flat = np.asarray(g_target, dtype=np.float64).reshape(-1)
        g = np.empty_like(flat)
        nu = None
        pulses = np.zeros(flat.shape, np.int32)
        todo = np.arange(flat.size)
        for _ in range(max_pulses):
            state = self.program(flat[todo], rng, _AT_VERIFY)
            g[todo] = state.g
            if state.nu is not None:
                nu = np.zeros_like(flat) if nu is None else nu
                nu[todo] = state.nu
            pulses[todo] += 1
            read = self.verify_read(state, rng)
            todo = todo[np.abs(read - flat[todo]) > tolerance * self.g_max]
            if not todo.size:
                break
        state = Programmed(g.reshape(shape), None if nu is None else nu.reshape(shape))
        return self.settle(state, g_target, rng, options), pulses.reshape(shape)

    def verify_read(self, state: Programmed, rng: np.random.Generator) -> np.ndarray:
        """One read of freshly programmed cells, as the verify step sees them."""
        rel = self.read_sigma(state, VERIFY_TIME)
        g = self.conductance(state, VERIFY_TIME)
        return g if rel is None else g + np.abs(g) * rel * rng.standard_normal(g.shape)

    def settle(self, state: Programmed, g_target: np.ndarray, rng: np.random.Generator,
               options: RunConditions | None) -> Programmed:
        """What happens to verified cells between programming and the run, beyond drift (which
        ``conductance`` applies): nothing, unless a model says otherwise."""
        return state

    def conductance(self, state: Programmed, t: float) -> np.ndarray:
        """Conductances (µS) at ``t`` seconds after programming."""
        return state.g

    def read_sigma(self, state: Programmed, t: float) -> np.ndarray | None:
        """Per-cell standard deviation of one read at time ``t``, relative to the cell's
        conductance then (σ / |g(t)|), or None when reads are exact."""
        return None

    def read_sigma_at(self, state: Programmed, t: float, g: np.ndarray) -> np.ndarray | None:
        """``read_sigma`` for a caller that has the conductances at ``t`` already
        (``g = conductance(state, t)``): a model whose spread depends on them need not drift
        again. By default ``read_sigma``."""
        return self.read_sigma(state, t)

    def cam_bound_sigma(self, cell_bits: int) -> Callable[[np.ndarray], np.ndarray] | None:
        """For analog-CAM cells of ``cell_bits``: code → σ of the programmed bound in code
        levels, or None when bounds are programmed exactly."""
        return None

    @property
    def drifts(self) -> bool:
        return False

    @property
    def time_dependent(self) -> bool:
        return self.drifts

    @property
    def stochastic(self) -> bool:
        return True


VERIFY_TIME = 1e-6  # s: a verify read follows its pulse within a microsecond (assumption)


@dataclass(frozen=True)
class _Verify:
    time: float = 1.0  # programming attempts are checked right away (RRAM's fit nearest: 1 s)


_AT_VERIFY = _Verify()

MODELS: dict[str, type[DeviceModel]] = {}


def register(name: str):
    """Class decorator: make ``name`` (a target file's ``[device] model``) mean this model."""

    def add(cls: type[DeviceModel]) -> type[DeviceModel]:
        if name in MODELS and MODELS[name] is not cls:
            raise ValueError(f"device model {name!r} is already registered ({MODELS[name].__name__})")
        cls.name = name
        MODELS[name] = cls
        return cls

    return add


def unregister(name: str) -> None:
    """Forget a model (for tests and plugins that replace one)."""
    MODELS.pop(name, None)


def model_names() -> list[str]:
    """The registered ``[device] model`` names, in registration order."""
    return list(MODELS)


def device_model(device: Device) -> DeviceModel:
    """The registered model a target's ``[device]`` table names, with its parameters."""
    cls = MODELS.get(device.model)
    if cls is None:
        from nmc.backends.target import TargetError

        raise TargetError(f"device.model = {device.model!r}; known: {', '.join(model_names())}")
    return cls.from_device(device)


@register("none")
@dataclass(frozen=True)
class Ideal(DeviceModel):
    """Exact cells: every conductance equals its target at all times, reads are exact."""

    g_max: float = 1.0
    ideal: ClassVar[bool] = True

    def program(self, g_target, rng, options=None) -> Programmed:
        return Programmed(g_target)

    @property
    def stochastic(self) -> bool:
        return False


@register("sram-analog")
@dataclass(frozen=True)
class SramAnalog(Ideal):
    """Charge-domain SRAM (Jia et al., JSSC 2020): bit cells hold their values exactly; the
    array's analog error is the target's ADC noise (``[device] adc_noise_lsb``)."""


@register("pcm-joshi2020")
@dataclass(frozen=True)
class PCM(DeviceModel):
    """Phase-change memory, the statistical model of Nandakumar et al. / Joshi et al.
    (Nat. Commun. 2020) as implemented in IBM aihwkit's ``PCMLikeNoiseModel``. Read noise
    grows with the time since programming, so the model is time-dependent even without drift.
    With programming noise switched off the noise is still drawn (and discarded), so a seed
    programs the same drift exponents either way."""

    g_max: float = 25.0              # µS (aihwkit PCMLikeNoiseModel)
    t0: float = 20.0                 # s, drift reference time (ibid.)
    t_read: float = 250e-9           # s, read duration for 1/f noise (ibid.)
    prog_coeff: tuple[float, float, float] = (0.26348, 1.9650, -1.1731)  # σ_prog polynomial (ibid.)

    def program(self, g_target: np.ndarray, rng: np.random.Generator,
                options: RunConditions | None = None) -> Programmed:
        """σ_prog = (c0 + c1·g_rel + c2·g_rel²)·g_max/25, g = max(g_T + σ_prog·ξ, 0), and a
        drift exponent ν = |μ_ν + σ_ν·ξ| per device."""
        g_rel = np.clip(g_target / self.g_max, 0.0, 1.0)
        c0, c1, c2 = self.prog_coeff
        sigma = (c0 + c1 * g_rel + c2 * g_rel ** 2) * self.g_max / 25.0
        g_prog = np.maximum(g_target + sigma * rng.standard_normal(g_target.shape), 0.0)
        # drift exponent per device, drawn at programming (aihwkit PCMLikeNoiseModel)
        log_g = np.log(np.maximum(g_rel, 1e-7))
        mu_nu = np.clip(-0.0155 * log_g + 0.0244, 0.049, 0.1)
        sigma_nu = np.clip(-0.0125 * log_g - 0.0059, 0.008, 0.045)
        nu = np.abs(mu_nu + sigma_nu * rng.standard_normal(g_target.shape))
        return Programmed(g_prog if self.switches.programming_noise else g_target, nu)

    def drift(self, state: Programmed, t: float) -> np.ndarray:
        """g(t) = g_prog · ((t + t0) / t0)^(−ν)."""
        if t <= 0:
            return state.g
        # exp(−ν·ln r) rather than r ** −ν: one exp per device, 3.4× faster than pow with an array exponent
        return state.g * np.exp(state.nu * -math.log((t + self.t0) / self.t0))

    def conductance(self, state: Programmed, t: float) -> np.ndarray:
        return self.drift(state, t) if self.switches.drift else state.g

    def read_spread(self, g: np.ndarray, t: float) -> np.ndarray:
        """Relative 1/f read noise at time t: Q_s = min(0.0088 / max(g_rel^0.65, 1e-3), 0.2),
        σ = Q_s·sqrt(ln((t + t_read) / (2 t_read)))."""
        t_eff = max(t, self.t_read)  # the formula needs t + t_read ≥ 2 t_read
        g_rel = np.abs(g) / self.g_max
        q_s = np.minimum(0.0088 / np.maximum(g_rel ** 0.65, 1e-3), 0.2)
        return q_s * np.sqrt(np.log((t_eff + self.t_read) / (2 * self.t_read)))

    def read_sigma(self, state: Programmed, t: float) -> np.ndarray | None:
        return self.read_sigma_at(state, t, self.conductance(state, t))

    def read_sigma_at(self, state: Programmed, t: float, g: np.ndarray) -> np.ndarray | None:
        if not self.switches.read_noise:
            return None
        return self.read_spread(g, t)

    def read(self, g: np.ndarray, t: float, rng: np.random.Generator) -> np.ndarray:
        """One read: g ← max(g + |g|·σ·ξ, 0)."""
        return np.maximum(g + np.abs(g) * self.read_spread(g, t) * rng.standard_normal(g.shape), 0.0)

    @property
    def drifts(self) -> bool:
        return self.switches.drift

    @property
    def time_dependent(self) -> bool:
        return True


@register("pcm-hermes")
@dataclass(frozen=True)
class HermesPCM(PCM):
    """Hardware-fitted variant (IBM HERMES chip, aihwkit ``HermesNoiseModel``):
    g_max 20.7 µS, t0 = 300 s, t_read = 512 ns."""

    g_max: float = 20.7
    t0: float = 300.0
    t_read: float = 512e-9


def hermes_pcm() -> PCM:
    return HermesPCM()


# Wan et al., Nature 2022 (NeuRRAM), as fitted in aihwkit ReRamWan2022NoiseModel:
# σ [µS] = c0 + c1 g_rel + ... + c4 g_rel^4, per time after programming, at g_max = 40 µS.
WAN2022_FITS: dict[float, tuple[float, ...]] = {
    1.0: (0.348, 16.030, -43.853, 45.393, -16.815),
    86400.0: (0.701, 22.086, -50.773, 47.095, -16.458),
    172800.0: (0.782, 20.274, -43.507, 37.062, -11.934),
}


@register("rram-wan2022")
@dataclass(frozen=True)
class RRAM(DeviceModel):
    """Resistive RAM: programming spread from the NeuRRAM fit (Wan et al. 2022, aihwkit
    ``ReRamWan2022NoiseModel``) at the fitted time nearest the run's, a finite number of
    conductance levels, stuck-at faults, relative read noise. The spread grows with the time
    since programming (time-dependent) but conductances do not drift on average.
    Stuck-at faults have their own switch (``stuck_at``): with programming noise off, healthy
    cells get their level exactly and stuck cells stay stuck. The spread is drawn either way
    (and discarded when off), so a seed sticks the same cells with and without it."""

    g_max: float = 40.0            # µS, the fit's range (Wan 2022)
    g_min: float = 0.0
    levels: int = 16               # distinct conductances (8–16 shown at array level: Mehonic 2024, Sec. III B)
    stuck_on_rate: float = 0.0     # fraction of cells stuck at g_max (stuck-at faults: MNSIM 2.0)
    stuck_off_rate: float = 0.0    # fraction of cells stuck at g_min
    read_noise_rel: float = 0.0    # relative read noise per read (device-dependent; 0 = off)

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

    def program(self, g_target: np.ndarray, rng: np.random.Generator,
                options: RunConditions | None = None) -> Programmed:
        """Snap to a level, add σ(g, t)·ξ (t = the run's time, at least 1 s), then stuck cells;
        each step only when its switch is on."""
        g = self.quantize(g_target)
        sticks = self.switches.stuck_at and self.stuck_on_rate + self.stuck_off_rate > 0
        if not (self.switches.programming_noise or sticks):
            return Programmed(g)
        t = max(options.time, 1.0) if options is not None else 1.0
        spread = self.sigma(g, t) * rng.standard_normal(g.shape)  # drawn either way: same stuck cells per seed
        if self.switches.programming_noise:
            g = np.clip(g + spread, 0.0, None)
        u = rng.random(g.shape)
        if sticks:
            g = np.where(u < self.stuck_on_rate, self.g_max, g)
            g = np.where((u >= self.stuck_on_rate) & (u < self.stuck_on_rate + self.stuck_off_rate), self.g_min, g)
        return Programmed(g)

    def program_verified(self, g_target, rng, options, tolerance, max_pulses):
        """Program-and-verify of the healthy cells; a stuck cell stays stuck whatever the pulses
        (it spends them all unless its stuck value is within the tolerance)."""
        sticks = self.switches.stuck_at and self.stuck_on_rate + self.stuck_off_rate > 0
        u = rng.random(g_target.shape)
        healthy = dataclasses.replace(self, stuck_on_rate=0.0, stuck_off_rate=0.0)
        # verified against the level a cell can hold
        state, pulses = DeviceModel.program_verified(healthy, self.quantize(g_target), rng, options, tolerance,
                                                     max_pulses)
        if not sticks:
            return state, pulses
        on = u < self.stuck_on_rate
        off = (u >= self.stuck_on_rate) & (u < self.stuck_on_rate + self.stuck_off_rate)
        g = np.where(on, self.g_max, np.where(off, self.g_min, state.g))
        stuck_ok = np.abs(g - self.quantize(g_target)) <= tolerance * self.g_max
        pulses = np.where((on | off) & ~stuck_ok, max_pulses, np.where(on | off, 1, pulses)).astype(np.int32)
        return Programmed(g), pulses

    def settle(self, state, g_target, rng, options):
        """Relaxation after verification: the NeuRRAM spread grows from its 1-s fit to the run's
        time; the growth (σ(t)² − σ(1 s)², in quadrature) is drawn on top of the verified error."""
        t = max(options.time, 1.0) if options is not None else 1.0
        if not self.switches.programming_noise or t <= 1.0:
            return state
        g = self.quantize(g_target)
        grow = np.sqrt(np.maximum(self.sigma(g, t) ** 2 - self.sigma(g, 1.0) ** 2, 0.0))
        return Programmed(np.clip(state.g + grow * rng.standard_normal(g.shape), 0.0, None))

    def read_sigma(self, state: Programmed, t: float) -> np.ndarray | None:
        if not self.switches.read_noise or self.read_noise_rel <= 0:
            return None
        return np.full(state.g.shape, self.read_noise_rel)

    def read(self, g: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if self.read_noise_rel == 0:
            return g
        return np.maximum(g + np.abs(g) * self.read_noise_rel * rng.standard_normal(g.shape), 0.0)

    def cam_bound_sigma(self, cell_bits: int) -> Callable[[np.ndarray], np.ndarray] | None:
        """The NeuRRAM spread at 1 s of a bound's conductance, a cell of ``cell_bits`` mapping
        its levels evenly onto [0, g_max]."""
        if not self.switches.programming_noise:
            return None
        steps = (1 << cell_bits) - 1
        step = self.g_max / steps

        def sigma(code: np.ndarray) -> np.ndarray:
            level = np.clip(code % (steps + 1), 0, steps)
            return self.sigma(level * step, 1.0) / step

        return sigma

    @property
    def time_dependent(self) -> bool:
        return True
