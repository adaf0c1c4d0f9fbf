"""runtime/costs.py against its documented formulas (docs/isa.md, "Costs"), computed by hand.

Targets use non-unit figures (2, 3, 5 cycles; 0.5, 2, 4 pJ) so that a wrong operator or operand
changes the number: with the presets' 1-cycle CAM steps, x·1 and x/1 look the same.
"""
from __future__ import annotations

import re

import numpy as np
import pytest

from nmc.backends.target import load_target, parse_target
from nmc.isa import parse_program
from nmc.runtime.costs import CostModel, TimingError, Unit
from nmc.runtime.timing import estimate

# ----------------------------------------------------------------------------- analog CAM
# acam with every CAM figure distinct and away from 1
CAM_FIGURES = dict(search_cycles=7, resolve_cycles_per_match=2, leaf_read_cycles=3, reduce_cycles_per_level=5,
                   search_pj_per_cell=0.5, leaf_read_pj=2.0, reduce_pj_per_add=4.0)


def _cam_target(count: int = 4096):
    text = load_target("acam").source
    text = re.sub(r"(?m)^count = 4096$", f"count = {count}", text)
    for key, value in CAM_FIGURES.items():
        line = f"{key} = {value}"
        text, n = re.subn(rf"(?m)^{key} = .*$", line, text)
        if not n:  # not in the preset: add it to the cam group
            text = text.replace("search_cycles = 7", f"search_cycles = 7\n{line}")
    return parse_target(text)


CAM = _cam_target()

# R = 5 rows, F = 3 features in 6 cells, T = 2 targets (R, F and T all different)
CAM_PROGRAM = """\
.nmc 2
.target "acam"
.batched true
.input "x" in0 f32 [3]
.output "y" out0 f32 [2]
.buffer in0 f32 3 global
.buffer out0 f32 2 global
{buffers}
.const lo i32 [5, 3]
.const hi i32 [5, 3]
.const lv i32 [3]
.const leaves f32 [5, 2]
.core 0
    sync
{cores}
"""

CAM_CORE = """\
.core {core}
    csearch m{core}[0; 5:1], lo[0; 5:3, 3:1], hi[0; 5:3, 3:1], lv[0; 3:1], q{core}[0; 3:1], #6
    {leaf} acc{core}[0; 2:1], m{core}[0; 5:1], leaves[0; 5:2, 2:1], #{matches}
    sync
"""


def cam_program(matches: int, leaf: str = "cleaf", cores=(1,)):
    buffers = "\n".join(f".buffer q{c} i32 3 core{c}\n.buffer m{c} f32 5 core{c}\n.buffer acc{c} f32 2 core{c}"
                        for c in cores)
    body = "".join(CAM_CORE.format(core=c, leaf=leaf, matches=matches) for c in cores)
    return parse_program(CAM_PROGRAM.format(buffers=buffers, cores=body))


def _instr(program, core: int, opcode: str):
    return next(s for s in program.cores[core] if s.opcode == opcode)


def test_csearch_costs_one_search_and_energy_per_cell_searched():
    p = cam_program(1)
    cost = CostModel(p, CAM).instr(_instr(p, 1, "csearch"), 1)
    assert cost.cycles == 7                                  # search_cycles, whatever the rows
    assert cost.energy["cam_search"] == pytest.approx(5 * 6 * 0.5)   # rows × cells × pJ per cell
    assert dict(cost.busy) == {Unit("cam", 1): 7}            # the core's CAM arrays


# matches → tree levels of the reduction network: ceil(log2(matches)), none for one match
@pytest.mark.parametrize("matches, levels", [(0, 0), (1, 0), (2, 1), (3, 2), (5, 3)])
@pytest.mark.parametrize("leaf", ["cleaf", "cleafmin", "cleafmax"])
def test_leaf_read_costs_resolver_leaf_memory_and_reduction_tree(matches, levels, leaf):
    p = cam_program(matches, leaf)
    cost = CostModel(p, CAM).instr(_instr(p, 1, leaf), 1)
    m = max(matches, 1)   # a search always hands at least one match to leaf memory
    cycles = m * 2 + 3 + levels * 5
    assert cost.cycles == cycles
    assert cost.energy["cam_leaf"] == pytest.approx(m * 2 * 2.0)          # matches × targets × leaf read
    assert cost.energy["cam_reduce"] == pytest.approx((m - 1) * 2 * 4.0)  # (matches − 1) adds per target
    # the resolver is busy a cycle per match; leaf read and adder levels are stages behind it
    assert dict(cost.busy) == {Unit("cam_leaf", 1): m * 2}


