"""Static checks of a program: names, operand kinds, shapes, memory spaces and bounds.

A program that passes cannot make the runtime read or write outside a buffer, so a corrupt or
hand-edited file fails here with a message instead of producing garbage.
"""
from __future__ import annotations

import numpy as np

from nmc.isa.errors import ProgramError
from nmc.isa.instructions import Instr, Loop
from nmc.isa.program import Program
from nmc.isa.views import CoreRef, Imm, View, WeightRef

_KINDS = {"dst": (View,), "src": (View,), "src|imm": (View, Imm), "imm": (Imm,),
          "weight": (WeightRef,), "core": (CoreRef,)}


def validate(p: Program, check_data: bool = True) -> None:
    """Raise ``ProgramError`` naming the core and instruction of the first fault found."""
    if not p.cores:
        raise ProgramError("program has no core streams")
    for port in p.inputs + p.outputs:
        buf = p.buffers.get(port.buffer)
        if buf is None or buf.space != "global":
            raise ProgramError(f"port {port.name!r}: buffer {port.buffer!r} is not a global buffer")
        if int(np.prod(port.shape, dtype=np.int64)) != buf.size:
            raise ProgramError(f"port {port.name!r}: shape {list(port.shape)} does not fill buffer "
                               f"{port.buffer} of {buf.size} elements")
    for tile in p.tiles.values():
        c = p.consts.get(tile.weights)
        if c is None or len(c.shape) != 2 or c.dtype != "i32":
            raise ProgramError(f"tile {tile.name}: weights {tile.weights!r} must be a 2-D i32 constant")
        if tile.core not in p.cores:
            raise ProgramError(f"tile {tile.name}: core {tile.core} has no stream")
        if not 1 <= tile.in_bits <= 16 or tile.adc_range <= 0:
            raise ProgramError(f"tile {tile.name}: in_bits must be in 1..16 and adc_range positive")
        if tile.copies < 1 or tile.round < 0:
            raise ProgramError(f"tile {tile.name}: copies {tile.copies} must be at least 1 and round {tile.round} "
                               "not negative")
        if not 2 <= tile.weight_bits <= 16:
            raise ProgramError(f"tile {tile.name}: weight_bits {tile.weight_bits} must be in 2..16")
        if not -1 <= tile.layer < len(p.layers):
            raise ProgramError(f"tile {tile.name}: layer {tile.layer} is not one of the program's "
                               f"{len(p.layers)} layers (or -1: none)")
    for layer_index, layer in enumerate(p.layers):
        if layer.index != layer_index:
            raise ProgramError(f"layer table out of order at {layer.name!r}")
    if check_data:
        for c in p.consts.values():
            arr = p.data.get(c.name)
            if arr is None:
                raise ProgramError(f"constant {c.name} has no data")
            if tuple(arr.shape) != tuple(c.shape):
                raise ProgramError(f"constant {c.name}: data shape {list(arr.shape)} != declared {list(c.shape)}")
    for core, stream in p.cores.items():
        _check_stmts(p, core, stream, {}, ())


def _check_stmts(p: Program, core: int, stmts, counts: dict[str, int], parallel: tuple[str, ...]) -> None:
    """``counts``: every enclosing loop counter and its count; ``parallel``: those of parallel loops."""
    for s in stmts:
        if isinstance(s, Loop):
            if s.var in counts:
                raise ProgramError(f"core {core}: loop counter %{s.var} reused in a nested loop")
            if s.count < 1:
                raise ProgramError(f"core {core}: {s.keyword} %{s.var} has count {s.count}")
            _check_stmts(p, core, s.body, {**counts, s.var: s.count}, parallel + (() if s.sequential else (s.var,)))
        else:
            try:
                _check_instr(p, core, s, counts, parallel)
            except ProgramError as e:
                from nmc.isa.asm import format_instr

                raise ProgramError(f"core {core}: `{format_instr(s)}`: {e}") from None


