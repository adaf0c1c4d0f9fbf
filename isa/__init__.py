"""nmc's instruction set: the contract between compiler and runtime (imports nothing of nmc)."""
from isa.asm import format_program, parse_program
from isa.container import load_program, save_program
from isa.errors import AsmSyntaxError, NmcError, ProgramError
from isa.instructions import OPCODES, Instr, Loop
from isa.program import Buffer, Const, Layer, Port, Program
from isa.validate import validate
from isa.views import Affine, CoreRef, Imm, View, WeightRef

__all__ = ["format_program", "parse_program", "load_program", "save_program", "AsmSyntaxError",
           "NmcError", "ProgramError", "OPCODES", "Instr", "Loop", "Buffer", "Const", "Layer", "Port",
           "Program", "validate", "Affine", "CoreRef", "Imm", "View", "WeightRef"]