def test_cam_program_latency_and_energy_by_hand():
    stats = estimate(cam_program(3), CAM)
    # search, then 3 matches through the resolver, one leaf read, 2 reduction levels
    assert stats.latency_cycles == 7 + (3 * 2 + 3 + 2 * 5)
    assert stats.energy_pj["cam_search"] == pytest.approx(15.0)
    assert stats.energy_pj["cam_leaf"] == pytest.approx(12.0)
    assert stats.energy_pj["cam_reduce"] == pytest.approx(16.0)
    assert stats.energy_total_pj == pytest.approx(43.0)


def test_two_cam_cores_search_concurrently():
    """Each core's CAM units are its own: two cores doing the same work pipeline at one core's
    pace, not at the pace of both added together; and within a core the arrays (search, 7
    cycles) and the resolver (2 matches × 2 cycles; leaf read and adder level behind it) are
    stages of a pipeline, so the interval is the slowest stage's, not their sum (the latency)."""
    search, leaf, resolver = 7, 2 * 2 + 3 + 1 * 5, 2 * 2
    for cores in ((1,), (1, 2)):
        stats = estimate(cam_program(2, cores=cores), _cam_target())
        assert stats.latency_cycles == search + leaf
        assert stats.bottleneck_cycles == max(search, resolver)
        assert stats.throughput_per_s == pytest.approx(1e9 / search)
        assert stats.core_busy_cycles["1"] == search


def test_cam_instructions_on_a_target_without_cam_are_refused():
    with pytest.raises(TimingError, match=r"^the program searches analog CAM but target 'pcm' has no CAM cores$"):
        estimate(cam_program(1), load_target("pcm"))


# ----------------------------------------------------------------------------- gather
GATHER = """\
.nmc 2
.target "ideal"
.batched true
.input "x" in0 i32 [2]
.output "y" out0 f32 [2, 3]
.buffer in0 i32 2 global
.buffer out0 f32 6 global
.buffer idx i32 2 core0
.buffer dst f32 6 core0
.const table f32 [4, 3]
.core 0
    gather dst[0; 2:3, 3:1], table[0; 4:3, 3:1], idx[0; 2:1]
"""


def _ideal_with(**costs):
    text = load_target("ideal").source + "\n[costs]\n" + "".join(f"{k} = {v}\n" for k, v in costs.items())
    return parse_target(text)


def test_gather_is_a_buffer_read_of_the_rows_moved_and_the_indices():
    target = _ideal_with(buffer_bytes_per_cycle=3, buffer_pj_per_bit=0.5)
    p = parse_program(GATHER)
    cost = CostModel(p, target).instr(p.cores[0][0], 0)
    dst_bits, idx_bits = 2 * 3 * 32, 2 * 32
    # (192 + 64) bits = 32 bytes through a 3-byte port: 11 cycles
    assert cost.cycles == 11
    assert dict(cost.busy) == {Unit("buffer", 0): 11}
    # each row read from the table and written to dst, the indices read once
    assert cost.energy["buffer"] == pytest.approx((2 * dst_bits + idx_bits) * 0.5)
    assert estimate(p, target).latency_cycles == 11


# ----------------------------------------------------------------------------- vector unit and DMA
# 3 lanes, distinct energies per op kind, a 3-byte buffer port and a 2-byte I/O link
VECTOR_COSTS = dict(vector_lanes=3, vector_op_pj=0.5, vector_mul_pj=2.0, vector_int_op_pj=0.25,
                    vector_special_cycles=5, buffer_pj_per_bit=0.125, buffer_bytes_per_cycle=3,
                    io_pj_per_bit=1.5, io_bytes_per_cycle=2)

VECTOR = """\
.nmc 2
.target "ideal"
.batched true
.input "x" in0 f32 [7]
.output "y" out0 f32 [7]
.buffer in0 f32 7 global
.buffer out0 f32 7 global
.buffer g f32 7 global
.buffer a f32 7 core0
.buffer b f32 7 core0
.buffer c f32 7 core0
.buffer ia i32 7 core0
.buffer ib i32 7 core0
.buffer ic i32 7 core0
.buffer m i32 7 core0
.buffer r f32 14 core0
.buffer s f32 2 core0
.buffer y f32 4 core0
.buffer x f32 5 core0
.buffer mm f32 8 core0
.buffer cut f32 6 core0
.buffer bm f32 16 core0
.buffer bb f32 24 core0
.const w f32 [4, 5]
.layer 0 "dense" "Gemm"
.core 0
{body}
"""

V7 = "[0; 7:1]"
BITS7 = 7 * 32


