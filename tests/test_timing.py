"""Timing, energy and area: hand-checkable cases pin the model."""
from __future__ import annotations

import math

import numpy as np
import pytest

from nmc.backends.target import load_target, parse_target
from nmc.compiler import compile_model
from nmc.isa import parse_program
from nmc.runtime.timing import COMPONENTS, estimate

PCM = load_target("pcm")

ONE_MVM = """\
.nmc 2
.target "pcm"
.batched true
.input "x" in0 f32 [64]
.output "y" out0 f32 [16]
.buffer in0 f32 64 global
.buffer out0 f32 16 global
.buffer q i32 64 core1
.buffer acc i32 16 core1
.const w i32 [16, 64]
.tile t0 weights=w core=1 xbar=0 row=0 col=0 in_bits=8 in_signed=0 adc_range=127.0 weight_bits=8 layer=-1
.core 0
    sync
.core 1
{body}
"""


def program(body: str):
    p = parse_program(ONE_MVM.format(body=body))
    p.data = {"w": np.ones((16, 64), np.int32)}
    return p


def test_one_mvm_on_one_crossbar():
    stats = estimate(program("    xmvm acc[0; 16:1], @t0, q[0; 64:1]\n    sync"), PCM)
    c, xb = PCM.costs, PCM.crossbar
    # pcm preset: 8-bit unsigned inputs through 8-bit DACs → 1 read, a pulse of up to 255 levels;
    # an 8-bit weight is one differential pair of 7-bit cells → 16 conversions on 256/2 ADCs →
    # one conversion time, which grows with the ADC's levels (an oscillator ADC)
    assert (xb.cell_bits, xb.dac_bits, xb.adc_bits, xb.cols // xb.cols_per_adc) == (7, 8, 8, 128)
    t_read = (c.array_read_ns + c.dac_ns_per_level * 255) * PCM.clock_ghz
    t_adc = math.ceil(16 / 128) * (c.adc_ns + c.adc_ns_per_bit * 8 + c.adc_ns_per_level * 256) * PCM.clock_ghz
    # read, then convert (a further read would overlap these conversions)
    assert stats.latency_cycles == pytest.approx(t_read + t_adc)
    assert stats.energy_pj["array"] == pytest.approx(64 * 16 * 2 * c.array_cell_read_pj)
    assert stats.energy_pj["adc"] == pytest.approx(16 * (c.adc_pj + c.adc_pj_per_level * 256))
    assert stats.energy_pj["dac"] == pytest.approx(64 * c.dac_pj)
    assert stats.macs == 16 * 64


def test_pipelined_loop_costs_latency_plus_intervals():
    body = "    loop %i, 10 {\n        xmvm acc[0; 16:1], @t0, q[0; 64:1]\n    }\n    sync"
    one = estimate(program("    xmvm acc[0; 16:1], @t0, q[0; 64:1]\n    sync"), PCM)
    ten = estimate(program(body), PCM)
    c = PCM.costs
    t_read = (c.array_read_ns + c.dac_ns_per_level * 255) * PCM.clock_ghz
    assert t_read > c.adc_conversion_ns(8)  # the read, not the ADC, sets the pace
    # body latency (read + conversions) once, then one initiation interval per further iteration
    assert ten.latency_cycles == pytest.approx(one.latency_cycles + 9 * t_read)
    assert ten.energy_total_pj == pytest.approx(10 * one.energy_total_pj)


TWO_SENDERS = """\
.nmc 2
.target "ideal"
.batched true
.input "x" in0 f32 [4]
.output "y" out0 f32 [4]
.buffer in0 f32 4 global
.buffer out0 f32 4 global
.buffer a f32 1024 core1
.buffer b f32 1024 core2
.buffer r1 f32 1024 core0
.buffer r2 f32 1024 core0
.core 0
    recv r1[0; 1024:1], $1
    recv r2[0; 1024:1], $2
.core 1
    send $0, a[0; 1024:1]
.core 2
    send $0, b[0; 1024:1]
"""


def test_two_cores_contend_for_one_link():
    ideal = load_target("ideal")
    stats = estimate(parse_program(TWO_SENDERS), ideal)
    c = ideal.costs
    serial = 1024 * 32 / c.noc_bits_per_cycle
    # mesh of width 2: core 1 is one hop from core 0, core 2 one hop too (plus the local hop)
    hops = 2
    # the second transfer waits for the first to leave core 0's ingress link
    assert stats.latency_cycles == pytest.approx(2 * serial + hops * c.noc_hop_cycles)
    assert stats.energy_pj["noc"] == pytest.approx(2 * 1024 * 32 * hops * c.noc_pj_per_bit_hop)


@pytest.mark.parametrize("target", ["ideal", "sram-digital", "pcm", "rram", "sram-analog", "isaac"])
def test_breakdowns_sum_and_pipeline_relations(target):
    compiled = compile_model("examples/digits_cnn.onnx", target=target)
    stats = estimate(compiled.program, compiled.target)
    d = stats.to_dict()
    assert d["energy_pj"]["total"] == pytest.approx(sum(stats.energy_pj[k] for k in COMPONENTS))
    assert sum(stats.energy_by_layer_pj.values()) == pytest.approx(stats.energy_total_pj)
    # pipelined over the cores, one inference leaves every bottleneck interval; never slower
    # than one at a time
    assert stats.bottleneck_cycles <= stats.latency_cycles
    assert stats.throughput_per_s * stats.latency_s >= 1.0 - 1e-9
    assert stats.macs > 0 and stats.tops_per_w() > 0
    if target != "ideal":
        assert 0 < stats.crossbar_utilization <= 1
        # every matrix layer of the CNN sits on crossbars: all MACs are analog unless digital CIM
        assert stats.analog_macs == (0 if target == "sram-digital" else stats.macs)


def test_costs_section_is_validated():
    from nmc.backends.target import TargetError

    base = PCM.source.split("\n[costs]")[0]  # the preset without its own [costs] table
    with pytest.raises(TargetError, match="field costs.adc_pj = 'x' should be a float"):
        parse_target(base + '\n[costs]\nadc_pj = "x"\n')
    with pytest.raises(TargetError, match="unknown field costs.adc_pjj"):
        parse_target(base + "\n[costs]\nadc_pjj = 1.0\n")