def _check_instr(p: Program, core: int, ins: Instr, counts: dict[str, int], parallel: tuple[str, ...] = ()) -> None:
    spec = ins.spec
    if len(ins.operands) != len(spec.operands):
        raise ProgramError(f"{ins.opcode} takes {len(spec.operands)} operands ({' '.join(spec.operands)}), "
                           f"got {len(ins.operands)}")
    for kind, op in zip(spec.operands, ins.operands):
        if not isinstance(op, _KINDS[kind]):
            raise ProgramError(f"operand {op!r} is not a {kind}")
    if ins.layer >= len(p.layers):
        raise ProgramError(f"layer tag !{ins.layer} beyond the layer table")
    if ins.opcode in ("send", "recv") and parallel:
        raise ProgramError(f"{ins.opcode} may not appear inside a parallel loop (loop %{parallel[-1]}); "
                           "only sequential loops (loop.seq) may exchange messages")
    if ins.opcode == "sync" and counts:
        raise ProgramError("sync may not appear inside a loop")
    local = f"core{core}"
    for position, op in enumerate(ins.operands):
        if isinstance(op, View):
            _check_view(p, op, counts, local, ins.opcode, is_dst=spec.operands[position] == "dst")
        elif isinstance(op, WeightRef) and ins.opcode == "xmvm":
            tile = p.tiles.get(op.name)
            if tile is None or op.index is not None:
                raise ProgramError(f"xmvm takes a tile name, {op.name!r} is not a declared tile")
            if tile.core != core:
                raise ProgramError(f"tile {op.name} sits on core {tile.core}, not on this core")
        elif isinstance(op, WeightRef):
            _check_weight(p, op, counts)
        elif isinstance(op, CoreRef) and op.core not in p.cores:
            raise ProgramError(f"peer core {op.core} has no stream")
    _check_shapes(p, ins)
    _check_dtypes(p, ins)


def _check_dtypes(p: Program, ins: Instr) -> None:
    rule = ins.spec.dtypes
    if rule is not None:
        for want, op in zip(rule, ins.operands):
            if want not in (None, "=") and isinstance(op, View) and p.dtype_of(op.buffer) != want:
                raise ProgramError(f"{ins.opcode} operand {op.buffer} is {p.dtype_of(op.buffer)}, expected {want}")
        same = {p.dtype_of(op.buffer) for want, op in zip(rule, ins.operands) if want == "=" and isinstance(op, View)}
        if len(same) > 1:
            raise ProgramError(f"{ins.opcode} operands mix element types {sorted(same)}; convert with cast")
        return
    kinds = {p.dtype_of(v.buffer) for v in ins.views()}
    if len(kinds) > 1:
        raise ProgramError(f"operands mix element types {sorted(kinds)}; convert with quant/dequant")


def _check_view(p: Program, v: View, counts, local: str, opcode: str, is_dst: bool) -> None:
    for var in v.offset.vars():
        if var not in counts:
            raise ProgramError(f"%{var} is not an enclosing loop counter")
    if v.buffer in p.buffers:
        buf = p.buffers[v.buffer]
        size, space = buf.size, buf.space
    elif v.buffer in p.consts:
        if is_dst:
            raise ProgramError(f"constant {v.buffer} cannot be written")
        size, space = p.consts[v.buffer].size, "const"
    else:
        raise ProgramError(f"unknown buffer {v.buffer}")
    if any(d < 1 for d, _ in v.dims):
        raise ProgramError(f"view of {v.buffer} has an empty dimension")
    lo, hi = v.address_range(counts)
    if lo < 0 or hi >= size:
        raise ProgramError(f"view of {v.buffer} reaches elements {lo}..{hi}, outside 0..{size - 1}")
    expected = {"load": ("global" if not is_dst else local), "store": (local if not is_dst else "global")}
    want = expected.get(opcode, local)
    if space != "const" and space != want:
        raise ProgramError(f"{v.buffer} is in {space} memory, {opcode} needs it in {want}")


def _check_weight(p: Program, w: WeightRef, counts) -> None:
    c = p.consts.get(w.name)
    if c is None:
        raise ProgramError(f"unknown weight constant {w.name}")
    want = 2 if w.index is None else 3
    if len(c.shape) != want:
        raise ProgramError(f"weight {w.name} has shape {list(c.shape)}, expected {want} dimensions")
    if w.index is not None:
        for var in w.index.vars():
            if var not in counts:
                raise ProgramError(f"%{var} is not an enclosing loop counter")
        lo, hi = w.index.range(counts)
        if lo < 0 or hi >= c.shape[0]:
            raise ProgramError(f"weight index {lo}..{hi} outside 0..{c.shape[0] - 1}")


def _check_shapes(p: Program, ins: Instr) -> None:
    """The shape rule the opcode's record names (``SHAPE_RULES``)."""
    _SHAPES[ins.spec.shape](p, ins.opcode, ins.operands)


def _shape_mvm(p, op, ops):
    dst, w, src = ops
    n, k = p.consts[w.name].shape[-2:]
    if src.size != k or dst.size != n:
        raise ProgramError(f"weight {w.name} is {n}x{k} but src has {src.size} and dst {dst.size} elements")


