"""Compiler errors: each names the node (IR name, ONNX name and op) and the stage."""
from __future__ import annotations

from nmc.isa.errors import NmcError


class CompileError(NmcError):
    """The model cannot be compiled as given."""


class InternalError(RuntimeError):
    """A bug in nmc, not in the model or the target: not an ``NmcError``, so the CLI reports it
    as an internal error (exit code 3) and API users do not mistake it for bad input."""


class PassCrashed(InternalError):
    """An exception other than an ``NmcError`` escaped a pass. The original is its ``__cause__``."""


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
