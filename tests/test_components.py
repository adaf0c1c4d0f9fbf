"""Component models (backends/components.py) against values worked out by hand, and a target's
fields moving the costs the documented way."""
from __future__ import annotations

import pytest

from nmc.backends.components import adder_tree_full_adders, digital_cim_read_pj, level_dac_pj
from nmc.backends.costs import Costs
from nmc.backends.scaling import HOROWITZ, scale_energy
from nmc.backends.target import load_target, with_fields


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
