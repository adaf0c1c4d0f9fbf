"""runtime/timing.py: what ``Stats`` shows and writes, and the scheduler on small programs whose
latency and energy are worked out by hand from the target's [costs]."""
from __future__ import annotations

import json
import re

import pytest

from nmc.runtime.timing import Stats


def _stats(**over) -> Stats:
    fields = dict(
        target="chipx", clock_ghz=2.0, latency_cycles=1234567.0, bottleneck_cycles=1000.0,
        # 2000 pJ in all; "array" is below 1 pJ and "dac" is zero
        energy_pj={"adc": 499.25, "array": 0.75, "dac": 0.0, "vector": 1500.0},
        energy_by_layer_pj={"conv": 2000.0}, cycles_by_layer={"conv": 1234567.0},
        macs=1e6, analog_macs=1e6, area_mm2={"crossbars": 1.5, "adcs": 0.5},
        crossbar_utilization=0.25, adc_utilization=0.5, core_busy_cycles={"0": 1000.0})
    fields.update(over)
    return Stats(**fields)


def _rows(html: str) -> tuple[str, list[tuple[str, str]]]:
    caption = re.search(r"<caption[^>]*><b>(.*?)</b></caption>", html).group(1)
    return caption, re.findall(r"<tr><th[^>]*>(.*?)</th><td[^>]*>(.*?)</td></tr>", html)


def test_stats_html_shows_the_figures_of_one_inference():
    caption, rows = _rows(_stats()._repr_html_())
    assert caption == "one inference on chipx at 2 GHz"
    # 1,234,567 cycles at 2 GHz = 617 µs; 2e9 / 1000 cycles per inference; 2000 pJ = 2 nJ;
    # components above zero, largest first, as shares of the total; 2·10⁶ ops at 2·10⁶/s = 4 TOPS,
    # 2·10⁶ ops per 2 nJ = 1000 TOPS/W, over 2 mm²
    assert rows == [
        ("latency", "1,234,567 cycles = 617 µs"),
        ("throughput", "2,000,000 inferences/s pipelined"),
        ("energy", "2 nJ per inference"),
        ("  vector", "75.0 %"),
        ("  adc", "25.0 %"),
        ("  array", "0.0 %"),
        ("efficiency", "4 TOPS, 1e+03 TOPS/W, 2 TOPS/mm²"),
        ("area", "2 mm²"),
        ("crossbar cells used", "25.0 %"),
    ]


def test_stats_html_energy_shares_to_a_tenth_of_a_percent():
    _, rows = _rows(_stats(energy_pj={"adc": 3.0, "buffer": 1.0}, crossbar_utilization=0.5)._repr_html_())
    shares = dict(rows)
    assert (shares["  adc"], shares["  buffer"]) == ("75.0 %", "25.0 %")
    assert shares["energy"] == "4 pJ per inference"
    assert shares["crossbar cells used"] == "50.0 %"


def test_stats_json_is_the_dict_one_field_per_line():
    s = _stats()
    text = s.to_json()
    assert json.loads(text) == json.loads(json.dumps(s.to_dict()))
    lines = text.splitlines()
    assert lines[0] == "{" and lines[-1] == "}"
    assert lines[1] == ' "target": "chipx",'   # one field per line, indented by one space


def test_stats_dict_fields_and_derived_figures():
    d = _stats(analog_macs=5e5).to_dict()
    ops = 2e6                       # 2 ops per MAC
    per_s = 2e9 / 1000              # one inference per bottleneck interval at 2 GHz
    expected = {
        "target": "chipx", "clock_ghz": 2.0,
        "latency_cycles": 1234567.0, "latency_s": 1234567 / 2e9,
        "throughput_per_s": per_s, "bottleneck_cycles": 1000.0,
        "energy_pj": {"total": 2000.0, "adc": 499.25, "array": 0.75, "dac": 0.0, "vector": 1500.0},
        "energy_by_layer_pj": {"conv": 2000.0}, "cycles_by_layer": {"conv": 1234567.0},
        "macs": 1e6, "analog_macs": 5e5,
        "ops_note": "ops = 2 x MACs, counted at each layer's own precision "
                    "(integer on crossbars, float32 on vector units)",
        "tops": ops * per_s / 1e12, "tops_per_w": ops / 2000e-12 / 1e12, "tops_per_mm2": ops * per_s / 1e12 / 2.0,
        "area_mm2": {"total": 2.0, "crossbars": 1.5, "adcs": 0.5},
        "crossbar_utilization": 0.25, "adc_utilization": 0.5, "core_busy_cycles": {"0": 1000.0},
    }
    assert list(d) == list(expected)
    for key, value in expected.items():
        if isinstance(value, dict):
            assert d[key] == pytest.approx(value), key
            assert list(d[key]) == list(value), key
        elif isinstance(value, float):
            assert d[key] == pytest.approx(value, rel=1e-12), key
        else:
            assert d[key] == value, key
    # to rounding: 2·10⁶ ops × 2·10⁶/s = 4·10¹² ops/s; 2·10⁶ ops / 2 nJ = 10¹⁵ ops/J = 1000 TOPS/W
    assert (d["tops"], d["tops_per_w"], d["tops_per_mm2"]) == pytest.approx((4.0, 1000.0, 2.0), rel=1e-14)


