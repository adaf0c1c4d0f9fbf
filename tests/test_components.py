"""Component models (backends/components.py) against values worked out by hand, and a target's
fields moving the costs the documented way."""
from __future__ import annotations

import dataclasses

import pytest

from nmc.backends.components import (adder_chain_full_adders, adder_tree_full_adders, digital_cim_read_pj,
                                     level_dac_pj)
from nmc.backends.costs import Costs
from nmc.backends.scaling import HOROWITZ, scale_energy
from nmc.backends.target import TargetError, load_target, with_fields


def test_adder_trees_by_hand():
    # 256 4-bit products: 128·4 + 64·5 + 32·6 + 16·7 + 8·8 + 4·9 + 2·10 + 1·11
    assert adder_tree_full_adders(256, 4) == 1267
    # 256 8-bit products: 128·8 + 64·9 + 32·10 + 16·11 + 8·12 + 4·13 + 2·14 + 1·15
    assert adder_tree_full_adders(256, 8) == 2287
    # 6 inputs: 3 adders of 8 bits, then 1 of 9 (one passes), then 1 of 10
    assert adder_tree_full_adders(6, 8) == 3 * 8 + 9 + 10
    assert adder_tree_full_adders(1, 8) == 0


def test_a_digital_cim_cycle_by_hand():
    """64 rows of 4-bit weights, 4-bit inputs, 2 outputs: per output a tree of 32·4 + 16·5 + 8·6
    + 4·7 + 2·8 + 9 = 309 full adders, an accumulator of 4 + 6 + 4 = 14, and 256 product gates."""
    assert digital_cim_read_pj(64, 4, 4, 2, fa_pj=1.0, gate_pj=0.5) == pytest.approx(2 * (309 + 14 + 256 * 0.5))


def test_a_digital_cim_mac_at_two_nodes():
    """An 8b×8b MAC on 256 rows (8 bit-serial cycles) at Horowitz's 45 nm, 0.9 V: (2287 + 24)
    full adders of 3.1 fJ and 2048 gates of 0.44 fJ per cycle and output, over 256 MACs; at 22 nm
    and 0.72 V each figure times Stillmaker and Baas's factor (0.206)."""
    c = Costs()
    per_mac = 8 * digital_cim_read_pj(256, 8, 8, 1, c.digital_fa_pj, c.digital_gate_pj) / 256
    assert per_mac == pytest.approx(8 * (2311 * 0.0031 + 2048 * 0.00044) / 256)       # 0.252 pJ
    t22 = with_fields(load_target("sram-digital"), {"chip.node_nm": 22, "chip.supply_v": 0.72})
    per_mac_22 = 8 * digital_cim_read_pj(256, 8, 8, 1, t22.costs.digital_fa_pj, t22.costs.digital_gate_pj) / 256
    assert per_mac_22 == pytest.approx(per_mac * scale_energy(1.0, HOROWITZ, (22, 0.72)))
    assert per_mac_22 < per_mac / 4


def test_level_dacs_grow_with_their_bits():
    assert level_dac_pj(0.01, 1) == pytest.approx(0.01)
    assert level_dac_pj(0.01, 4) == pytest.approx(0.15)
    assert level_dac_pj(0.01, 8) == pytest.approx(2.55)
    level = Costs(dac_pj=0.01)
    assert level.dac_read_pj(1) == pytest.approx(0.01) and level.dac_read_pj(8) == pytest.approx(2.55)
    pulse = Costs(dac_pj=0.25, dac_ns_per_level=1.0)      # a pulse driver: its figure covers the pulse
    assert pulse.dac_read_pj(8) == pulse.dac_read_pj(1) == 0.25


