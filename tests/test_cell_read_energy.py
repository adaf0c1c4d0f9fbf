"""Cell read energy from the read voltage, the cell's conductance and the pulse (``[costs]
read_v``, ``cell_g_us``; backends/costs.py ``Costs.cell_read_pj``): values worked out by hand,
and a compiled program's array energy moving as the fields say."""
from __future__ import annotations

from pathlib import Path

import pytest

from nmc.backends.costs import Costs
from nmc.backends.target import load_target, with_fields
from nmc.compiler import compile_model
from nmc.runtime.timing import estimate

CNN = Path(__file__).resolve().parents[1] / "examples" / "digits_cnn.onnx"


def test_v_squared_g_t_by_hand():
    # the old default's own derivation: 0.55 V, 100 kΩ (10 µS), a 10-ns read -> 30 fJ
    assert Costs(read_v=0.55, array_read_ns=10.0).cell_read_pj(8, 10.0) == pytest.approx(0.03025)
    # a pulse-width input of 7 bits (levels 0..127, mean 63.5 ns at 1 ns a level), 0.2 V, 12.5 µS
    pwm = Costs(read_v=0.2, dac_ns_per_level=1.0)
    assert pwm.cell_read_pj(7, 12.5) == pytest.approx(0.2 ** 2 * 12.5 * 63.5e-3)       # 31.75 fJ
    assert pwm.cell_read_pj(8, 12.5) == pytest.approx(0.2 ** 2 * 12.5 * 127.5e-3)      # a longer pulse
    assert pwm.cell_read_pj(1, 12.5) == pytest.approx(0.2 ** 2 * 12.5 * 0.5e-3)        # one bit: 0.5 ns
    assert Costs(read_v=0.4, dac_ns_per_level=1.0).cell_read_pj(7, 12.5) == pytest.approx(4 * pwm.cell_read_pj(7, 12.5))
    assert Costs(array_cell_read_pj=0.07).cell_read_pj(7, 12.5) == 0.07                # read_v unset: as given


def _array_pj(fields: dict) -> float:
    target = with_fields(load_target("pcm"), fields) if fields else load_target("pcm")
    return estimate(compile_model(str(CNN), target).program, target).energy_pj["array"]


def test_a_programs_array_energy_follows_voltage_conductance_and_pulse():
    base = _array_pj({"costs.read_v": 0.2})                       # G: half of pcm's 25-µS g_max
    assert _array_pj({"costs.read_v": 0.4}) == pytest.approx(4 * base)
    assert _array_pj({"costs.read_v": 0.2, "costs.cell_g_us": 25.0}) == pytest.approx(2 * base)
    assert _array_pj({"costs.read_v": 0.2, "costs.dac_ns_per_level": 2.0}) == pytest.approx(2 * base)
    # the preset's fixed figure assumed 64-ns pulses (7-bit magnitudes); the digits CNN's later layers
    # take unsigned 8-bit inputs, whose pulses run to 255 ns: the model charges them more
    assert base > _array_pj({})
    # bit-serial inputs (one level per read) drive 8 short pulses instead of one long one
    assert _array_pj({"costs.read_v": 0.2, "cores.crossbar.dac_bits": 1}) < base
