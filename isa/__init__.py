"""nmc's instruction set: the contract between compiler and runtime (imports nothing of nmc)."""
from nmc.isa.asm import format_program, parse_program
from nmc.isa.container import load_program, save_program
from nmc.isa.errors import AsmSyntaxError, NmcError, ProgramError
from nmc.isa.instructions import OPCODES, Instr, Loop
from nmc.isa.program import Buffer, Const, Layer, Port, Program
from nmc.isa.validate import validate
from nmc.isa.views import Affine, CoreRef, Imm, View, WeightRef

__all__ = ["format_program", "parse_program", "load_program", "save_program", "AsmSyntaxError",
           "NmcError", "ProgramError", "OPCODES", "Instr", "Loop", "Buffer", "Const", "Layer", "Port",
           "Program", "validate", "Affine", "CoreRef", "Imm", "View", "WeightRef"]