def _shape_xmvm(p, op, ops):
    dst, w, src = ops
    tile = p.tiles.get(w.name)
    if tile is None:
        raise ProgramError(f"xmvm needs a tile, {w.name} is not one")
    n, k = p.consts[tile.weights].shape
    if src.size != k or dst.size != n:
        raise ProgramError(f"tile {w.name} is {n}x{k} but src has {src.size} and dst {dst.size} elements")


def _shape_matmul(p, op, ops):
    dst, a, b = ops
    if len(a.shape) < 2 or len(b.shape) < 2 or a.shape[-1] != b.shape[-2]:
        raise ProgramError(f"cannot multiply {list(a.shape)} by {list(b.shape)}")
    try:
        lead = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    except ValueError:
        raise ProgramError(f"leading dimensions of {list(a.shape)} and {list(b.shape)} do not broadcast") from None
    if tuple(dst.shape) != tuple(lead) + (a.shape[-2], b.shape[-1]):
        raise ProgramError(f"dst shape {list(dst.shape)} is not the product shape")


def _shape_reduce(p, op, ops):
    dst, src = ops
    if tuple(src.shape[: len(dst.shape)]) != tuple(dst.shape) or len(src.shape) <= len(dst.shape):
        raise ProgramError(f"reduction from {list(src.shape)} to {list(dst.shape)}: dst must be a prefix")


def _shape_argmax(p, op, ops):
    dst, src = ops
    if tuple(src.shape[:-1]) != tuple(dst.shape):
        raise ProgramError(f"argmax from {list(src.shape)} to {list(dst.shape)}")


def _shape_cenc(p, op, ops):
    dst, src, ge, gt, nan = ops
    if len(ge.shape) != 2 or ge.shape != gt.shape or ge.shape[0] != src.size or dst.size != src.size \
            or nan.size != src.size:
        raise ProgramError(f"cenc codes {src.size} inputs into {dst.size} codes with cut tables "
                           f"{list(ge.shape)}, {list(gt.shape)} and {nan.size} NaN codes: sizes differ")


def _shape_csearch(p, op, ops):
    dst, lo, hi, levels, q, cells = ops
    if len(lo.shape) != 2 or lo.shape != hi.shape or lo.shape[1] != q.size or dst.size != lo.shape[0] \
            or levels.size != q.size:
        raise ProgramError(f"csearch of {q.size} codes over bounds {list(lo.shape)}, {list(hi.shape)} with "
                           f"{levels.size} feature levels into {dst.size} match lines: bounds must be "
                           "[rows, features] of one shape, levels one per feature")
    if cells.value < 1 or cells.value != int(cells.value):
        raise ProgramError(f"csearch needs a positive whole number of cells, got {cells.value}")


def _shape_cleaf(p, op, ops):
    dst, match, leaves, matches = ops
    if matches.value < 0 or matches.value != int(matches.value):
        raise ProgramError(f"{op} expects a whole number of matches, got {matches.value}")
    if len(leaves.shape) != 2 or leaves.shape[0] != match.size or leaves.shape[1] != dst.size:
        raise ProgramError(f"{op} reads {match.size} match lines and leaves {list(leaves.shape)} into "
                           f"{dst.size} values: leaves must be [rows, targets]")


def _shape_gather(p, op, ops):
    dst, table, idx = ops
    if len(table.shape) < 1 or tuple(dst.shape) != tuple(idx.shape) + tuple(table.shape[1:]):
        raise ProgramError(f"gather of table {list(table.shape)} by indices {list(idx.shape)} gives "
                           f"{list(tuple(idx.shape) + tuple(table.shape[1:]))}, not dst {list(dst.shape)}")
    if p.dtype_of(dst.buffer) != p.dtype_of(table.buffer):
        raise ProgramError(f"gather dst {dst.buffer} is {p.dtype_of(dst.buffer)} but table {table.buffer} "
                           f"is {p.dtype_of(table.buffer)}")


def _shape_same(p, op, ops):
    views = [v for v in ops if isinstance(v, View)]
    for v in views[1:]:
        if v.shape != views[0].shape:
            raise ProgramError(f"operand shapes differ: {[list(x.shape) for x in views]}")


_SHAPES = {"same": _shape_same, "free": lambda p, op, ops: None, "mvm": _shape_mvm, "xmvm": _shape_xmvm,
           "matmul": _shape_matmul, "reduce": _shape_reduce, "argmax": _shape_argmax, "cenc": _shape_cenc,
           "csearch": _shape_csearch, "cleaf": _shape_cleaf, "gather": _shape_gather}
