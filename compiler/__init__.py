"""nmc's compiler: ONNX → graph IR → passes → ISA program."""
from nmc.compiler.driver import Compiled, compile_model

__all__ = ["compile_model", "Compiled"]
