"""Component costs: latency, energy and area figures a target's chip is made of.

Every default cites its source (REFERENCE_DATA.md in the shared folder); a target file
overrides any of them in its ``[costs]`` table. Units are in the field names.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields

from nmc.backends.components import level_dac_pj


@dataclass(frozen=True)
class Costs:
    # crossbar array -------------------------------------------------------------
    array_read_ns: float = 100.0          # one analog read of a whole array (PUMA: 128×128 MVM 100 ns)
    array_cell_read_pj: float = 0.03      # V²·G·t: 0.55 V, 10 ns, 100 kΩ → 30 fJ per cell and read
    # with read_v > 0 a cell's read energy is V²·G·t from the read voltage, the cell's mean conductance
    # (cell_g_us; 0: half the device model's g_max, the mean of uniformly spread levels) and the pulse
    # (pulse-width inputs: the mean pulse of uniformly spread input levels, dac_ns_per_level·(2^b − 1)/2;
    # otherwise the read, array_read_ns), instead of array_cell_read_pj
    read_v: float = 0.0
    cell_g_us: float = 0.0
    dac_pj: float = 0.0039                # ISAAC 1-bit DAC 3.9 µW, for 1 ns (a b-bit level DAC: 2^b − 1 of it)
    dac_ns_per_level: float = 0.0         # pulse-width inputs: a read lasts this much longer per input level
    # one ADC conversion of b bits takes adc_ns + adc_ns_per_bit·b + adc_ns_per_level·2^b (flash: a fixed
    # time; SAR: per bit; ramp, counting and oscillator ADCs: per level) and costs
    # adc_pj + 2^b·(adc_pj_per_level + adc_walden_fj·1e-3) + adc_survey_factor × the survey-best energy
    # at b bits and that rate (adc_survey_pj: the thermal-noise bound, 4× per bit)
    adc_ns: float = 0.78                  # ISAAC 8-bit SAR ADC at 1.28 GS/s
    adc_ns_per_bit: float = 0.0
    adc_ns_per_level: float = 0.0
    adc_pj: float = 0.0
    adc_pj_per_level: float = 0.0
    # Walden figure of merit (energy per conversion step, 2× per bit): ISAAC's 8-bit SAR, 1.67 pJ / 2^8
    # (32 nm); C·V², so [chip] supply_v scales the default by V² (backends/scaling.adc_supply_factor)
    adc_walden_fj: float = 6.52
    adc_survey_factor: float = 0.0
    adc_area_um2: float = 1200.0          # ISAAC 8-bit SAR ADC
    shift_add_pj: float = 0.021           # ISAAC shift-and-add, per operation
    array_area_um2_per_cell: float = 0.0  # crossbar cell area (0: counted inside the core area)
    # digital CIM (sram-digital): per bit-serial cycle, a gate per weight bit, an adder tree per output
    # and a shift-and-add accumulator (backends/components.py: digital_cim_read_pj)
    digital_fa_pj: float = 0.0031         # Horowitz 45 nm: 32-bit add 0.1 pJ, per full adder (1/32 of it)
    digital_gate_pj: float = 0.00044      # a NOR2 product gate: 4 of a mirror full adder's 28 transistors (assumption)
    # vector units -------------------------------------------------------------------
    vector_lanes: int = 32                # elements per cycle (an assumption of this model)
    vector_op_pj: float = 0.9             # Horowitz 45 nm: FP32 add 0.9 pJ
    vector_mul_pj: float = 3.7            # Horowitz 45 nm: FP32 multiply 3.7 pJ
    vector_int_op_pj: float = 0.1         # Horowitz 45 nm: 32-bit integer add 0.1 pJ
    vector_special_cycles: int = 4        # exp, erf, tanh, sqrt, div: cycles per lane-op (assumption)
    # memories -----------------------------------------------------------------------
    buffer_pj_per_bit: float = 0.08       # ISAAC eDRAM (64 KB), per bit accessed
    buffer_bytes_per_cycle: int = 64      # one 512-bit port per core buffer (assumption)
    # network on chip ---------------------------------------------------------------
    noc_pj_per_bit_hop: float = 0.135     # ISAAC router 0.081 + bus 0.054 pJ/bit
    noc_bits_per_cycle: int = 256         # link width (assumption)
    noc_hop_cycles: int = 2               # router + link traversal per hop (assumption)
    # chip-to-chip links (systems of several chips) ------------------------------------
    # ISAAC's HyperTransport links (Shafiee et al., ISCA 2016): 4 links of 6.4 GB/s for 10.4 W,
    # i.e. 10.4 W / (4 × 51.2 Gb/s) = 50.8 pJ/bit; latency per message an assumption
    link_gb_per_s: float = 6.4
    link_pj_per_bit: float = 50.8
    link_latency_ns: float = 100.0
    # off-chip I/O -------------------------------------------------------------------
    io_pj_per_bit: float = 20.0           # Horowitz: DRAM ~640 pJ per 32-bit word
    io_bytes_per_cycle: int = 32          # (assumption)
    # area -------------------------------------------------------------------------------
    crossbar_core_area_mm2: float = 0.0   # array + periphery other than ADCs, per crossbar
    vector_core_area_mm2: float = 0.5     # (assumption)
    buffer_area_mm2: float = 0.1          # per core (assumption)
    io_area_mm2: float = 0.0              # off-chip links, once per chip (0: not modelled)

    def read_ns(self, input_bits_per_read: int) -> float:
        """One analog read: settling plus, for pulse-width inputs, one step per input level."""
        return self.array_read_ns + self.dac_ns_per_level * ((1 << input_bits_per_read) - 1)

    def dac_read_pj(self, input_bits_per_read: int) -> float:
        """One row's DAC in one read: ``dac_pj`` for a pulse driver (pulse-width inputs, whose
        figure covers the pulse) or a 1-bit DAC; a b-bit level DAC switches 2^b − 1 units of it."""
        if self.dac_ns_per_level > 0:
            return self.dac_pj
        return level_dac_pj(self.dac_pj, input_bits_per_read)

    def cell_read_pj(self, input_bits_per_read: int, g_us: float) -> float:
        """Energy of one cell in one read: V²·G·t when ``read_v`` is set (G in µS, t in ns:
        1e-3 pJ per V²·µS·ns), else ``array_cell_read_pj``."""
        if self.read_v <= 0:
            return self.array_cell_read_pj
        if self.dac_ns_per_level > 0:
            pulse_ns = self.dac_ns_per_level * ((1 << input_bits_per_read) - 1) / 2
        else:
            pulse_ns = self.array_read_ns
        return self.read_v ** 2 * g_us * pulse_ns * 1e-3

    def adc_conversion_ns(self, bits: int) -> float:
        return self.adc_ns + self.adc_ns_per_bit * bits + self.adc_ns_per_level * (1 << bits)

    def adc_conversion_pj(self, bits: int) -> float:
        ns = self.adc_conversion_ns(bits)
        survey = self.adc_survey_factor * adc_survey_pj(bits, 1e9 / ns if ns > 0 else 1e9)
        return self.adc_pj + (1 << bits) * (self.adc_pj_per_level + self.adc_walden_fj * 1e-3) + survey


def adc_survey_pj(bits: int, rate_hz: float) -> float:
    """Energy of one conversion by the best ADCs of Murmann's survey (as Accelergy's ADC plug-in):
    E = 1 / (2·10^((FOM_S − SNDR)/10)), SNDR = 6.02·b + 1.76 dB, FOM_S = min(302.74 − 6.461·ln f_s,
    180.14) dB. At 1 GS/s: 4 b 2.5 fJ, 6 b 40 fJ, 8 b 0.64 pJ, 10 b 10 pJ."""
    fom = min(302.74 - 6.461 * math.log(rate_hz), 180.14)
    sndr = 6.02 * bits + 1.76
    return 1e12 / (2 * 10 ** ((fom - sndr) / 10))


COST_FIELDS = {f.name: f.type for f in fields(Costs)}