def test_stats_without_energy_time_or_area_report_zero_rates():
    s = _stats(bottleneck_cycles=0.0, energy_pj={"adc": 0.0}, area_mm2={})
    assert (s.throughput_per_s, s.tops(), s.tops_per_w(), s.tops_per_mm2()) == (0.0, 0.0, 0.0, 0.0)


# ----------------------------------------------------------------------------- display helpers
@pytest.mark.parametrize("value, unit, text", [
    (None, "s", "–"), (0, "s", "0 s"), (0.0, "", "0"), (7.0, "", "7"),
    (1.5e-5, "s", "15 µs"), (2.5e-13, "J", "250 fJ"), (1e-18, "J", "0.001 fJ"),
    (999e-12, "J", "999 pJ"), (1.0005e-12, "J", "1 pJ"), (4.2e-9, "J", "4.2 nJ"), (3e-3, "s", "3 ms"),
    (-3e-3, "V", "-3 mV"), (1.0, "W", "1 W"), (999.0, "W", "999 W"), (12345.0, "B", "12.3 kB"),
    (6.5e6, "B", "6.5 MB"), (2e9, "Hz", "2 GHz"), (2.5e14, "W", "250 TW"), (5e15, "W", "5e+15 W"),
])
def test_si_prefixes(value, unit, text):
    from nmc.runtime.display import si

    assert si(value, unit) == text


def test_si_digits_and_default_unit():
    from nmc.runtime.display import si

    # each prefix divides by exactly 10^3k: no error at 15 significant digits
    assert [si(v, u, digits=15) for v, u in ((12345.0, "B"), (6.5e6, "B"), (2e9, "Hz"), (2.5e14, "W"))] == [
        "12.345 kB", "6.5 MB", "2 GHz", "250 TW"]
    assert si(5e15) == "5e+15"          # beyond the prefixes, no trailing space without a unit

    assert si(1.23456, "m", digits=5) == "1.2346 m"
    assert si(1.23456, "m") == "1.23 m"
    assert si(1234.5) == "1.23 k"


def test_html_table_escapes_title_keys_and_values():
    from nmc.runtime.display import html_table

    assert html_table("a<b>", [("k&", "v'"), ("x", "1 < 2")]) == (
        "<table><caption style='text-align:left'><b>a&lt;b&gt;</b></caption>"
        "<tr><th style='text-align:left'>k&amp;</th><td style='text-align:left'>v&#x27;</td></tr>"
        "<tr><th style='text-align:left'>x</th><td style='text-align:left'>1 &lt; 2</td></tr></table>")
    assert html_table("t", []) == "<table><caption style='text-align:left'><b>t</b></caption></table>"


# ----------------------------------------------------------------------------- durations
@pytest.mark.parametrize("text, seconds", [
    (250, 250.0), (2.5, 2.5), ("250", 250.0), ("1e5", 1e5), ("250s", 250.0), ("4sec", 4.0), (".5s", 0.5),
    ("+2s", 2.0), ("10min", 600.0), ("10m", 600.0), ("1.5H", 5400.0), (" 3 h ", 10800.0), ("1d", 86400.0),
    ("2w", 14 * 86400.0), ("1y", 365.25 * 86400.0), ("2.5e-1 MIN", 15.0), (0, 0.0),
])
def test_durations_in_seconds(text, seconds):
    from nmc.runtime.duration import parse_duration

    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["abc", "5 parsecs", "1.2.3s", "s", "", True])
