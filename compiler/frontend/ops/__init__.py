"""ONNX operator converters, by family. ``CONVERTERS[op_type]`` lowers one ONNX node to IR."""
from __future__ import annotations

from typing import Callable

CONVERTERS: dict[str, Callable] = {}
INTEGER_OUTPUTS: set[str] = set()  # op types whose converter itself handles integer outputs


def converter(*op_types: str, integer_outputs: bool = False):
    def register(fn):
        for op_type in op_types:
            CONVERTERS[op_type] = fn
            if integer_outputs:
                INTEGER_OUTPUTS.add(op_type)
        return fn
    return register


def supported_ops() -> list[str]:
    _load()
    return sorted(CONVERTERS)


def _load() -> None:
    from nmc.compiler.frontend.ops import elementwise, nn, norm, quant, shape, trees  # noqa: F401  (registration)
