"""A program: declarations (ports, buffers, constants, layers) plus one instruction stream per core."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from nmc.isa.instructions import Statement

FORMAT_VERSION = 2  # 2: tiles carry weight_bits and layer
DTYPES = {"f32": np.float32, "i32": np.int32}


@dataclass(frozen=True)
class Port:
    """A model input or output: its ONNX name, the global buffer holding it, its shape.

    ``shape`` is the per-sample shape; ``batched`` ports carry a leading batch dimension of any
    size at run time, unbatched ones are exactly ``shape``.
    """

    name: str
    buffer: str
    dtype: str
    shape: tuple[int, ...]


@dataclass(frozen=True)
class Buffer:
    """Memory for activations: ``size`` elements per sample, in ``space`` (``global`` or ``coreN``)."""

    name: str
    dtype: str
    size: int
    space: str


@dataclass(frozen=True)
class Const:
    """A constant array (weights, biases, tables) stored in the program's data section."""

    name: str
    dtype: str
    shape: tuple[int, ...]

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))


@dataclass(frozen=True)
class Tile:
    """A weight matrix programmed into one crossbar: ``weights`` names an i32 constant
    ``[N, K]`` of signed integers of ``weight_bits``; inputs are ``in_bits`` integers (signed or
    not); the column ADCs cover ``[-adc_range, adc_range]`` in units of one cell level times one
    input level. ``core``/``xbar``/``row``/``col`` say where it sits on the chip, ``layer`` which
    layer of the mapping table it belongs to, ``copies`` on how many rows each weight is stored
    (their currents add; the ADC reads their mean). ``backends.tile_arithmetic`` says what these mean
    in cells, reads and conversions on a target's crossbars."""

    name: str
    weights: str
    core: int
    xbar: int
    row: int
    col: int
    in_bits: int
    in_signed: bool
    adc_range: float
    weight_bits: int
    layer: int
    copies: int = 1  # devices per weight, on extra rows whose currents add on each column
    round: int = 0   # reprogramming round: tiles of later rounds reuse the crossbars of earlier ones

    FIELDS = ("weights", "core", "xbar", "row", "col", "in_bits", "in_signed", "adc_range", "weight_bits", "layer")
    OPTIONAL = ("copies", "round")


@dataclass(frozen=True)
class Layer:
    """An entry of the mapping table: which model node an instruction was generated for."""

    index: int
    name: str
    op: str


@dataclass
class Program:
    target: str
    batched: bool
    inputs: list[Port] = field(default_factory=list)
    outputs: list[Port] = field(default_factory=list)
    buffers: dict[str, Buffer] = field(default_factory=dict)
    consts: dict[str, Const] = field(default_factory=dict)
    layers: list[Layer] = field(default_factory=list)
    tiles: dict[str, Tile] = field(default_factory=dict)
    cores: dict[int, tuple[Statement, ...]] = field(default_factory=dict)
    data: dict[str, np.ndarray] = field(default_factory=dict)
    version: int = FORMAT_VERSION

    def dtype_of(self, name: str) -> str:
        """Element type of a buffer or constant."""
        return self.buffers[name].dtype if name in self.buffers else self.consts[name].dtype

    def instruction_count(self) -> int:
        """Static instructions (a loop counts as one plus its body)."""
        from nmc.isa.instructions import Loop

        def count(stmts) -> int:
            return sum(1 + count(s.body) if isinstance(s, Loop) else 1 for s in stmts)

        return sum(count(stream) for stream in self.cores.values())
