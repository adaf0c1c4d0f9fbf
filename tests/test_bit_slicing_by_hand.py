"""bit-slicing's ADC ranges on pcm, worked out by hand from the weights.

pcm: 8-bit weights as differential pairs of 7-bit cells (one slice: the cell holds |q|), 8-bit
DACs (an 8-bit input in one read), 8-bit signed ADCs: 127 codes each side of zero. The ADC step
is the smallest power of two (at least 1) whose 127 codes reach the current to cover, and the
range is step × 127. Without calibration the current to cover is the worst case: per column the
larger polarity sum of |q| times the largest DAC input 255. With calibration samples it is the
``percentile`` of |column current| over every conversion (nearest rank from the top).

The layer: y = x @ W with W's columns [1, 1, 1, −1] and [0.25, −1, 0, 0]; per-column scales
max|w| / 127 make q = [127, 127, 127, −127] and [32, −127, 0, 0].
"""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from nmc.compiler import compile_model

W = np.array([[1, 0.25], [1, -1], [1, 0], [-1, 0]], np.float32)


def _model():
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2])],
                              [numpy_helper.from_array(W, "w")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _tile(compiled):
    (record,) = [m for m in compiled.graph.mapping.values() if m.unit == "crossbar"]
    q = compiled.graph.constants[record.quant.weights]
    (tile,) = record.tiles
    return q, tile, record.quant


def test_worst_case_range_from_the_weights():
    q, tile, _ = _tile(compile_model(_model(), "pcm"))
    np.testing.assert_array_equal(q[0], [[127, 127, 127, -127], [32, -127, 0, 0]])
    # column 0 draws at most 3 · 127 · 255 = 97155 (its positive cells): 97155 / 127 = 765 → step 1024
    assert tile.adc_range == 1024 * 127
    assert tile.adc_range_source == "worst case of the programmed weights"


@pytest.mark.parametrize("percentile,step", [
    # 10 samples of x = 1 (255 after quantisation, unsigned: one phase, one read) × 2 columns = 20
    # conversions: column 0 gives 255 · (3 · 127 − 127) = 64770, column 1 255 · |32 − 127| = 24225
    (99.9, 512),   # the largest: 64770 / 127 = 510 → 512
    (50.0, 256),   # the 11th largest of 20: 24225 / 127 = 190.7 → 256
])
def test_calibrated_range_covers_the_percentile_of_the_currents(percentile, step):
    compiled = compile_model(_model(), "pcm", calibration=np.ones((10, 4), np.float32),
                             pass_options={"bit-slicing": f"percentile={percentile:g}"})
    _, tile, quant = _tile(compiled)
    assert not quant.input_signed and quant.input_scale == pytest.approx(1 / 255)
    assert tile.adc_range == step * 127
    assert tile.adc_range_source == (f"calibration: {percentile:g}th percentile of |column current| over "
                                     "20 conversions")


def test_signed_inputs_double_the_conversions():
    """Inputs that can be negative are applied in two sign phases: twice the conversions."""
    x = np.ones((10, 4), np.float32)
    x[::2] *= -1
    compiled = compile_model(_model(), "pcm", calibration=x)
    _, tile, quant = _tile(compiled)
    assert quant.input_signed and quant.input_scale == pytest.approx(1 / 127)
    # signed 8-bit inputs: |x| → 127; column 0 draws 127 · 254 = 32258 in its phase → 32258 / 127 = 254 → 256
    assert tile.adc_range == 256 * 127
    assert tile.adc_range_source.endswith("over 40 conversions")