def test_not_a_duration(text):
    from nmc.isa.errors import NmcError
    from nmc.runtime.duration import parse_duration

    message = (f"--time {text!r}: not a duration; give seconds (250) or a number with a unit "
               "(250s, 10min, 3h, 1d, 2w, 1y)")
    with pytest.raises(NmcError) as info:
        parse_duration(text)
    assert str(info.value) == message


def test_duration_errors_name_the_setting():
    from nmc.isa.errors import NmcError
    from nmc.runtime.duration import parse_duration

    with pytest.raises(NmcError) as info:
        parse_duration("soon", "time")
    assert str(info.value).startswith("time 'soon': not a duration")
    for text, message in [("1e400", "--time '1e400': too large a duration"),
                          (float("inf"), "--time inf: too large a duration"),
                          (float("nan"), "--time nan: too large a duration"),
                          ("-5", "--time -5: the time since programming cannot be negative"),
                          (-2.0, "--time -2.0: the time since programming cannot be negative"),
                          ("-1d", "--time -1d: the time since programming cannot be negative")]:
        with pytest.raises(NmcError) as info:
            parse_duration(text)
        assert str(info.value) == message
    with pytest.raises(NmcError, match=r"^-t -1: the time"):
        parse_duration(-1, "-t")


# ----------------------------------------------------------------------------- crossbars by hand
from nmc.backends.target import parse_target  # noqa: E402
from nmc.isa import parse_program  # noqa: E402
from nmc.runtime.timing import area, crossbar_utilization, estimate  # noqa: E402

XB_TARGET = """\
[chip]
name = "xb"
summary = "hand-checkable crossbars"
clock_ghz = 2.0

[verify]
rtol = 0.1
min_top1_agreement = 0.9

[[cores]]
kind = "vector"
count = 1
precision = "f32"

[[cores]]
kind = "crossbar"
count = 2
crossbars_per_core = 3
technology = "{technology}"
rows = 64
cols = 256
cell_bits = {cell_bits}
weight_bits = 8
input_bits = 8
dac_bits = {dac_bits}
adc_bits = 6
cols_per_adc = {cols_per_adc}
weight_scheme = "differential"

[costs]
array_read_ns = 3.0
dac_ns_per_level = 0.5
adc_ns = {adc_ns}
adc_ns_per_bit = {adc_ns_per_bit}
adc_ns_per_level = 0.0
adc_pj = 2.0
adc_pj_per_level = 0.125
adc_walden_fj = 0.0
array_cell_read_pj = 0.5
dac_pj = 0.25
shift_add_pj = 0.75
digital_fa_pj = 0.5
digital_gate_pj = 0.125
crossbar_core_area_mm2 = 0.5
array_area_um2_per_cell = 2.0
adc_area_um2 = 1000.0
buffer_area_mm2 = 0.25
vector_core_area_mm2 = 1.5
io_area_mm2 = 0.125
"""


def xb_target(technology="pcm", cell_bits=2, dac_bits=2, adc_ns=1.0, adc_ns_per_bit=0.25, cols_per_adc=32):
    return parse_target(XB_TARGET.format(technology=technology, cell_bits=cell_bits, dac_bits=dac_bits,
                                         adc_ns=adc_ns, adc_ns_per_bit=adc_ns_per_bit, cols_per_adc=cols_per_adc))


XB_PROGRAM = """\
.nmc 2
.target "xb"
.batched true
.input "x" in0 f32 [6]
.output "y" out0 f32 [5]
.buffer in0 f32 6 global
.buffer out0 f32 5 global
.buffer q i32 6 core1
.buffer acc i32 5 core1
.buffer acc2 i32 5 core1
.const w i32 [5, 6]
.tile t0 weights=w core=1 xbar=0 row=0 col=0 in_bits={in_bits} in_signed={signed} adc_range=127.0 weight_bits=8 layer=-1
.core 0
    sync
.core 1
{body}
"""

XMVM = "    xmvm acc[0; 5:1], @t0, q[0; 6:1]"


def xb_program(body=XMVM + "\n    sync", in_bits=5, signed=1):
    return parse_program(XB_PROGRAM.format(body=body, in_bits=in_bits, signed=signed))


