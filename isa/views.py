"""Operands of the ISA: affine offsets over loop counters, strided views, weights, immediates."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Affine:
    """``const + sum(coef * %var)``: an address that moves with the enclosing loop counters."""

    const: int = 0
    terms: tuple[tuple[str, int], ...] = ()

    def coef(self, var: str) -> int:
        return sum(c for v, c in self.terms if v == var)

    def vars(self) -> tuple[str, ...]:
        return tuple(v for v, _ in self.terms)

    def range(self, counts: dict[str, int]) -> tuple[int, int]:
        """Smallest and largest value over all iterations of the loops in ``counts``."""
        lo = hi = self.const
        for var in dict.fromkeys(self.vars()):
            span = self.coef(var) * (counts[var] - 1)
            lo += min(0, span)
            hi += max(0, span)
        return lo, hi


@dataclass(frozen=True)
class View:
    """A strided window on a buffer: element ``(i0, i1, ..)`` is at ``offset + sum(i_k * stride_k)``.

    ``dims`` are ``(size, stride)`` pairs in elements, outermost first. A stride of 0 repeats
    (broadcasts) the same elements. The batch dimension is implicit: every buffer holds one
    such address space per sample.
    """

    buffer: str
    offset: Affine
    dims: tuple[tuple[int, int], ...]

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(size for size, _ in self.dims)

    @property
    def size(self) -> int:
        total = 1
        for size, _ in self.dims:
            total *= size
        return total

    def address_range(self, counts: dict[str, int]) -> tuple[int, int]:
        lo, hi = self.offset.range(counts)
        for size, stride in self.dims:
            span = stride * (size - 1)
            lo += min(0, span)
            hi += max(0, span)
        return lo, hi


@dataclass(frozen=True)
class WeightRef:
    """A constant matrix operand of ``mvm``; ``index`` picks one matrix of a stacked constant."""

    name: str
    index: Affine | None = None


@dataclass(frozen=True)
class Imm:
    """A scalar immediate (float)."""

    value: float


@dataclass(frozen=True)
class CoreRef:
    """Another core, the peer of a ``send`` or ``recv``."""

    core: int


Operand = View | WeightRef | Imm | CoreRef
