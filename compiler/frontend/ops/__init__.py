"""ONNX operator converters, by family. ``CONVERTERS[op_type]`` lowers one ONNX node to IR."""
from __future__ import annotations

from typing import Callable

CONVERTERS: dict[str, Callable] = {}


def converter(*op_types: str):
    def register(fn):
        for op_type in op_types:
            CONVERTERS[op_type] = fn
        return fn
    return register


def supported_ops() -> list[str]:
    _load()
    return sorted(CONVERTERS)


def _load() -> None:
    from compiler.frontend.ops import elementwise, nn, norm, shape  # noqa: F401  (registration)
