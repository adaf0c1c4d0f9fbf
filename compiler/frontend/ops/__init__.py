"""ONNX operator converters, by family. ``CONVERTERS[op_type]`` lowers one ONNX node to IR."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

CONVERTERS: dict[str, Callable] = {}
INTEGER_OUTPUTS: set[str] = set()  # op types whose converter itself handles integer outputs
TYPED_OPS: set[str] = set()  # op types that compute integer and boolean tensors in their own types


@dataclass(frozen=True)
class OpInfo:
    """What ``docs/ops.md`` says of one supported op: the unit it runs on (``crossbar``,
    ``vector``, ``CAM``, or a choice such as ``crossbar or vector``), the model opsets its
    converter reads (``all``, or a range such as ``7+``), and its limits in one line."""

    unit: str
    opsets: str
    limits: str
    family: str


OP_INFO: dict[str, OpInfo] = {}


def converter(*op_types: str, integer_outputs: bool = False, typed: bool = False, unit: str = "vector",
              opsets: str = "all", limits: str = ""):
    """Register ``fn(ctx)`` as the converter of ``op_types``; ``unit``, ``opsets`` and ``limits``
    describe it in ``docs/ops.md`` (``python -m nmc.compiler.frontend.docs``). ``typed``: the op
    also computes i32 and bool tensors (DESIGN.md "Tensor types"); other ops take float only."""
    def register(fn):
        family = fn.__module__.rsplit(".", 1)[-1]
        for op_type in op_types:
            CONVERTERS[op_type] = fn
            OP_INFO[op_type] = OpInfo(unit, opsets, limits, family)
            if integer_outputs:
                INTEGER_OUTPUTS.add(op_type)
            if typed:
                TYPED_OPS.add(op_type)
        return fn
    return register


def supported_ops() -> list[str]:
    _load()
    return sorted(CONVERTERS)


def _load() -> None:
    from nmc.compiler.frontend.ops import (  # noqa: F401  (registration)
        einsum, elementwise, indexing, ml, nn, norm, quant, recurrent, resize, shape, trees)
