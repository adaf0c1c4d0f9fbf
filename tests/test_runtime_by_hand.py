"""Runtime behaviour the mutation sample found unchecked, each against a value worked out by hand.

- ``Outputs.to_dataframe``: an output of one element per sample is one column named after the
  output, a wider one a column per element (``name[i]``).
- ``CompiledProgram.feeds``/``run``: the messages name the inputs and the setting (``time``).
- ``select``: an immediate operand takes the element type of dst (docs/isa.md, "select"),
  not that of the i32 mask.
- ``timing.estimate``: a message of crossbar results keeps its core busy until it has left
  (a barrier after it waits for that); a program whose cores have nothing to do takes no time.
"""
from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

import nmc
from helpers import make_model
from nmc.backends.target import load_target
from nmc.isa import parse_program
from nmc.runtime import execute
from nmc.runtime.compiled import Outputs
from nmc.runtime.crossbar import SimOptions
from nmc.runtime.timing import estimate


# ----------------------------------------------------------------------------- data frames
def test_dataframe_columns_one_per_output_element():
    pytest.importorskip("pandas")
    out = Outputs({"p": np.array([[0.25], [0.5], [0.75]], np.float32),   # one element per sample
                   "v": np.array([1.0, 2.0, 3.0], np.float32),           # a vector: one per sample too
                   "q": np.array([[1, 2], [3, 4], [5, 6]], np.float32)},  # two elements per sample
                  SimOptions())
    frame = out.to_dataframe()
    assert list(frame.columns) == ["sample", "p", "v", "q[0]", "q[1]"]
    assert frame["sample"].tolist() == [0, 1, 2]
    assert frame["p"].tolist() == [0.25, 0.5, 0.75]
    assert frame["v"].tolist() == [1.0, 2.0, 3.0]
    assert frame["q[0]"].tolist() == [1.0, 3.0, 5.0] and frame["q[1]"].tolist() == [2.0, 4.0, 6.0]


# ----------------------------------------------------------------------------- inputs and settings
@pytest.fixture(scope="module")
def two_inputs():
    model = make_model([helper.make_node("Add", ["a", "b"], ["y"])], {"a": [2, 3], "b": [2, 3]}, {"y": [2, 3]})
    return nmc.compile(model, "ideal")


def test_two_input_program_given_one_array_names_its_inputs(two_inputs):
    with pytest.raises(nmc.NmcError, match=r"^the program has 2 inputs \(a, b\); give a dict of input name → array$"):
        two_inputs.run(np.zeros((2, 3), np.float32))
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    np.testing.assert_array_equal(two_inputs.run({"a": x, "b": 2 * x})["y"], 3 * x)


def test_a_bad_time_names_the_time_setting(two_inputs):
    x = np.zeros((2, 3), np.float32)
    with pytest.raises(nmc.NmcError, match=r"^time 'soon': not a duration"):
        two_inputs.run({"a": x, "b": x}, time="soon")
    with pytest.raises(nmc.NmcError, match=r"^time -5: the time since programming cannot be negative$"):
        two_inputs.run({"a": x, "b": x}, time=-5)


# ----------------------------------------------------------------------------- select
SELECT = """\
.nmc 2
.target "ideal"
.batched true
.input "c" in0 i32 [4]
.input "x" in1 f32 [4]
.output "y" out0 f32 [4]
.buffer in0 i32 4 global
.buffer in1 f32 4 global
.buffer out0 f32 4 global
.buffer c i32 4 core0
.buffer x f32 4 core0
.buffer y f32 4 core0
.core 0
    load c[0; 4:1], in0[0; 4:1]
    load x[0; 4:1], in1[0; 4:1]
    select y[0; 4:1], c[0; 4:1], {a}, {b}
    store out0[0; 4:1], y[0; 4:1]
"""


@pytest.mark.parametrize("a, b, want", [
    ("x[0; 4:1]", "#0.75", [10.0, 0.75, 30.0, 0.75]),   # the "else" immediate is an f32, as dst
    ("#2.5", "x[0; 4:1]", [2.5, 20.0, 2.5, 40.0]),     # the "then" immediate too
    ("#-1.5", "#0.25", [-1.5, 0.25, -1.5, 0.25]),
])
def test_select_immediates_take_the_element_type_of_dst(a, b, want):
    p = parse_program(SELECT.format(a=a, b=b))
    c = np.array([[1, 0, 7, 0]], np.int32)            # any non-zero mask element picks a
    x = np.array([[10.0, 20.0, 30.0, 40.0]], np.float32)
    y = execute(p, {"c": c, "x": x})["y"]
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y, np.array([want], np.float32))


# ----------------------------------------------------------------------------- timing
def test_a_barrier_after_a_message_of_crossbar_results_waits_until_it_has_left():
    """Core 1's MVM ends at 69 (test_timing_formulas.MVM); its 160-bit result then leaves in one
    256-bit flit (1 cycle), so core 1 reaches the barrier at 70, not at 69; ten 1-cycle adds
    after it end at 80. Core 0 gets the message at 70 + 2 hops × 2 = 74."""
    from test_timing_formulas import ADD5, ADD5_SHARE, MVM, XMVM, xb2, xb_target

    core1 = f"{XMVM}\n    send $0, acc[0; 5:1]\n    sync\n" + "\n".join([ADD5] * 10)
    stats = estimate(xb2(core1, "    sync\n    recv r0[0; 5:1], $1"), xb_target())
    assert MVM == 69.0
    assert stats.latency_cycles == pytest.approx(MVM + 1 + 10)
    assert stats.core_busy_cycles == {"0": 0.0, "1": 10 * ADD5_SHARE}


def test_a_program_with_nothing_to_do_takes_no_time():
    p = parse_program('.nmc 2\n.target "ideal"\n.batched true\n.core 0\n.core 1\n')
    stats = estimate(p, load_target("ideal"))
    assert stats.latency_cycles == 0
    assert stats.energy_total_pj == 0
    assert stats.core_busy_cycles == {"0": 0.0, "1": 0.0}


# ----------------------------------------------------------------------------- the machine
def test_programming_reports_each_tile_out_of_all_tiles():
    """Chip(...) programs every tile once and tells progress(done, total, note) of each: done
    1, 2, ... of total = the number of tiles (two layers: two tiles)."""
    from nmc.runtime.machine import Chip

    rng = np.random.default_rng(4)
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("MatMul", ["r", "w2"], ["y"])]
    model = make_model(nodes, {"x": ["N", 8]}, {"y": ["N", 4]},
                       {"w": rng.standard_normal((8, 16)).astype(np.float32),
                        "w2": rng.standard_normal((16, 4)).astype(np.float32)})
    compiled = nmc.compile(model, "pcm")
    n = len(compiled.program.tiles)
    assert n == 2
    ticks = []
    Chip(compiled.program, compiled.target, SimOptions(), progress=lambda *a: ticks.append(a))
    assert sorted(ticks) == [(i, n, "programming crossbars") for i in range(1, n + 1)]


def test_an_opcode_without_a_kernel_is_named():
    from nmc.isa import Instr
    from nmc.runtime.machine import Machine, SimulationError

    p = parse_program(SELECT.format(a="x[0; 4:1]", b="#0.0"))
    m = Machine(p, 1)
    with pytest.raises(SimulationError, match=r"^opcode nosuch cannot run inside the functional core model$"):
        m.execute(Instr("nosuch", ()))
