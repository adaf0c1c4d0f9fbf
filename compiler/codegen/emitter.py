"""Builds a Program: buffers, constants, the layer table and instruction streams with loops."""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field, replace

import numpy as np

from nmc.compiler.errors import InternalError
from nmc.isa.instructions import Instr, Loop
from nmc.isa.program import Buffer, Const, Layer, Port, Program, Tile
from nmc.isa.views import Affine, Imm, View, WeightRef


def strides_of(shape: tuple[int, ...]) -> tuple[int, ...]:
    """Element strides of a C-ordered array of ``shape``."""
    out, acc = [], 1
    for d in reversed(shape):
        out.append(acc)
        acc *= d
    return tuple(reversed(out))


@dataclass
class _OpenLoop:
    """A loop being emitted: its body per core (a parallel loop has one core, a sequential loop
    gets a body on every core that emits inside it)."""

    var: str
    count: int
    sequential: bool
    core: int
    bodies: dict[int, list] = field(default_factory=dict)


class Emitter:
    def __init__(self, target: str, batched: bool):
        self.program = Program(target=target, batched=batched)
        self.streams: dict[int, list] = {}
        self.core = 0
        self._open: list[_OpenLoop] = []  # enclosing loops, innermost last
        self.layer = -1
        self.location: dict[str, tuple[str, int]] = {}  # tensor -> (buffer, element offset)
        self.const_of: dict[str, str] = {}  # graph constant -> program constant

    # ------------------------------------------------------------------ declarations
    def buffer(self, size: int, space: str | None = None, prefix: str = "t", dtype: str = "f32") -> str:
        name = f"{prefix}{len(self.program.buffers)}"
        self.program.buffers[name] = Buffer(name, dtype, max(int(size), 1), space or f"core{self.core}")
        return name

    def tile(self, tile: Tile, weights: np.ndarray) -> str:
        """Declare a crossbar tile holding integer ``weights`` [N, K]."""
        name = f"c{len(self.program.consts)}"
        self.program.consts[name] = Const(name, "i32", tuple(weights.shape))
        self.program.data[name] = np.ascontiguousarray(weights, dtype=np.int32)
        self.program.tiles[tile.name] = replace(tile, weights=name)
        return tile.name

    def constant(self, array: np.ndarray, key: str | tuple | None = None, dtype: str = "f32") -> str:
        """A program constant holding ``array``; ``key`` (a graph constant's name, or a tuple for
        arrays derived from one) reuses the constant already made for it."""
        if key is not None and key in self.const_of:
            return self.const_of[key]
        name = f"c{len(self.program.consts)}"
        arr = np.ascontiguousarray(array, dtype=np.int32 if dtype == "i32" else np.float32)
        if arr.ndim == 0:
            arr = arr.reshape(1)
        self.program.consts[name] = Const(name, dtype, tuple(arr.shape))
        self.program.data[name] = arr
        if key is not None:
            self.const_of[key] = name
        return name

    def add_port(self, kind: str, name: str, shape: tuple[int, ...], buffer: str) -> None:
        port = Port(name, buffer, self.program.buffers[buffer].dtype, tuple(shape))
        (self.program.inputs if kind == "input" else self.program.outputs).append(port)

    def begin_layer(self, name: str, op: str) -> None:
        self.layer = len(self.program.layers)
        self.program.layers.append(Layer(self.layer, name, op))

    # ------------------------------------------------------------------ instructions
    def _body(self, core: int) -> list:
        """Where the next statement for ``core`` goes: the innermost open loop, else its stream."""
        if not self._open:
            return self.streams.setdefault(core, [])
        loop = self._open[-1]
        if not loop.sequential and core != loop.core:
            raise InternalError(f"a parallel loop on core {loop.core} got an instruction for core {core}; "
                                "only sequential loops span cores")
        return loop.bodies.setdefault(core, [])

    def emit(self, opcode: str, *operands) -> None:
        ops = tuple(Imm(float(o)) if isinstance(o, (int, float, np.floating)) else o for o in operands)
        self._body(self.core).append(Instr(opcode, ops, self.layer))

    @contextmanager
    def loop(self, count: int, sequential: bool = False):
        """``with e.loop(n) as var:`` emits a counted loop; a count of 1 emits no loop (var None).

        A parallel loop holds instructions of the current core only. ``sequential=True`` emits
        ``loop.seq``: iterations one after another, and every core that gets instructions inside
        it gets its own ``loop.seq`` of the same count and counter around them, so cores can
        exchange messages in each step (the recurrence of an RNN with its crossbars elsewhere)."""
        if count == 1:
            yield None
            return
        var = f"{'t' if sequential else 'i'}{len(self._open)}"
        self._open.append(_OpenLoop(var, count, sequential, self.core))
        try:
            yield var
        finally:
            loop = self._open.pop()
        for core, body in loop.bodies.items():
            if body:
                self._body(core).append(Loop(var, count, tuple(body), sequential))

    def finish(self) -> Program:
        self.program.cores = {core: tuple(stream) for core, stream in sorted(self.streams.items())}
        return self.program


def affine(const: int, *terms: tuple[str | None, int]) -> Affine:
    return Affine(int(const), tuple((v, int(c)) for v, c in terms if v is not None and c != 0))


def view(buffer: str, offset: Affine | int, dims) -> View:
    if isinstance(offset, int):
        offset = Affine(offset)
    dims = tuple((int(s), int(st)) for s, st in dims) or ((1, 1),)
    return View(buffer, offset, dims)


def weight(name: str, index: Affine | None = None) -> WeightRef:
    return WeightRef(name, index)
