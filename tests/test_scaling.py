"""Digital energies across nodes and supplies (backends/scaling.py, Stillmaker & Baas 2017):
the fits against values worked out by hand and the paper's own worked example, the direction
of node and voltage changes, and a target's chip.node_nm / chip.supply_v acting on the costs."""
from __future__ import annotations

import math
from pathlib import Path

import pytest

from nmc.backends.scaling import HOROWITZ, NODES, ScalingError, energy_factor, scale_energy
from nmc.backends.target import HOROWITZ_COSTS, TargetError, load_target, with_fields
from nmc.compiler import compile_model
from nmc.runtime.timing import estimate

CNN = Path(__file__).resolve().parents[1] / "examples" / "digits_cnn.onnx"


def test_the_fits_by_hand():
    assert energy_factor(45, 0.9) == pytest.approx(1.018 * 0.81 - 0.3107 * 0.9 + 0.1539)      # 0.69885
    assert energy_factor(7, 0.7) == pytest.approx(0.1776 * 0.49 - 0.09097 * 0.7 + 0.02447)    # 0.047815
    assert scale_energy(1.0, HOROWITZ, (7, 0.7)) == pytest.approx(0.047815 / 0.69885, rel=1e-4)   # 0.0684


def test_the_papers_worked_example():
    """Stillmaker & Baas's corrigendum: 1 pJ/op at 65 nm and 1.3 V is 0.1755 pJ/op at 32 nm, 0.9 V."""
    assert scale_energy(1.0, (65, 1.3), (32, 0.9)) == pytest.approx(0.1755, rel=1e-3)   # factors rounded there


def test_a_node_between_two_fits_is_their_geometric_interpolation():
    at_20, at_32 = energy_factor(20, 0.8), energy_factor(32, 0.8)
    w = math.log(22 / 20) / math.log(32 / 20)
    assert energy_factor(22, 0.8) == pytest.approx(at_20 ** (1 - w) * at_32 ** w)
    assert at_20 < energy_factor(22, 0.8) < at_32


def test_smaller_nodes_and_lower_supplies_cost_less():
    for v in (0.7, 0.8, 0.9, 1.0):
        factors = [energy_factor(n, v) for n in sorted(n for n in NODES if n <= 65)]
        assert factors == sorted(factors), v          # 7 nm cheapest ... 65 nm dearest
    for node in NODES:
        volts = [0.6, 0.7, 0.8, 0.9, 1.0, 1.1] if node <= 90 else [1.2, 1.4, 1.6, 1.8]
        factors = [energy_factor(node, v) for v in volts]
        assert factors == sorted(factors), node


@pytest.mark.parametrize("node, supply, message", [(5, 0.7, "cover 7–180 nm"), (200, 1.8, "cover 7–180 nm"),
                                                   (7, 0.2, "outside the 0.3–2.0 V"),
                                                   (65, 0.5, "below 0.586 V, where the 65-nm fit's energy stops"),
                                                   (90, 0.45, "below 0.502 V")])
def test_nodes_and_supplies_outside_the_fits_are_refused(node, supply, message):
    with pytest.raises(ScalingError, match=message):
        energy_factor(node, supply)


def test_a_targets_node_and_supply_scale_the_horowitz_energies_it_does_not_set():
    base = load_target("sram-digital")
    seven = with_fields(base, {"chip.node_nm": 7, "chip.supply_v": 0.7, "costs.vector_mul_pj": 1.5})
    ratio = scale_energy(1.0, HOROWITZ, (7, 0.7))
    for key in HOROWITZ_COSTS:
        want = 1.5 if key == "vector_mul_pj" else getattr(base.costs, key) * ratio   # a set field stays as set
        assert getattr(seven.costs, key) == pytest.approx(want), key
    assert seven.costs.adc_pj == base.costs.adc_pj
    # buffers become SRAM at the node: Horowitz's 10 pJ per 64-bit read of an 8-KB SRAM, scaled
    assert seven.costs.buffer_pj_per_bit == pytest.approx(10 / 64 * ratio)
    assert with_fields(base, {"chip.node_nm": 7, "chip.supply_v": 0.7, "costs.buffer_pj_per_bit": 0.01}
                       ).costs.buffer_pj_per_bit == 0.01
    assert (seven.node_nm, seven.supply_v) == (7, 0.7) and (base.node_nm, base.supply_v) == (0, 0)
    with pytest.raises(TargetError, match="chip.node_nm and chip.supply_v go together"):
        with_fields(base, {"chip.node_nm": 7})
    with pytest.raises(TargetError, match="node 3 nm"):
        with_fields(base, {"chip.node_nm": 3, "chip.supply_v": 0.7})


def test_a_digital_chip_at_7_nm_spends_less_on_digital_work():
    """The digits CNN on sram-digital: its digital-CIM and vector energies scale by the 45 nm,
    0.9 V -> 7 nm, 0.7 V factor, its buffers become 7-nm SRAM; network and I/O stay."""
    base = load_target("sram-digital")
    seven = with_fields(base, {"chip.node_nm": 7, "chip.supply_v": 0.7})
    a = estimate(compile_model(str(CNN), base).program, base)
    b = estimate(compile_model(str(CNN), seven).program, seven)
    ratio = scale_energy(1.0, HOROWITZ, (7, 0.7))
    assert b.energy_pj["digital_cim"] == pytest.approx(a.energy_pj["digital_cim"] * ratio)
    assert a.energy_pj["vector"] > 0 and b.energy_pj["vector"] == pytest.approx(a.energy_pj["vector"] * ratio)
    assert b.energy_pj["buffer"] == pytest.approx(a.energy_pj["buffer"] * (10 / 64 * ratio) / 0.08)
    for part in ("noc", "io"):
        assert b.energy_pj[part] == pytest.approx(a.energy_pj[part])
    assert b.latency_cycles == a.latency_cycles
