"""Property tests of the crossbar index arithmetic: tile planning, block matrices and partial
sums, weight bit slicing, the physical (sliced, DAC-fed, ADC-read) MVM, and convolutions whose
im2col windows are strided views, each against a plain integer reference."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from onnx import helper

from nmc.backends.target import CrossbarCores, Device, load_target, parse_target
from nmc.compiler import compile_model
from nmc.compiler.errors import CompileError
from nmc.compiler.ir import ops
from nmc.backends.tile_arithmetic import TileArithmetic
from nmc.compiler.passes.bit_slicing import block_matrix
from nmc.compiler.passes.tile_mapping import plan_blocks
from helpers import make_model
from nmc.isa.program import Tile
from nmc.runtime import SimOptions, execute
from nmc.runtime.crossbar import ProgrammedTile
from test_quantized import reference

SCHEMES = st.sampled_from(["differential", "offset"])
FAST = settings(max_examples=150, deadline=None)


# ----------------------------------------------------------------------------- plan_blocks
@st.composite
def layer_shapes(draw):
    """A [groups × (outs, channels·kernel)] weight matrix and a crossbar to cut it for."""
    groups = draw(st.integers(1, 8))
    channels = draw(st.integers(1, 8))
    outs = draw(st.integers(1, 8))
    kernel = draw(st.sampled_from([1, 2, 3, 4, 9]))
    rows = draw(st.integers(1, 40))
    cols = draw(st.integers(1, 40))
    cols_per_out = draw(st.integers(1, 8))
    return groups, channels, outs, kernel, rows, cols, cols_per_out


@FAST
@given(layer_shapes())
def test_plan_blocks_cover_every_weight_once_within_the_crossbar(shape):
    groups, channels, outs, kernel, rows, cols, cols_per_out = shape
    if kernel > rows or cols_per_out > cols:
        with pytest.raises(CompileError):
            plan_blocks(groups, channels, outs, kernel, rows, cols, cols_per_out)
        return
    blocks = plan_blocks(groups, channels, outs, kernel, rows, cols, cols_per_out)
    covered = np.zeros((groups, outs, channels), np.int64)
    for b in blocks:
        assert b.groups >= 1 and b.channels >= 1 and b.outs >= 1
        assert b.rows == b.groups * b.channels * kernel <= rows
        assert b.cols == b.groups * b.outs * cols_per_out <= cols
        covered[b.group:b.group + b.groups, b.out:b.out + b.outs, b.channel:b.channel + b.channels] += 1
    np.testing.assert_array_equal(covered, 1)  # every (group, output, input channel) exactly once

    fits = channels * kernel <= rows and outs <= cols // cols_per_out
    for b in blocks:
        if b.groups > 1:  # packed block-diagonally: only whole groups, and only when one fits
            assert fits
            assert (b.channel, b.channels, b.out, b.outs) == (0, channels, 0, outs)
    if groups > 1 and fits:  # whole groups are packed as densely as the crossbar allows
        pack = min(rows // (channels * kernel), (cols // cols_per_out) // outs, groups)
        assert len(blocks) == -(-groups // pack)
    else:
        per_group = -(-channels // (rows // kernel)) * -(-outs // (cols // cols_per_out))
        assert len(blocks) == groups * per_group


@FAST
@given(layer_shapes(), st.integers(1, 4), st.integers(0, 2**32 - 1))
def test_block_partial_sums_reassemble_the_matrix_product(shape, batch, seed):
    groups, channels, outs, kernel, rows, cols, cols_per_out = shape
    assume(kernel <= rows and cols_per_out <= cols)
    rng = np.random.default_rng(seed)
    q = rng.integers(-127, 128, (groups, outs, channels * kernel)).astype(np.int32)
    x = rng.integers(-255, 256, (batch, groups, channels * kernel)).astype(np.int64)  # im2col rows per group
    y = np.zeros((batch, groups, outs), np.int64)
    for b in plan_blocks(groups, channels, outs, kernel, rows, cols, cols_per_out):
        w = block_matrix(q, b, kernel)
        assert w.shape == (b.groups * b.outs, b.rows)
        # the block's input: the same channel window of each packed group, one after another
        xin = x[:, b.group:b.group + b.groups, b.channel * kernel:(b.channel + b.channels) * kernel]
        part = xin.reshape(batch, -1) @ w.T.astype(np.int64)
        y[:, b.group:b.group + b.groups, b.out:b.out + b.outs] += part.reshape(batch, b.groups, b.outs)
    np.testing.assert_array_equal(y, np.einsum("bgk,gmk->bgm", x, q.astype(np.int64)))


# ----------------------------------------------------------------------------- slice_levels
@st.composite
def sliced_weights(draw):
    weight_bits = draw(st.integers(2, 8))
    cell_bits = draw(st.integers(1, weight_bits))
    scheme = draw(SCHEMES)
    qmax = (1 << (weight_bits - 1)) - 1
    lo = -qmax - 1 if scheme == "offset" else -qmax  # offset coding also holds −2^(b−1)
    q = draw(hnp.arrays(np.int32, hnp.array_shapes(min_dims=1, max_dims=2, max_side=6),
                        elements=st.integers(lo, qmax)))
    return q, weight_bits, cell_bits, scheme


@FAST
@given(sliced_weights())
def test_slices_shift_and_add_back_to_the_weights(case):
    q, weight_bits, cell_bits, scheme = case
    arith = TileArithmetic(weight_bits, cell_bits, scheme, dac_bits=1, adc_bits=8)
    levels = arith.slice_levels(q)
    cell_max = (1 << cell_bits) - 1
    per_polarity = arith.columns_per_weight // (2 if scheme == "differential" else 1)
    assert len(levels) == per_polarity
    total = sum(lv.astype(np.int64) << (j * cell_bits) for j, lv in enumerate(levels))
    if scheme == "offset":
        assert all(((lv >= 0) & (lv <= cell_max)).all() for lv in levels)
        total -= 1 << (weight_bits - 1)
    else:  # G+ − G−: a positive weight only in G+, a negative one only in G−
        assert all((np.abs(lv) <= cell_max).all() and (lv * np.sign(q) >= 0).all() for lv in levels)
    np.testing.assert_array_equal(total, q)


# ----------------------------------------------------------------------------- physical MVM
SPEC = CrossbarCores(count=1, technology="pcm", rows=64, cols=64, crossbars_per_core=1, cell_bits=1,
                     weight_bits=8, input_bits=8, dac_bits=1, adc_bits=30, cols_per_adc=1,
                     weight_scheme="differential")


@st.composite
def tile_cases(draw):
    weight_bits = draw(st.integers(2, 8))
    cell_bits = draw(st.integers(1, weight_bits))
    in_bits = draw(st.integers(2, 8))
    dac_bits = draw(st.integers(1, in_bits))
    signed = draw(st.booleans())
    scheme = draw(SCHEMES)
    n, k, m = draw(st.integers(1, 6)), draw(st.integers(1, 12)), draw(st.integers(1, 5))
    qmax = (1 << (weight_bits - 1)) - 1
    q = draw(hnp.arrays(np.int64, (n, k), elements=st.integers(-qmax, qmax)))
    x_lo, x_hi = (-(1 << (in_bits - 1)) + 1, (1 << (in_bits - 1)) - 1) if signed else (0, (1 << in_bits) - 1)
    x = draw(hnp.arrays(np.int64, (m, k), elements=st.integers(x_lo, x_hi)))
    return weight_bits, cell_bits, in_bits, dac_bits, signed, scheme, q, x


@FAST
@given(tile_cases())
def test_physical_mvm_is_exact_with_noise_off_and_a_lossless_adc(case):
    weight_bits, cell_bits, in_bits, dac_bits, signed, scheme, q, x = case
    spec = dataclasses.replace(SPEC, weight_bits=weight_bits, cell_bits=cell_bits, input_bits=in_bits,
                               dac_bits=dac_bits, weight_scheme=scheme)
    steps = (1 << (spec.adc_bits - 1)) - 1 if scheme == "differential" else (1 << spec.adc_bits) - 1
    tile = Tile("t", "w", 0, 0, 0, 0, in_bits, signed, float(steps), weight_bits, 0)  # lsb = 1, far above any current
    pt = ProgrammedTile(tile, q, spec, Device("pcm-joshi2020"), SimOptions(noise=False), np.random.default_rng(0))
    assert pt.lossless()
    np.testing.assert_array_equal(pt.mvm_physical(x), x @ q.T)


# ----------------------------------------------------------------------------- convolutions
def lossless_pcm():
    text = load_target("pcm").source.replace("adc_bits = 8", "adc_bits = 24")
    return parse_target(text, "pcm-lossless")


TARGETS = {"sram-digital": lambda: load_target("sram-digital"), "pcm-lossless": lossless_pcm}


@st.composite
def conv_cases(draw):
    group = draw(st.sampled_from([1, 2, 3]))
    cin = group * draw(st.integers(1, 3))
    cout = group * draw(st.integers(1, 3))
    kernel = [draw(st.integers(1, 3)) for _ in range(2)]
    dil = [draw(st.integers(1, 2)) for _ in range(2)]
    strides = [draw(st.integers(1, 3)) for _ in range(2)]
    pads = [draw(st.integers(0, 2)) for _ in range(4)]
    spatial = [draw(st.integers((k - 1) * d + 1, 8)) for k, d in zip(kernel, dil)]
    relu_first = draw(st.booleans())   # non-negative inputs: unsigned input coding
    bias = draw(st.booleans())
    # small crossbars force several row and column blocks (partial sums added digitally)
    rows = draw(st.sampled_from([0, 9, 16]))
    cols = draw(st.sampled_from([0, 16, 32]))
    target = draw(st.sampled_from(sorted(TARGETS)))
    return group, cin, cout, kernel, dil, strides, pads, spatial, relu_first, bias, rows, cols, target


@settings(max_examples=30, deadline=None)
@given(conv_cases(), st.integers(0, 2**32 - 1))
def test_crossbar_conv_equals_the_integer_reference(case, seed):
    group, cin, cout, kernel, dil, strides, pads, spatial, relu_first, bias, rows, cols, target = case
    rng = np.random.default_rng(seed)
    inits = {"w": rng.standard_normal([cout, cin // group] + kernel).astype(np.float32)}
    inputs = ["h" if relu_first else "x", "w"]
    if bias:
        inits["b"] = rng.standard_normal(cout).astype(np.float32)
        inputs.append("b")
    nodes = [helper.make_node("Relu", ["x"], ["h"])] if relu_first else []
    nodes.append(helper.make_node("Conv", inputs, ["y"], group=group, dilations=dil, strides=strides, pads=pads))
    model = make_model(nodes, {"x": ["N", cin] + spatial}, {"y": None}, inits)
    tgt = TARGETS[target]()
    options = {"tile-mapping": f"rows={rows},cols={cols}"}
    compiled = compile_model(model, target=tgt, pass_options=options)
    g = compiled.graph
    conv = next(n for n in g.nodes() if isinstance(n.op, ops.Conv))
    assert g.mapping[conv.name].unit == "crossbar"
    x = rng.standard_normal([3, cin] + spatial).astype(np.float32)
    got = execute(compiled.program, {"x": x}, target=tgt, options=SimOptions(noise=False))["y"]
    np.testing.assert_array_equal(got, reference(g, {"x": x}, tgt)["y"])