# A tile of 5 outputs × 6 inputs, 8-bit differential weights in 2-bit cells: 7 magnitude bits in
# 4 slices, 8 columns per weight, 40 columns, 20 conversions on 256 / 32 = 8 ADCs: 3 per ADC.
# 5-bit signed inputs: two phases of 4 magnitude bits through 2-bit DACs, 4 reads of 2 bits.
# A read: 3 ns + 0.5 ns × 3 levels = 4.5 ns = 9 cycles at 2 GHz; a conversion 1 + 0.25 × 6 = 2.5 ns.
PER_READ_PJ = dict(array=6 * 40 * 0.5, dac=6 * 0.25, adc=20 * (2.0 + 0.125 * 64), shift_add=20 * 0.75)


def test_the_counts_of_one_mvm():
    from nmc.runtime.costs import CostModel

    p = xb_program()
    assert CostModel(p, xb_target()).xmvm_shape(p.cores[1][0]) == dict(
        n=5, k=6, rows=6, slices=4, reads=4, cols=40, conversions=20, adcs=8, tile="t0", ibits=4, wbits=8, bits_per_read=2)


def test_adc_bound_signed_mvm():
    stats = estimate(xb_program(), xb_target())
    t_read, t_adc = 9.0, 3 * 2.5 * 2
    # first read, three further reads each paced by the conversions, the last conversions
    assert stats.latency_cycles == pytest.approx(t_read + 3 * t_adc + t_adc)
    for component, pj in PER_READ_PJ.items():
        assert stats.energy_pj[component] == pytest.approx(4 * pj), component
    assert stats.macs == stats.analog_macs == 30
    assert stats.bottleneck_cycles == pytest.approx(4 * t_adc)
    assert stats.adc_utilization == pytest.approx(4 * t_adc / stats.latency_cycles)


