"""Component models: how the energy of a digital CIM array and of a DAC grows with its size and bits.

The figures they start from are ``[costs]`` fields (backends/costs.py, each with its source); a
target's node and supply scale the CMOS ones (backends/scaling.py). The ADC model is
``Costs.adc_conversion_pj``.
"""
from __future__ import annotations

import math


def adder_tree_full_adders(inputs: int, width: int) -> int:
    """Full adders of a binary tree summing ``inputs`` unsigned ``width``-bit values: level ``l``
    (1 at the leaves) has ``ceil(inputs / 2^l)`` adders of ``width + l − 1`` bits (each level's sum
    is one bit wider). 256 inputs of 4 bits: 1,267."""
    total, n, bits = 0, inputs, width
    while n > 1:
        pairs = n // 2
        total += pairs * bits
        n = pairs + n % 2   # an odd one out passes to the next level unchanged
        bits += 1
    return total


def digital_cim_read_pj(rows: int, weight_bits: int, input_bits: int, outputs: int, fa_pj: float,
                        gate_pj: float) -> float:
    """One bit-serial cycle of a digital SRAM CIM array (Chih et al., ISSCC 2021's structure): every
    row's input bit gates its ``weight_bits``-bit weight (one gate per weight bit), an adder tree per
    output sums the ``rows`` products, and a shift-and-add accumulator as wide as the finished dot
    product (``weight_bits + log2(rows) + input_bits`` bits) takes the tree's sum."""
    tree = adder_tree_full_adders(rows, weight_bits)
    accumulator = weight_bits + math.ceil(math.log2(max(rows, 2))) + input_bits
    return outputs * ((tree + accumulator) * fa_pj + rows * weight_bits * gate_pj)


def level_dac_pj(unit_pj: float, bits: int) -> float:
    """A ``bits``-bit DAC driving one row: a binary-weighted DAC switches up to ``2^bits − 1`` unit
    elements (capacitive DACs: switching energy grows as 2^b·C_u·V², Saberi et al., IEEE TCAS-I 58,
    2011), ``unit_pj`` for a 1-bit one."""
    return unit_pj * ((1 << bits) - 1)
