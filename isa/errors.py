"""One exception hierarchy for nmc; every user-facing failure is an ``NmcError``."""
from __future__ import annotations


class NmcError(Exception):
    """A user error: the CLI prints it as one line and exits with code 2."""


class ProgramError(NmcError):
    """An ISA program (text or .nmc file) is malformed, inconsistent or corrupt."""


class AsmSyntaxError(ProgramError):
    """Assembly text does not parse; the message carries line, column and a caret."""

    def __init__(self, message: str, line: int, column: int, context: str = ""):
        self.line, self.column = line, column
        super().__init__(f"line {line}, column {column}: {message}" + (f"\n{context}" if context else ""))