@pytest.mark.parametrize("line, cycles, component_pj, views", [
    # ceil(7 / 3) = 3 lane steps; an f32 add is one vector op per element
    (f"add c{V7}, a{V7}, b{V7}", 3, 7 * 0.5, 3),
    (f"add ic{V7}, ia{V7}, ib{V7}", 3, 7 * 0.25, 3),            # i32 arithmetic: integer ops
    (f"mul c{V7}, a{V7}, b{V7}", 3, 7 * 2.0, 3),                # vector_mul: a multiply each
    (f"exp c{V7}, a{V7}", 3 * 5, 7 * 2.0, 2),                   # vector_special: 5 cycles per step
    (f"lt m{V7}, a{V7}, b{V7}", 3, 7 * 0.5, 3),                 # f32 comparison into i32 0/1
    (f"lt m{V7}, ia{V7}, ib{V7}", 3, 7 * 0.25, 3),              # i32 comparison: integer ops
    (f"lt m{V7}, ia{V7}, #3", 3, 7 * 0.25, 2),                  # ... against an immediate
    (f"add ic{V7}, ia{V7}, #3", 3, 7 * 0.25, 2),
    (f"fill c{V7}, #1.5", 3, 7 * 0.5, 1),                      # a fill writes each element once
    (f"select c{V7}, m{V7}, a{V7}, b{V7}", 3, 7 * 0.5, 4),      # f32 choice (the i32 mask aside)
    (f"select ic{V7}, m{V7}, ia{V7}, ib{V7}", 3, 7 * 0.25, 4),  # i32 choice
    (f"mov c{V7}, a{V7}", 3, 7 * 0.5, 2),
])
def test_element_wise_costs(line, cycles, component_pj, views):
    target = _ideal_with(**VECTOR_COSTS)
    p = parse_program(VECTOR.format(body=f"    {line} !0"))
    cost = CostModel(p, target).instr(p.cores[0][0], 0)
    assert cost.cycles == cycles
    assert dict(cost.busy) == {Unit("vector", 0): cycles}
    assert dict(cost.energy) == pytest.approx({"vector": component_pj, "buffer": views * BITS7 * 0.125})
    total = component_pj + views * BITS7 * 0.125
    assert dict(cost.layer_energy) == pytest.approx({"dense": total})   # tagged !0: layer 0
    assert dict(cost.layer_cycles) == {"dense": cycles}
    assert cost.macs == 0


@pytest.mark.parametrize("line, cycles, vector_pj, elements, macs", [
    # reduce: one op per source element (14 → ceil(14/3) = 5 steps)
    ("rsum s[0; 2:1], r[0; 2:7, 7:1]", 5, 14 * 0.5, 2 + 14, 0),
    # mvm: a multiply and an add per weight, N·K = 20 → 7 steps
    ("mvm y[0; 4:1], @w, x[0; 5:1]", 7, 20 * 2.5, 4 + 5, 20),
    # matmul [2, 3] @ [3, 4]: 8 outputs × 3 inner = 24 multiply-adds → 8 steps
    ("matmul mm[0; 2:4, 4:1], r[0; 2:3, 3:1], c[0; 3:4, 4:1]", 8, 24 * 2.5, 8 + 6 + 12, 24),
    # batched matmul [2, 2, 3] @ [2, 3, 4]: 16 outputs × 3 inner = 48 multiply-adds → 16 steps
    ("matmul bm[0; 2:8, 2:4, 4:1], r[0; 2:6, 2:3, 3:1], bb[0; 2:12, 3:4, 4:1]", 16, 48 * 2.5, 16 + 12 + 24, 48),
    # cenc: one comparison per cut of both cut tables, 2 × 3 × 2 = 12 → 4 steps
    ("cenc ia[0; 3:1], a[0; 3:1], cut[0; 3:2, 2:1], r[0; 3:2, 2:1], b[0; 3:1]", 4, 12 * 0.5, 3 + 3 + 6 + 6 + 3, 0),
])
def test_reduction_and_matrix_costs(line, cycles, vector_pj, elements, macs):
    target = _ideal_with(**VECTOR_COSTS)
    p = parse_program(VECTOR.format(body=f"    {line}"))
    cost = CostModel(p, target).instr(p.cores[0][0], 0)
    assert cost.cycles == cycles
    assert dict(cost.busy) == {Unit("vector", 0): cycles}
    assert dict(cost.energy) == pytest.approx({"vector": vector_pj, "buffer": elements * 32 * 0.125})
    assert cost.macs == macs and cost.analog_macs == 0
    assert dict(cost.layer_cycles) == {"(program i/o)": cycles}   # untagged: the program's i/o


