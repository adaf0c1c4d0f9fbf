"""Compiler errors: each names the node (IR name, ONNX name and op) and the stage."""
from __future__ import annotations

from nmc.isa.errors import NmcError


class CompileError(NmcError):
    """The model cannot be compiled as given."""


class ModelError(CompileError):
    """The ONNX model is malformed or cannot be read."""


class UnsupportedOpError(CompileError):
    """An ONNX operator (or an attribute value of one) that nmc does not implement."""


class NotConstantError(UnsupportedOpError):
    """An operator parameter (weight, shape, axes, ...) is computed at run time, but nmc needs
    its value at compile time. ``tensor`` is the ONNX name of that input."""

    def __init__(self, message: str, tensor: str):
        super().__init__(message)
        self.tensor = tensor