def test_adc_energy_at_two_resolutions_and_two_nodes():
    """The default ADC: ISAAC's 8-bit SAR (1.67 pJ at 32 nm) as a Walden figure, 6.52 fJ per
    conversion step, so half the energy per bit fewer; its capacitors do not shrink with the node,
    so at 7 nm and at 65 nm it scales with the supply alone: (0.8 / 0.9)² at 0.8 V."""
    base = load_target("sram-analog")
    c = base.costs
    assert c.adc_conversion_pj(8) == pytest.approx(1.669, rel=1e-3)
    assert c.adc_conversion_pj(4) == pytest.approx(0.1043, rel=1e-3)
    factor = (0.8 / 0.9) ** 2
    for node in (7, 65):
        at = with_fields(base, {"chip.node_nm": node, "chip.supply_v": 0.8}).costs
        assert at.adc_walden_fj == pytest.approx(6.52 * factor)
        assert at.adc_conversion_pj(8) == pytest.approx(1.669 * factor, rel=1e-3)      # 1.32 pJ
        assert at.adc_conversion_pj(4) == pytest.approx(0.1043 * factor, rel=1e-3)     # 82 fJ
    # a figure the file states stays as stated
    stated = with_fields(base, {"chip.node_nm": 7, "chip.supply_v": 0.8, "costs.adc_walden_fj": 2.0}).costs
    assert stated.adc_walden_fj == 2.0


def test_node_voltage_and_bits_move_the_costs_the_documented_way():
    """Smaller nodes and lower supplies cost less in every logic component (DAC, shift-and-add,
    digital CIM, vector unit, buffers); the ADC only with the supply; more ADC bits cost more; the
    thermal-noise bound, where a target asks for it, does not scale with the node."""
    base = load_target("sram-analog")
    def at(node, v):
        return with_fields(base, {"chip.node_nm": node, "chip.supply_v": v}).costs
    for key in ("dac_pj", "shift_add_pj", "digital_fa_pj", "vector_op_pj", "buffer_pj_per_bit"):
        assert getattr(at(7, 0.8), key) < getattr(at(22, 0.8), key) < getattr(at(65, 0.8), key), key
        assert getattr(at(22, 0.7), key) < getattr(at(22, 0.9), key), key
    assert at(7, 0.8).adc_walden_fj == at(65, 0.8).adc_walden_fj < at(65, 1.1).adc_walden_fj
    c = at(22, 0.8)
    assert c.adc_conversion_pj(4) < c.adc_conversion_pj(6) < c.adc_conversion_pj(8) < c.adc_conversion_pj(10)
    thermal = dict(adc_walden_fj=0.0, adc_survey_factor=1.0)
    assert (dataclasses.replace(at(7, 0.8), **thermal).adc_conversion_pj(10)
            == dataclasses.replace(at(65, 1.1), **thermal).adc_conversion_pj(10))


def test_adder_chains_by_hand():
    """Colonnade's layout: a full adder beside every bit cell, each as wide as the finished sum:
    128 rows of 8-bit weights, 8 + 7 bits each (the paper's "weight bits plus 7")."""
    assert adder_chain_full_adders(128, 8) == 128 * 15
    assert digital_cim_read_pj(128, 8, 8, 1, 1.0, 0.0, "chain") == pytest.approx(128 * 15 + 8 + 7 + 8)
    chain = with_fields(load_target("sram-digital"), {"cores.crossbar.digital_adders": "chain"})
    assert chain.crossbar.digital_adders == "chain"
    with pytest.raises(TargetError, match="digital_adders = 'wallace'; known: tree, chain"):
        with_fields(load_target("sram-digital"), {"cores.crossbar.digital_adders": "wallace"})


def test_dac_and_shift_add_at_two_nodes_by_hand():
    """ISAAC's 32-nm 1-bit DAC (3.9 fJ) and shift-and-add (21 fJ) at 7 nm, 0.8 V and at 65 nm,
    1.1 V: times 0.065358 / 0.457137 and (3.755·1.21 − 4.398·1.1 + 1.975) / 0.457137; an 8-bit level
    DAC at 7 nm is 255 of its units."""
    base = load_target("sram-analog")
    for node, v, factor in ((7, 0.8, 0.065358 / 0.457137), (65, 1.1, 1.68075 / 0.457137)):
        c = with_fields(base, {"chip.node_nm": node, "chip.supply_v": v}).costs
        assert c.dac_pj == pytest.approx(0.0039 * factor, rel=1e-4)
        assert c.shift_add_pj == pytest.approx(0.021 * factor, rel=1e-4)
    seven = with_fields(base, {"chip.node_nm": 7, "chip.supply_v": 0.8}).costs
    assert seven.dac_read_pj(8) == pytest.approx(255 * 0.0039 * 0.065358 / 0.457137, rel=1e-4)   # 0.142 pJ
