"""Energy across process nodes and supply voltages: digital logic and SRAM by the fits below, ADCs
by the supply alone (``adc_supply_factor``).

Stillmaker and Baas, "Scaling equations for the accurate prediction of CMOS device performance
from 180 nm to 7 nm", Integration, the VLSI Journal 58, 74–81 (2017), fit the energy per
operation of each node as a polynomial in the supply voltage, from HSpice simulations of PTM
(and, below 20 nm, ITRS-derived) models: energy factor = e2·V² + e1·V + e0. Energy at node b
and voltage v is the energy at node a and voltage u times factor_b(v) / factor_a(u). The table
holds their high-performance (HP) coefficients below 65 nm (the paper's Table 5; its
corrigendum's worked example uses the HP 32-nm and 65-nm rows, which this table matches).

Classical CV² scaling, which the paper shows wrong by up to 83× in the deep-submicron era,
is not used.
"""
from __future__ import annotations

import math

from nmc.isa.errors import NmcError

# node (nm) -> (e2, e1, e0): energy factor = e2·V² + e1·V + e0 (Stillmaker & Baas 2017, HP below 65 nm)
ENERGY_FACTOR = {
    180: (0.0, 24.64, -17.98),
    130: (7.171, -6.709, 2.904),
    90: (4.762, -4.781, 2.092),
    65: (3.755, -4.398, 1.975),
    45: (1.018, -0.3107, 0.1539),
    32: (0.8367, -0.4341, 0.1701),
    20: (0.373, -0.1582, 0.04104),
    16: (0.2958, -0.1241, 0.03024),
    14: (0.2363, -0.09675, 0.02239),
    10: (0.2068, -0.09311, 0.02375),
    7: (0.1776, -0.09097, 0.02447),
}
NODES = tuple(sorted(ENERGY_FACTOR))

# Horowitz (ISSCC 2014) gives his 45-nm energies at 0.9 V: the node and supply of the digital
# defaults in backends/costs.py that cite him
HOROWITZ = (45, 0.9)
# ISAAC's components (Shafiee et al., ISCA 2016: 32 nm; no supply stated, 0.9 V assumed — the node's
# nominal supply) behind the defaults of costs.adc_walden_fj, dac_pj and shift_add_pj
ISAAC = (32, 0.9)
# Horowitz (ISSCC 2014, 45 nm): a 64-bit read of an 8-KB SRAM takes 10 pJ, per bit
HOROWITZ_SRAM_PJ_PER_BIT = 10.0 / 64


class ScalingError(NmcError):
    """A node or supply the scaling equations do not cover."""


def energy_factor(node_nm: float, supply_v: float) -> float:
    """The fitted energy factor of ``node_nm`` at ``supply_v`` volts. A node between two of
    ``NODES`` (22 nm, 28 nm) is interpolated geometrically between its neighbours at the same
    voltage (log factor linear in log node: an interpolation of the fits, not a fit)."""
    if not NODES[0] <= node_nm <= NODES[-1]:
        raise ScalingError(f"node {node_nm:g} nm: the scaling equations cover {NODES[0]}–{NODES[-1]} nm")
    if not 0.3 <= supply_v <= 2.0:
        raise ScalingError(f"supply {supply_v:g} V is outside the 0.3–2.0 V the scaling equations were fitted over")
    if node_nm in ENERGY_FACTOR:
        return _fit(int(node_nm), supply_v)
    lo = max(n for n in NODES if n < node_nm)
    hi = min(n for n in NODES if n > node_nm)
    w = math.log(node_nm / lo) / math.log(hi / lo)
    return math.exp((1 - w) * math.log(_fit(lo, supply_v)) + w * math.log(_fit(hi, supply_v)))


def _fit(node: int, supply_v: float) -> float:
    e2, e1, e0 = ENERGY_FACTOR[node]
    factor = e2 * supply_v ** 2 + e1 * supply_v + e0
    if factor <= 0:
        raise ScalingError(f"supply {supply_v:g} V is below where the {node}-nm fit stays positive")
    if e2 > 0 and supply_v < -e1 / (2 * e2):
        raise ScalingError(f"supply {supply_v:g} V is below {-e1 / (2 * e2):.3g} V, where the {node}-nm fit's "
                           "energy stops falling with the supply (outside the voltages it was fitted over)")
    return factor


def scale_energy(pj: float, source: tuple[float, float], target: tuple[float, float]) -> float:
    """``pj`` measured at ``source`` (node nm, supply V), at ``target`` (node nm, supply V)."""
    return pj * energy_factor(*target) / energy_factor(*source)


# An ADC's conversion energy is C·V² of capacitors sized for matching and noise, which do not shrink
# with the node the way logic does (Murmann's ADC survey: at low SNDR "the energy plateaus at some
# CV²-type energy level"). Three published 8-bit SAR column ADCs agree within 30 % once scaled by V²
# alone: ISAAC's 1.67 pJ (32 nm), Jia et al.'s 1.79 pJ (65 nm, 0.85 V; 3.56 pJ at 1.2 V — V² again)
# and the C-2C macro's ~1.4 pJ (22 nm, 0.7 V; 34 % of its energy); logic scaling would put them 4× apart.
ADC_SUPPLY_V = ISAAC[1]


def adc_supply_factor(supply_v: float) -> float:
    """ISAAC's ADC energy at ``supply_v`` relative to its own: (V / 0.9 V)²."""
    if not 0.3 <= supply_v <= 2.0:
        raise ScalingError(f"supply {supply_v:g} V is outside the 0.3–2.0 V the scaling equations were fitted over")
    return (supply_v / ADC_SUPPLY_V) ** 2
