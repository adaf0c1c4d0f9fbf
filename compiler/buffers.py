"""The local buffers each core needs, checked against what the target states.

Buffers are allocated statically, one per tensor a core holds (no reuse between layers), so a
core's buffers are what it needs with every layer resident at once — what pipelining the layers
over the cores needs: a core may start the next inference's first layers while its last ones run.
``buffer_kib`` on a ``[[cores]]`` group states each core's buffer; 0 (the presets) states none,
and the figures are only reported.
"""
from __future__ import annotations

from collections import defaultdict

import numpy as np

from nmc.backends.target import Target
from nmc.compiler.passes.placement import CapacityError
from nmc.isa.program import DTYPES, Program


def core_buffer_bytes(program: Program) -> dict[int, int]:
    """Core → bytes of its local buffers per sample (``global`` buffers, the program's inputs and
    outputs, are not any core's)."""
    out: dict[int, int] = defaultdict(int)
    for b in program.buffers.values():
        if b.space.startswith("core"):
            out[int(b.space[4:])] += b.size * np.dtype(DTYPES[b.dtype]).itemsize
    return dict(out)


def _group(target: Target, core: int):
    for group in target.cores:
        if core in target.core_range(group.kind):
            return group
    return None


def check_buffers(program: Program, target: Target) -> None:
    """Raise ``CapacityError`` for the first core (in core order) whose buffers exceed the
    ``buffer_kib`` its group states."""
    for core, need in sorted(core_buffer_bytes(program).items()):
        group = _group(target, core)
        limit = getattr(group, "buffer_kib", 0.0) if group is not None else 0.0
        if limit and need > limit * 1024:
            raise CapacityError(
                f"core {core} ({group.kind}) needs {need / 1024:,.1f} KiB of local buffers (every layer's tensors it "
                f"holds, resident at once for pipelining) but target {target.name!r} states buffer_kib = {limit:g} "
                f"for its {group.kind} cores (nmc keeps a layer's whole input and partial sums in the core, it does "
                f"not stream them through a global buffer); raise buffer_kib or leave it 0 (not checked)")


def describe(program: Program, target: Target) -> str:
    """One line for the compile summary: the largest need per core kind, against its limit."""
    need = core_buffer_bytes(program)
    parts = []
    for group in target.cores:
        cores = [c for c in need if c in target.core_range(group.kind)]
        if not cores:
            continue
        top = max(cores, key=need.get)
        limit = getattr(group, "buffer_kib", 0.0)
        parts.append(f"{group.kind} cores up to {need[top] / 1024:,.1f} KiB (core {top}; "
                     + (f"{limit:g} KiB each stated)" if limit else "no limit stated)"))
    return "; ".join(parts)