@pytest.mark.parametrize("cols_per_adc, adcs", [(256, 1), (96, 3), (128, 2)])
def test_fewer_adcs_convert_in_turn(cols_per_adc, adcs):
    # 256 columns, one ADC per cols_per_adc of them (the last serving what is left: 96 per ADC
    # needs 3, once counted as 2 by floor division): each ADC converts ceil(20 / adcs) of the 20
    # conversions per read, 2.5 ns (5 cycles) each, and the area counts the same ADCs
    target = xb_target(cols_per_adc=cols_per_adc)
    t_adc = -(-20 // adcs) * 5.0
    assert estimate(xb_program(), target).latency_cycles == pytest.approx(9.0 + 3 * t_adc + t_adc)
    assert area(xb_program(), target)["adcs"] == pytest.approx(6 * adcs * 1000e-6)


def test_read_bound_mvm_overlaps_conversions():
    target = xb_target(adc_ns=0.2, adc_ns_per_bit=0.0)
    stats = estimate(xb_program(), target)
    t_read, t_adc = 9.0, 3 * 0.2 * 2
    assert stats.latency_cycles == pytest.approx(t_read + 3 * t_read + t_adc)
    assert stats.bottleneck_cycles == pytest.approx(4 * t_read)          # the array, not the ADCs
    from nmc.runtime.costs import CostModel, Unit

    p = xb_program()
    cost = CostModel(p, target).instr(p.cores[1][0], 1)
    # the tile's array for a step per read, its ADCs for their conversions
    assert dict(cost.busy) == pytest.approx({Unit("xbar", "t0"): 4 * t_read, Unit("adc", "t0"): 4 * t_adc})
    assert stats.adc_utilization == pytest.approx(4 * t_adc / stats.latency_cycles)
    # unsigned 4-bit inputs: one phase, 2 reads; 1-bit inputs: one read of one level
    two = estimate(xb_program(in_bits=4, signed=0), target)
    assert two.latency_cycles == pytest.approx(t_read + t_read + t_adc)
    assert two.energy_pj["adc"] == pytest.approx(2 * PER_READ_PJ["adc"])
    one = estimate(xb_program(in_bits=1, signed=0), target)
    assert one.latency_cycles == pytest.approx((3.0 + 0.5) * 2 + t_adc)
    assert one.energy_pj["array"] == pytest.approx(PER_READ_PJ["array"])


def test_a_loop_of_mvms_on_one_crossbar_pipelines():
    body = "    loop %i, 3 {\n    " + XMVM + "\n    }\n    sync"
    stats = estimate(xb_program(body), xb_target())
    one = 9.0 + 3 * 15.0 + 15.0
    assert stats.latency_cycles == pytest.approx(one + 2 * 4 * 15.0)     # + 2 initiation intervals
    assert stats.energy_pj["dac"] == pytest.approx(3 * 4 * PER_READ_PJ["dac"])
    assert stats.macs == stats.analog_macs == 3 * 30
    # a further MVM on the same tile after the loop: its MACs add to the loop's
    more = estimate(xb_program(body.replace("    sync", XMVM + "\n    sync")), xb_target())
    assert more.macs == more.analog_macs == 4 * 30


def test_digital_crossbar_is_bit_serial():
    target = xb_target(technology="sram-digital", cell_bits=1, dac_bits=1)
    stats = estimate(xb_program(in_bits=4, signed=0), target)
    # 4 input bits, one per cycle through the adder trees; per cycle and output (6 rows of 8-bit
    # weights): a tree of 3·8 + 1·9 + 1·10 = 43 full adders (an odd row passes a level unchanged),
    # an accumulator of 8 + ceil(log2 6) + 4 = 15, and 6·8 = 48 product gates
    assert stats.latency_cycles == 4
    assert stats.energy_pj["digital_cim"] == pytest.approx(4 * 5 * ((43 + 15) * 0.5 + 48 * 0.125))
    assert stats.energy_pj["adc"] == stats.energy_pj["array"] == 0.0
    assert stats.macs == 30 and stats.analog_macs == 0
    assert stats.adc_utilization == 0.0
    assert area(xb_program(), target)["adcs"] == 0.0        # exact adder trees, no ADCs


def test_area_by_component_and_cells_used():
    target = xb_target()
    a = area(xb_program(), target)
    # 1 vector + 2 crossbar cores, 6 crossbars of 64 × 256 cells with 8 ADCs each
    assert a == pytest.approx({"vector_cores": 1.5, "buffers": 3 * 0.25,
                               "crossbars": 6 * (0.5 + 64 * 256 * 2.0e-6), "adcs": 6 * 8 * 1000e-6,
                               "io": 0.125})
    # 5 × 6 weights in 8 columns each, over all 6 crossbars
    assert crossbar_utilization(xb_program(), target) == pytest.approx(5 * 6 * 8 / (6 * 64 * 256))
    assert estimate(xb_program(), target).crossbar_utilization == pytest.approx(240 / (6 * 64 * 256))


def test_area_of_cam_cores():
    from nmc.backends.target import load_target

    text = load_target("acam").source.replace("search_cycles = 4", "search_cycles = 4\ncore_area_mm2 = 0.25")
    acam = parse_target(text.replace("count = 4096", "count = 8"))
    a = area(parse_program(".nmc 2\n.target \"acam\"\n.batched true\n.core 0\n    sync\n"), acam)
    c = acam.costs
    assert a["cam_cores"] == pytest.approx(8 * 0.25)
    assert a["buffers"] == pytest.approx((1 + 8) * c.buffer_area_mm2)
    assert a["crossbars"] == a["adcs"] == 0.0
    assert a["vector_cores"] == pytest.approx(c.vector_core_area_mm2)


# ----------------------------------------------------------------------------- the core timelines
XB2_PROGRAM = XB_PROGRAM.replace(
    ".core 0\n", ".const w1 i32 [5, 6]\n.tile t1 weights=w1 core=1 xbar=1 row=0 col=0 in_bits=5 in_signed=1 "
    "adc_range=127.0 weight_bits=8 layer=-1\n.buffer q2 i32 6 core1\n.buffer r0 i32 5 core0\n.buffer v0 f32 320 core0\n"
    ".core 0\n")
MVM = 9.0 + 3 * 15.0 + 15.0   # one signed MVM on xb_target() (test_adc_bound_signed_mvm): 69 cycles
ADD5 = "    add acc2[0; 5:1], acc2[0; 5:1], acc2[0; 5:1]"          # 1 cycle on 32 lanes
# ... and 5/32 of a cycle of the core's time in a stream of inferences (a batched program's add runs
# over many inferences at once: the throughput side counts lane passes, not whole instructions)
ADD5_SHARE = 5 / 32


def xb2(core1: str, core0: str = "    sync"):
    return parse_program(XB2_PROGRAM.format(body=core1, in_bits=5, signed=1).replace(
        ".core 0\n    sync\n", f".core 0\n{core0}\n"))


@pytest.mark.parametrize("core1, latency", [
    # the core goes on issuing while its crossbar works, and waits where it reads the result
    (f"{XMVM}\n{ADD5}\n    add acc2[0; 5:1], acc[0; 5:1], acc2[0; 5:1]\n    sync", MVM + 1),
    # ... or overwrites the crossbar's input
    (f"{XMVM}\n    add q[0; 6:1], q[0; 6:1], q[0; 6:1]\n    sync", MVM + 1),
    # work that touches neither runs alongside
    (f"{XMVM}\n{ADD5}\n{ADD5}\n    sync", MVM),
    # one tile does one MVM at a time; two tiles work concurrently
    (f"{XMVM}\n{XMVM}\n    sync", 2 * MVM),
    (f"{XMVM}\n    xmvm acc2[0; 5:1], @t1, q2[0; 6:1]\n    sync", MVM),
    # a loop mixing crossbar and vector work runs on the core: no overlap
    ("    loop %i, 2 {\n" + XMVM + "\n" + ADD5 + "\n    }\n    sync", None),
    # an MVM waits for the input another crossbar writes ...
    (f"    xmvm big[0; 5:1], @t0, q[0; 6:1]\n    xmvm acc2[0; 5:1], @t1, big[0; 6:1]\n    sync", 2 * MVM),
    # ... and before overwriting the input another crossbar reads
    (f"{XMVM}\n    xmvm q[0; 5:1], @t1, q2[0; 6:1]\n    sync", 2 * MVM),
    # a loop of MVMs on one tile is handed to that crossbar: the core goes on meanwhile
    ("    loop %i, 2 {\n" + XMVM + "\n    }\n" + ADD5 + "\n    sync", MVM + 60.0),
    # a loop over two tiles runs on the core: body 2 MVMs, then one interval (the busiest ADCs)
    ("    loop %i, 2 {\n" + XMVM + "\n    xmvm acc2[0; 5:1], @t1, q2[0; 6:1]\n    }\n" + ADD5 + "\n    sync",
     2 * MVM + 60.0 + 1),
], ids=["waits-to-read-result", "waits-to-overwrite-input", "independent-work-overlaps", "one-tile-in-turn",
        "two-tiles-concurrent", "mixed-loop-on-core", "waits-for-written-input", "waits-before-overwriting",
        "mvm-loop-on-crossbar", "two-tile-loop-on-core"])
def test_crossbars_run_concurrently_with_their_core(core1, latency):
    stats = estimate(xb2(core1), xb_target())
    if latency is None:   # pipelined: body latency + one interval of its busiest unit (the ADCs)
        latency = (MVM + 1) + 1 * 4 * 15.0
        assert stats.core_busy_cycles["1"] == pytest.approx(latency - 1 + ADD5_SHARE)
    assert stats.latency_cycles == pytest.approx(latency)


def test_the_end_of_a_stream_waits_for_its_crossbars():
    stats = estimate(xb2(f"{XMVM}\n{ADD5}", "    add r0[0; 5:1], r0[0; 5:1], r0[0; 5:1]"), xb_target())
    assert stats.latency_cycles == pytest.approx(MVM)


def test_crossbar_work_is_not_core_busy_time():
    stats = estimate(xb2(f"{XMVM}\n{ADD5}\n{ADD5}\n    sync"), xb_target())
    assert stats.core_busy_cycles == {"0": 0.0, "1": 2 * ADD5_SHARE}
    assert stats.bottleneck_cycles == pytest.approx(4 * 15.0)    # the ADCs of t0


def test_a_message_of_crossbar_results_leaves_when_they_are_ready():
    # core 1 → core 0 on a 2-wide mesh: 2 hops (with the local one) of 2 cycles; 160 bits, one
    # 256-bit flit; core 1 goes on issuing meanwhile
    core1 = f"{XMVM}\n    send $0, acc[0; 5:1]\n{ADD5}"
    stats = estimate(xb2(core1, "    recv r0[0; 5:1], $1"), xb_target())
    assert stats.latency_cycles == pytest.approx(MVM + 1 + 2 * 2)
    assert stats.core_busy_cycles == {"0": 0.0, "1": ADD5_SHARE}
    assert stats.energy_pj["noc"] == pytest.approx(160 * 2 * xb_target().costs.noc_pj_per_bit_hop)


def test_a_buffer_in_flight_is_not_overwritten_before_it_leaves():
    # the message of acc leaves at 69 + 1; overwriting acc waits for that, then 1 cycle
    core1 = f"{XMVM}\n    send $0, acc[0; 5:1]\n    add acc[0; 5:1], acc2[0; 5:1], acc2[0; 5:1]"
    stats = estimate(xb2(core1, "    add r0[0; 5:1], r0[0; 5:1], r0[0; 5:1]"), xb_target())
    assert stats.latency_cycles == pytest.approx(MVM + 1 + 1)


def test_a_message_into_a_buffer_a_crossbar_reads_waits_for_it():
    # core 0's message into q arrives at 1 + 2 × 2 = 5, but t0 reads q until 69
    core1 = f"{XMVM}\n    recv q[0; 6:1], $0\n{ADD5}"
    stats = estimate(xb2(core1, "    send $1, s0[0; 6:1]"), xb_target())
    assert stats.latency_cycles == pytest.approx(MVM + 1)


def test_a_barrier_waits_for_every_core_and_its_crossbars():
    # core 0: 10 steps of 32 lanes, the barrier (at the end of core 1's MVM), then 1 step
    core0 = "    add v0[0; 320:1], v0[0; 320:1], v0[0; 320:1]\n    sync\n    add v0[0; 32:1], v0[0; 32:1], v0[0; 32:1]"
    stats = estimate(xb2(f"{XMVM}\n    sync", core0), xb_target())
    assert stats.latency_cycles == pytest.approx(MVM + 1)


NOC = """\
.nmc 2
.target "ideal"
.batched true
.input "x" in0 f32 [7]
.output "y" out0 f32 [7]
.buffer in0 f32 7 global
.buffer out0 f32 7 global
.buffer a f32 7 core{far}
.buffer r f32 7 core0
.core 0
{core0}
.core {far}
{far_body}
"""


def _noc_target():
    return _ideal_with(noc_bits_per_cycle=10, noc_hop_cycles=3, noc_pj_per_bit_hop=0.5)


def _ideal_with(**costs):
    from nmc.backends.target import load_target

    return parse_target(load_target("ideal").source + "\n[costs]\n" + "".join(f"{k} = {v}\n" for k, v in costs.items()))


@pytest.mark.parametrize("far, hops", [(1, 2), (2, 2), (3, 3), (4, 3), (8, 5)])
def test_a_message_crosses_the_mesh(far, hops):
    # cores 0..far on a ceil(sqrt(far + 1))-wide mesh, XY distance plus the local hop; 7 f32 =
    # 224 bits over a 10-bit link: 23 cycles, then 3 cycles a hop; core 0 then adds (1 cycle)
    p = parse_program(NOC.format(far=far, core0="    recv r[0; 7:1], ${}\n    add r[0; 7:1], r[0; 7:1], r[0; 7:1]".format(far),
                                 far_body="    send $0, a[0; 7:1]"))
    stats = estimate(p, _noc_target())
    assert stats.latency_cycles == 23 + 3 * hops + 1
    assert stats.energy_pj["noc"] == pytest.approx(224 * hops * 0.5)
    assert stats.core_busy_cycles == {"0": 7 / 32, str(far): 23.0}   # the add: 7 of 32 lanes, streamed
    assert stats.energy_by_layer_pj["(program i/o)"] == pytest.approx(stats.energy_total_pj)


def test_a_recurrence_across_cores_is_scheduled_step_by_step():
    # three round trips: core 1 sends (23 + 2 hops × 3), core 0 adds (1) and sends back (23 + 6)
    p = parse_program(NOC.format(
        far=1,
        core0="    loop.seq %t, 3 {\n    recv r[0; 7:1], $1\n    add r[0; 7:1], r[0; 7:1], r[0; 7:1]\n"
              "    send $1, r[0; 7:1]\n    }",
        far_body="    loop.seq %t, 3 {\n    send $0, a[0; 7:1]\n    recv a[0; 7:1], $0\n    }"))
    stats = estimate(p, _noc_target())
    assert stats.latency_cycles == 3 * (29 + 1 + 29)
    assert stats.energy_pj["noc"] == pytest.approx(6 * 224 * 2 * 0.5)


def test_mismatched_messages_deadlock():
    from nmc.runtime.timing import TimingError

    p = parse_program(NOC.format(far=1, core0="    recv r[0; 7:1], $1", far_body="    recv a[0; 7:1], $0"))
    with pytest.raises(TimingError, match=r"^timing: the cores deadlock \(send/recv/sync mismatch\)$"):
        estimate(p, _noc_target())
    p = parse_program(NOC.format(far=1, core0="    sync", far_body="    add a[0; 7:1], a[0; 7:1], a[0; 7:1]"))
    with pytest.raises(TimingError, match="deadlock"):
        estimate(p, _noc_target())


def test_utilizations_without_crossbar_work():
    from nmc.backends.target import load_target

    target = xb_target()
    # tiles declared, nothing run: no time passes and no ADC works
    idle = estimate(xb_program("    sync"), target)
    assert (idle.latency_cycles, idle.adc_utilization) == (0.0, 0.0)
    assert idle.crossbar_utilization == pytest.approx(240 / (6 * 64 * 256))
    # vector work only, no tiles: no cells used, no ADCs
    p = parse_program(NOC.format(far=1, core0="    add r[0; 7:1], r[0; 7:1], r[0; 7:1]", far_body="    sync")
                      .replace("    add r", "    sync\n    add r", 1))
    vector = estimate(p, target)
    assert vector.latency_cycles == 1
    assert (vector.crossbar_utilization, vector.adc_utilization) == (0.0, 0.0)
    assert estimate(p, load_target("ideal")).crossbar_utilization == 0.0
    # a program with tiles on a chip without crossbars uses no crossbar cells
    assert crossbar_utilization(xb_program(), load_target("ideal")) == 0.0
    busy = xb_program(ADD5.replace("acc2", "acc") + "\n    sync")
    assert estimate(busy, load_target("ideal")).adc_utilization == 0.0


def test_adc_utilization_of_a_one_cycle_mvm():
    # a read of 0.25 cycles and 3 conversions of 0.25 cycles per ADC: 1 cycle, ADCs busy 3/4 of it
    text = XB_TARGET.format(technology="pcm", cell_bits=2, dac_bits=2, adc_ns=0.125, adc_ns_per_bit=0.0,
                            cols_per_adc=32)
    target = parse_target(text.replace("array_read_ns = 3.0", "array_read_ns = 0.125")
                          .replace("dac_ns_per_level = 0.5", "dac_ns_per_level = 0.0"))
    stats = estimate(xb_program(in_bits=1, signed=0), target)
    assert stats.latency_cycles == 1.0
    assert stats.adc_utilization == 0.75


def test_area_adds_every_vector_group():
    two = XB_TARGET.replace('[[cores]]\nkind = "vector"\ncount = 1\n',
                            '[[cores]]\nkind = "vector"\ncount = 2\nprecision = "f32"\n\n[[cores]]\nkind = "vector"\ncount = 1\n', 1)
    target = parse_target(two.format(technology="pcm", cell_bits=2, dac_bits=2, adc_ns=1.0, adc_ns_per_bit=0.25,
                                     cols_per_adc=32))
    a = area(xb_program(), target)
    assert a["vector_cores"] == pytest.approx(3 * 1.5)
    assert a["buffers"] == pytest.approx((3 + 2) * 0.25)


@pytest.mark.parametrize("batched, share", [("true", 7 / 32 + 3 * 28 / 32), ("false", 1 + 3)])
def test_a_batched_program_streams_its_small_instructions(batched, share):
    """One inference alone takes whole passes (latency: an add of 7 elements is one cycle on 32
    lanes, a 28-byte load one of the 32-byte buffer port ... and 3 of them); in a stream of
    inferences a batched program's instruction runs over many at once, so the core's share of
    the interval is the lane (byte) passes it fills: 7/32, not 1. A fixed-batch program cannot
    share passes across inferences."""
    text = NOC.format(far=1, core0="    recv r[0; 7:1], $1\n    add r[0; 7:1], r[0; 7:1], r[0; 7:1]\n"
                                   "    load r[0; 7:1], in0[0; 7:1]\n    load r[0; 7:1], in0[0; 7:1]\n"
                                   "    load r[0; 7:1], in0[0; 7:1]", far_body="    send $0, a[0; 7:1]")
    stats = estimate(parse_program(text.replace(".batched true", f".batched {batched}")), _noc_target())
    assert stats.core_busy_cycles["0"] == pytest.approx(share)
    assert stats.latency_cycles == 23 + 3 * 2 + 1 + 3   # latency: whole passes either way
