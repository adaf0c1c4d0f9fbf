"""nmc's compiler: ONNX → graph IR → passes → ISA program.

``compile_model`` and ``Compiled`` are imported from the driver on first use, so that a
submodule (the command line running a program) does not import ONNX and the passes.
"""
from __future__ import annotations

__all__ = ["compile_model", "Compiled"]


def __getattr__(name: str):
    if name in __all__:
        from nmc.compiler import driver

        return getattr(driver, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
