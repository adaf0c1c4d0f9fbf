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


ADDERS = ("tree", "chain")  # digital CIM: an adder tree per output, or a full adder in every bit cell


def adder_chain_full_adders(inputs: int, width: int) -> int:
    """Full adders of a column that ripples its running sum through every row (a full adder beside
    each bit cell, Colonnade's layout: Kim et al., JSSC 2021): ``inputs`` adders as wide as the
    finished sum, ``width + ceil(log2 inputs)`` bits (8-bit weights over 128 rows: 15 per row)."""
    return inputs * (width + math.ceil(math.log2(max(inputs, 2))))


def digital_cim_read_pj(rows: int, weight_bits: int, input_bits: int, outputs: int, fa_pj: float,
                        gate_pj: float, adders: str = "tree") -> float:
    """One bit-serial cycle of a digital SRAM CIM array: every row's input bit gates its
    ``weight_bits``-bit weight (one gate per weight bit); the ``rows`` products of an output are
    summed by an adder tree (Chih et al., ISSCC 2021; Fujiwara et al., ISSCC 2022) or a chain of
    full adders down the column (``adders = "chain"``); a shift-and-add accumulator as wide as the
    finished dot product (``weight_bits + log2(rows) + input_bits`` bits) takes the sum. No SRAM
    read is charged per cycle: the product gate reads the cell's storage node, not a bit line."""
    adder = adder_tree_full_adders if adders == "tree" else adder_chain_full_adders
    accumulator = weight_bits + math.ceil(math.log2(max(rows, 2))) + input_bits
    return outputs * ((adder(rows, weight_bits) + accumulator) * fa_pj + rows * weight_bits * gate_pj)


def level_dac_pj(unit_pj: float, bits: int) -> float:
    """A ``bits``-bit DAC driving one row: a binary-weighted DAC switches up to ``2^bits − 1`` unit
    elements (capacitive DACs: switching energy grows as 2^b·C_u·V², Saberi et al., IEEE TCAS-I 58,
    2011), ``unit_pj`` for a 1-bit one."""
    return unit_pj * ((1 << bits) - 1)
