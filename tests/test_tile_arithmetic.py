"""Tile planning, simulation, costs and the mapping table agree on one tile's arithmetic, for
every preset and a sweep of weight, cell, DAC and ADC bits; the expected counts are worked out
here from first principles, not read from ``backends.tile_arithmetic``."""
from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest
from helpers import make_model
from onnx import helper

from nmc.backends.target import CrossbarCores, load_target, preset_names
from nmc.backends.tile_arithmetic import TileArithmetic
from nmc.compiler.driver import compile_model
from nmc.compiler.reports import mapping_table
from nmc.runtime import SimOptions
from nmc.runtime.crossbar import ProgrammedTile
from nmc.runtime.timing import CostModel, estimate

RNG = np.random.default_rng(7)
CROSSBAR_PRESETS = [n for n in preset_names() if load_target(n).crossbar is not None]


def expected(weight_bits: int, cell_bits: int, scheme: str, dac_bits: int, in_bits: int, signed: bool) -> dict:
    magnitude = weight_bits - 1 if scheme == "differential" else weight_bits
    slices = (magnitude + cell_bits - 1) // cell_bits
    phase_bits = in_bits - 1 if signed else in_bits
    return {"slices": slices, "columns_per_weight": slices * (2 if scheme == "differential" else 1),
            "reads": (2 if signed else 1) * max(1, (phase_bits + dac_bits - 1) // dac_bits)}


def dense_model(k: int = 24, n: int = 10):
    w = RNG.standard_normal((k, n)).astype(np.float32)
    return make_model([helper.make_node("MatMul", ["x", "w"], ["y"])], {"x": ["N", k]}, {"y": ["N", n]}, {"w": w})


def variant(name: str, **crossbar):
    target = load_target(name)
    cores = tuple(dataclasses.replace(g, **crossbar) if isinstance(g, CrossbarCores) else g for g in target.cores)
    return dataclasses.replace(target, cores=cores)


SWEEP = [dict(weight_bits=wb, cell_bits=cb, dac_bits=db, adc_bits=ab, weight_scheme=scheme)
         for wb, cb, db, ab, scheme in itertools.product((3, 4, 8), (1, 2), (1, 4), (6, 12), ("differential", "offset"))
         if cb <= wb]


@pytest.mark.parametrize("preset", CROSSBAR_PRESETS)
@pytest.mark.parametrize("quant_bits", [0, 4])
def test_every_preset_plans_simulates_and_costs_one_arithmetic(preset, quant_bits):
    _check(load_target(preset), quant_bits)


@pytest.mark.parametrize("fields", SWEEP, ids=lambda f: "w{weight_bits}c{cell_bits}d{dac_bits}a{adc_bits}{weight_scheme[0]}".format(**f))
def test_a_sweep_of_bits_agrees_everywhere(fields):
    target = variant("pcm", input_bits=8, **fields)
    _check(target, quant_bits=max(2, fields["weight_bits"] - 1))


def _check(target, quant_bits: int) -> None:
    xb = target.crossbar
    options = {"quantize": f"weight_bits={quant_bits}"} if quant_bits else {}
    compiled = compile_model(dense_model(), target, pass_options=options)
    program, graph = compiled.program, compiled.graph
    wbits = quant_bits or xb.weight_bits
    table = mapping_table.mapping_table(graph, program, target)
    cost = CostModel(program, target)
    xmvms = {ins.operands[1].name: ins for stream in program.cores.values() for ins in _leaves(stream)
             if ins.opcode == "xmvm"}
    assert program.tiles
    for name, tile in program.tiles.items():
        want = expected(wbits, xb.cell_bits, xb.weight_scheme, xb.dac_bits, tile.in_bits, tile.in_signed)
        n, k = program.consts[tile.weights].shape
        # the program's tile carries its weight bits and layer
        assert tile.weight_bits == wbits and program.layers[tile.layer].op == "MatMul"
        # planning: the block's columns
        record = graph.mapping[list(graph.nodes())[tile.layer].name]
        block = next(b for b in record.tiles if (b.core, b.xbar) == (tile.core, tile.xbar))
        assert block.cols == n * want["columns_per_weight"] and block.rows == k
        # the mapping table
        row = table["layers"][tile.layer]
        assert row["weight_bits"] == wbits and row["cells_per_weight"] == want["columns_per_weight"]
        # the timing model: reads, conversions and columns of one xmvm
        shape = cost.xmvm_shape(xmvms[name])
        assert (shape["slices"], shape["reads"], shape["cols"], shape["conversions"]) == (
            want["slices"], want["reads"], n * want["columns_per_weight"], n * want["slices"])
        # the simulator: the same slices, and exact when noise is off and the ADC lossless
        pt = ProgrammedTile(tile, program.data[tile.weights], xb, target.device, SimOptions(noise=False),
                            np.random.default_rng(0))
        assert pt.n_slices == want["slices"] and len(pt.arith.recombination()) * pt.arith.phases == want["reads"]
        q = program.data[tile.weights].astype(np.int64)
        assert np.abs(q).max() <= (1 << (wbits - 1)) - (0 if xb.weight_scheme == "offset" else 1)
        wide = dataclasses.replace(xb, adc_bits=40)  # lsb 1 over every current the tile can draw
        lossless = dataclasses.replace(tile, adc_range=float(TileArithmetic.of(tile, wide).adc_steps))
        exact = ProgrammedTile(lossless, q, wide, target.device, SimOptions(noise=False), np.random.default_rng(0))
        assert exact.lossless()
        lo, hi = exact.input_range()
        x = RNG.integers(lo, hi + 1, (5, k))
        np.testing.assert_array_equal(exact.mvm_physical(x), x @ q.T)


def _leaves(stmts):
    for s in stmts:
        body = getattr(s, "body", None)
        yield from (_leaves(body) if body is not None else [s])


def test_four_bit_weights_cost_less_than_eight_on_sram_analog():
    """The issue's case: `-p "quantize{weight_bits=4}"` on sram-analog used to plan half the
    columns while the program, the runtime and the timing model went on with 8 bits."""
    model = dense_model(64, 32)
    eight = compile_model(model, "sram-analog")
    four = compile_model(model, "sram-analog", pass_options={"quantize": "weight_bits=4"})
    s8, s4 = estimate(eight.program, eight.target), estimate(four.program, four.target)
    assert s4.energy_pj["adc"] == pytest.approx(s8.energy_pj["adc"] / 2)   # 4 slices instead of 8
    assert s4.energy_pj["array"] == pytest.approx(s8.energy_pj["array"] / 2)
    # the preset has an ADC per column: the slices convert in parallel, so latency stays; with
    # eight columns sharing an ADC the conversions queue, and fewer slices take less time
    assert s4.latency_cycles == s8.latency_cycles
    shared = variant("sram-analog", cols_per_adc=8)
    slow8, slow4 = (estimate(compile_model(model, shared, pass_options=o).program, shared)
                    for o in ({}, {"quantize": "weight_bits=4"}))
    assert slow4.latency_cycles < slow8.latency_cycles
    t8 = mapping_table.mapping_table(eight.graph, eight.program, eight.target)
    t4 = mapping_table.mapping_table(four.graph, four.program, four.target)
    assert [r["cells_per_weight"] for r in t8["layers"] if r["unit"] == "crossbar"] == [8]
    assert [r["cells_per_weight"] for r in t4["layers"] if r["unit"] == "crossbar"] == [4]
    assert s4.crossbar_utilization == pytest.approx(s8.crossbar_utilization / 2)


@pytest.mark.parametrize("adc_bits, scheme", [(4, "differential"), (8, "offset"), (6, "differential")])
def test_the_adc_step_is_the_smallest_power_of_two_that_reaches_the_current(adc_bits, scheme):
    arith = TileArithmetic(8, 2, scheme, dac_bits=1, adc_bits=adc_bits)
    steps = (1 << (adc_bits - 1)) - 1 if scheme == "differential" else (1 << adc_bits) - 1
    assert arith.adc_steps == steps
    for current in [0.0, 1.0, steps, steps + 0.5, 3.7 * steps, 1000.0 * steps, 12345.6]:
        lsb = arith.lsb_for(current)
        assert lsb >= 1 and np.log2(lsb) == int(np.log2(lsb))
        assert lsb * steps >= current                      # the range reaches the current: no clipping
        assert lsb == 1 or (lsb / 2) * steps < current     # and no coarser than it must be