@pytest.mark.parametrize("line, cycles, io", [
    # 7 f32 = 28 bytes: ceil(28 / 3) = 10 buffer cycles; through the 2-byte program port 14
    (f"load a{V7}, in0{V7}", 14, True),
    (f"store out0{V7}, a{V7}", 14, True),
    (f"load a{V7}, g{V7}", 10, False),         # a global buffer that is no program port
    (f"store g{V7}, a{V7}", 10, False),
])
def test_dma_costs_buffer_bandwidth_and_io(line, cycles, io):
    target = _ideal_with(**VECTOR_COSTS)
    p = parse_program(VECTOR.format(body=f"    {line}"))
    cost = CostModel(p, target).instr(p.cores[0][0], 0)
    assert cost.cycles == cycles
    assert dict(cost.busy) == {Unit("buffer", 0): 10}         # the port is busy for its own cycles
    expected = {"buffer": 2 * BITS7 * 0.125}                  # read at one end, written at the other
    if io:
        expected["io"] = BITS7 * 1.5
    assert dict(cost.energy) == pytest.approx(expected)


def test_block_and_loops_by_hand():
    target = _ideal_with(**VECTOR_COSTS)
    body = f"add c{V7}, a{V7}, b{V7}\n        load a{V7}, g{V7}"   # 3 vector cycles, then 10 buffer
    one = 3 + 10
    e_one = 7 * 0.5 + 3 * BITS7 * 0.125 + 2 * BITS7 * 0.125
    for kind, cycles in (("loop", one + 3 * 10),      # latency + 3 intervals of the busiest unit
                         ("loop.seq", 4 * one)):      # each iteration after the last
        p = parse_program(VECTOR.format(body=f"    {kind} %i, 4 {{\n        {body}\n    }}\n    mov c{V7}, a{V7}"))
        model = CostModel(p, target)
        loop = model.loop(p.cores[0][0], 0)
        assert loop.cycles == cycles
        assert dict(loop.busy) == {Unit("vector", 0): 4 * 3, Unit("buffer", 0): 4 * 10}
        assert sum(loop.energy.values()) == pytest.approx(4 * e_one)
        assert dict(loop.layer_energy) == pytest.approx({"(program i/o)": 4 * e_one})
        block = model.block(p.cores[0], 0)
        assert block.cycles == cycles + 3
        assert dict(block.busy) == {Unit("vector", 0): 4 * 3 + 3, Unit("buffer", 0): 4 * 10}
        if kind == "loop.seq":   # each instruction's cycles, charged to its layer
            assert dict(block.layer_cycles) == {"(program i/o)": 4 * one + 3}
        stats = estimate(p, target)
        assert stats.latency_cycles == cycles + 3
        assert stats.energy_total_pj == pytest.approx(4 * e_one + 7 * 0.5 + 2 * BITS7 * 0.125)


def test_macs_add_up_over_loops_and_statements():
    target = _ideal_with(**VECTOR_COSTS)
    mvm = "mvm y[0; 4:1], @w, x[0; 5:1]"
    p = parse_program(VECTOR.format(body=f"    loop %i, 4 {{\n        {mvm}\n    }}\n    {mvm}\n    {mvm}"))
    stats = estimate(p, target)
    assert stats.macs == 6 * 20 and stats.analog_macs == 0
    # a stacked weight [G, N, K] indexed by the loop: each step multiplies one [N, K] slice
    stacked = VECTOR.replace(".const w f32 [4, 5]", ".const w f32 [2, 4, 5]")
    p = parse_program(stacked.format(body=f"    loop %i, 2 {{\n        mvm y[0; 4:1], @w[0+1*%i], x[0; 5:1]\n    }}"))
    cost = CostModel(p, target).loop(p.cores[0][0], 0)
    assert cost.macs == 2 * 20
    assert cost.energy["vector"] == pytest.approx(2 * 20 * 2.5)


def test_an_empty_loop_costs_nothing():
    # no work in the body: no unit busy, no latency, however many iterations
    p = parse_program(VECTOR.format(body="    loop %i, 5 {\n    }"))
    cost = CostModel(p, _ideal_with(**VECTOR_COSTS)).loop(p.cores[0][0], 0)
    assert cost.cycles == 0 and not cost.busy


def test_a_one_iteration_loop_is_its_body():
    target = _ideal_with(**VECTOR_COSTS)
    p = parse_program(VECTOR.format(body=f"    loop %i, 1 {{\n        add c{V7}, a{V7}, b{V7}\n        load a{V7}, g{V7}\n    }}"))
    assert estimate(p, target).latency_cycles == 13
