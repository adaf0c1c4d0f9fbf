"""The functional simulator: executes a program's core streams on batched inputs.

Parallel loops (``loop``) run each body instruction once for all iterations: every operand
becomes a strided numpy view with one axis per enclosing parallel loop counter (stride = the
counter's coefficient), after the batch axis. A convolution is one gathered matmul. Sequential
loops (``loop.seq``) run their iterations one after another with the counter bound to a value
(it moves the views' offsets), still vectorised over the batch and any parallel loops inside.
"""
from __future__ import annotations

import functools
import os
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable

import numpy as np
from numpy.lib.stride_tricks import as_strided
from threadpoolctl import ThreadpoolController

from nmc.isa.errors import NmcError
from nmc.isa.instructions import BINARY_OPS, COMPARE_OPS, REDUCE_OPS, UNARY_OPS, Instr, Loop, exchanges_messages
from nmc.backends.tile_arithmetic import quantise
from nmc.backends.target import Target, load_target, preset_names
from nmc.isa.program import DTYPES, Program
from nmc.isa.validate import validate
from nmc.isa.views import Imm, View, WeightRef
from nmc.runtime import kernels
from nmc.runtime import cam
from nmc.runtime.crossbar import ProgrammedTile, SimOptions
from nmc.runtime.noise import SampleNoise


class SimulationError(NmcError):
    """The program cannot run on these inputs (wrong input shape, deadlock, ...)."""


@dataclass(frozen=True)
class _Iter:
    var: str
    count: int


@dataclass(frozen=True)
class Order:
    """How to gather a view from its buffer transposed to channel-minor: the buffer read as
    ``[channels, run]`` (``run`` = the stride of the view's channel dimension) becomes
    ``[run, channels]``; in it the view has these strides and offset, with its channel
    dimension moved innermost. ``indices``: the view's element order → the gathered one."""

    run: int
    channels: int
    offset: int
    shape: tuple[int, ...]
    strides: tuple[int, ...]
    iter_strides: tuple[int, ...]
    indices: np.ndarray

    MIN_CHANNELS = 8   # a channel dimension shorter than this does not pay for the transpose
    SHORT_RUN = 8      # views whose innermost unit-stride run is at least this long gather well

    @staticmethod
    def plan(v: View, iter_coefs: list[int], iter_counts: list[int], const: int, size: int) -> "Order | None":
        dims = list(v.dims)
        inner_size, inner_stride = dims[-1]
        if inner_stride == 1 and inner_size >= Order.SHORT_RUN:
            return None
        channel = max(range(len(dims)), key=lambda j: dims[j][0])
        count, run = dims[channel]
        if count < Order.MIN_CHANNELS or run <= 1 or size % run or any(s < 0 for _, s in dims) \
                or any(c < 0 for c in iter_coefs):
            return None
        channels = size // run
        within = const % run  # every other term must stay inside one run, or step whole runs
        def moved(stride: int, n: int) -> int | None:
            nonlocal within
            if stride % run == 0:
                return stride // run
            within += stride * (n - 1)
            return stride * channels
        others = [j for j in range(len(dims)) if j != channel]
        new_dims = [moved(dims[j][1], dims[j][0]) for j in others]
        new_iters = [moved(c, n) for c, n in zip(iter_coefs, iter_counts)]
        if within >= run:
            return None
        order = others + [channel]
        indices = np.arange(v.size).reshape(v.shape).transpose(order).reshape(-1)
        return Order(run, channels, (const % run) * channels + const // run,
                     tuple(dims[j][0] for j in order), tuple(new_dims) + (1,), tuple(new_iters), indices)


def written_first(program: Program) -> frozenset[str]:
    """Core-local buffers whose first access in their core's stream writes every element and
    reads none (an instruction, or a loop whose body touches the buffer only there): a chunk
    that reuses memory need not zero them, since no sample can see what the last one left."""
    safe = set()
    for stream in program.cores.values():
        seen: set[str] = set()
        for s in stream:
            writes: list = []
            reads: list = []
            _accesses(s, (), writes, reads)
            for buf in {v.buffer for v, _ in writes + reads} - seen:
                seen.add(buf)
                mine = [(v, it) for v, it in writes if v.buffer == buf]
                b = program.buffers.get(buf)
                if b is not None and b.space != "global" and len(mine) == 1 and \
                        not any(v.buffer == buf for v, _ in reads) and _covers(*mine[0], b.size):
                    safe.add(buf)
    return frozenset(safe)


def _accesses(s, loops: tuple, writes: list, reads: list) -> None:
    """The views statement ``s`` writes and reads, each with its enclosing loops (var, count)."""
    if isinstance(s, Loop):
        for inner in s.body:
            _accesses(inner, loops + ((s.var, s.count),), writes, reads)
        return
    for kind, op in zip(s.spec.operands, s.operands):
        if isinstance(op, View):
            (writes if kind == "dst" else reads).append((op, loops))
            if kind == "dst" and s.spec.reads_dst:
                reads.append((op, loops))


def _covers(v: View, loops: tuple, size: int) -> bool:
    """Whether ``v`` over its loops' iterations writes elements 0 .. size − 1 once each."""
    if v.offset.const != 0 or any(var not in {name for name, _ in loops} for var, _ in v.offset.terms):
        return False
    pairs = [(stride, n) for n, stride in v.dims] + [(v.offset.coef(var), count) for var, count in loops]
    pairs = sorted((st, n) for st, n in pairs if n > 1)
    expected = 1
    for stride, n in pairs:
        if stride != expected:
            return False
        expected *= n
    return expected == size


class Chip:
    """What stays programmed for a whole run, shared by the chunks of the batch: crossbar tiles
    (programming noise drawn once per tile) and CAM blocks (programmed on their first search)."""

    def __init__(self, program: Program, target: Target | None, options: SimOptions,
                 progress: Callable[..., None] | None = None):
        self.p, self.options, self._target = program, options, target
        self.cams: dict[tuple[str, str], cam.ProgrammedCam] = {}
        self.orders: dict[tuple, Order | None] = {}  # how each matrix-product operand is gathered
        self._reordered: dict[tuple[str, bytes], np.ndarray] = {}
        self.tiles = self._program_tiles(progress)
        self.tile_index = {name: i for i, name in enumerate(self.tiles)}
        self.consts = {name: np.ascontiguousarray(program.data[name], dtype=DTYPES[c.dtype]).reshape(-1)
                       for name, c in program.consts.items()}
        self.weights = {name: np.ascontiguousarray(program.data[name], dtype=np.float32)
                        for name, c in program.consts.items() if c.dtype == "f32"}
        self.written_first = written_first(program)   # buffers a reused chunk need not zero

    @property
    def target(self) -> Target:
        """The chip: as given, else the preset the program names (resolved when first needed)."""
        if self._target is None:
            self._target = _own_target(self.p)
        return self._target

    def reordered_weights(self, name: str, order: Order) -> np.ndarray:
        """Weight matrix ``name`` with its columns in a gathered operand's order."""
        key = (name, order.indices.tobytes())
        if key not in self._reordered:
            # np.take along the last axis gathers whole rows at once: 8x faster than w[..., indices]
            self._reordered[key] = np.take(self.weights[name], order.indices, axis=-1)
        return self._reordered[key]

    def _program_tiles(self, progress: Callable[..., None] | None = None) -> dict[str, ProgrammedTile]:
        """Program every crossbar tile once (programming noise is drawn here); ``progress(done,
        total, note)`` hears of each tile."""
        if not self.p.tiles:
            return {}
        target = self.target
        spec = target.crossbar
        if spec is None:
            raise SimulationError(f"the program uses crossbar tiles but target {target.name!r} has no crossbar cores")
        names = list(self.p.tiles)
        done = [0]
        lock = threading.Lock()

        def program(index: int) -> ProgrammedTile:
            # each tile its own stream of programming noise: tiles program in any order, in parallel
            rng = np.random.default_rng((self.options.seed, index))
            tile = self.p.tiles[names[index]]
            programmed = ProgrammedTile(tile, self.p.data[tile.weights], spec, target.device, self.options, rng,
                                        target.programming)
            if progress is not None:
                with lock:
                    done[0] += 1
                    progress(done[0], len(names), "programming crossbars")
            return programmed

        cells = sum(self.p.data[t.weights].size for t in self.p.tiles.values())
        workers = min(os.cpu_count() or 1, len(names)) if cells > PARALLEL_CELLS else 1
        if workers == 1:
            return {name: program(i) for i, name in enumerate(names)}
        with ThreadPoolExecutor(workers) as pool:
            return dict(zip(names, pool.map(program, range(len(names)))))


class Machine:
    """Memory of one chunk of samples (``first`` .. ``first + batch − 1`` of the run): a
    ``[batch, size]`` array per buffer; constants and the programmed chip are shared."""

    def __init__(self, program: Program, batch: int, target: Target | None = None,
                 options: SimOptions | None = None, progress: Callable[..., None] | None = None,
                 chip: Chip | None = None, first: int = 0):
        self.p = program
        self.batch = batch
        self.first = first
        self.mem = {name: np.zeros((batch, b.size), DTYPES[b.dtype]) for name, b in program.buffers.items()}
        self.options = options or SimOptions()
        self.chip = chip or Chip(program, target, self.options, progress)
        self.consts, self.weights = self.chip.consts, self.chip.weights
        self.tiles, self.cams = self.chip.tiles, self.chip.cams
        self.bound: dict[str, int] = {}  # counters of the sequential loops running, and their values
        self.reads: dict[str, int] = {}  # crossbar reads of each tile so far in this chunk
        self.used = False
        self.last_coding = None

    @property
    def target(self) -> Target:
        return self.chip.target

    def start(self, first: int, batch: int) -> None:
        """Reuse this memory for the chunk of ``batch`` samples from ``first`` (at most as many
        as it was made for)."""
        if self.used:   # memory of an earlier chunk: zero what a sample could read before writing
            for name, arr in self.mem.items():
                if name not in self.chip.written_first:
                    arr.fill(0)
        if batch != self.batch:
            self.mem = {name: arr[:batch] for name, arr in self.mem.items()}
        self.used = True
        self.first, self.batch = first, batch
        self.reads = {}
        self.bound = {}
        self.last_coding = None  # runtime.cam: the chunk's last threshold coding, for identical inputs

    # ------------------------------------------------------------------ operands
    def view(self, v: View, iters: tuple[_Iter, ...]) -> np.ndarray:
        """The elements of ``v`` for every sample and iteration: ``[batch, iters..., dims...]``."""
        if v.buffer in self.mem:
            arr = self.mem[v.buffer]
            batch_stride = arr.strides[0]
            flat = arr
        else:
            arr = self.consts[v.buffer]
            batch_stride = 0
            flat = arr[None, :]
        item = arr.itemsize
        const = v.offset.const + sum(coef * self.bound[var] for var, coef in v.offset.terms if var in self.bound)
        shape = (self.batch,) + tuple(i.count for i in iters) + v.shape
        strides = ((batch_stride,) + tuple(v.offset.coef(i.var) * item for i in iters)
                   + tuple(stride * item for _, stride in v.dims))
        # chunk memory and constants are contiguous: the ndarray constructor views them, 7× cheaper
        # than as_strided and bounds checked
        try:
            out = np.ndarray(shape, flat.dtype, flat, const * item, strides)
        except ValueError:
            raise SimulationError(f"view {v.buffer}[{const}; {v.dims}] reaches outside buffer {v.buffer} "
                                  f"({flat.shape[-1]} values)") from None
        if v.buffer not in self.mem:   # constants are read-only
            out.flags.writeable = False
        return out

    def operand(self, op, iters):
        if isinstance(op, Imm):
            return np.float32(op.value)
        return self.view(op, iters)

    def typed_operand(self, op, iters, like: View):
        """A view, or an immediate in the element type of the view ``like``."""
        if isinstance(op, Imm):
            return self.mem[like.buffer].dtype.type(op.value) if like.buffer in self.mem else \
                self.consts[like.buffer].dtype.type(op.value)
        return self.view(op, iters)

    def weight(self, w: WeightRef, iters: tuple[_Iter, ...]) -> np.ndarray:
        mats = self.weights[w.name]
        if w.index is None:
            return mats
        const = w.index.const + sum(coef * self.bound[var] for var, coef in w.index.terms if var in self.bound)
        index = np.full([i.count for i in iters], const, dtype=np.int64)
        for axis, it in enumerate(iters):
            coef = w.index.coef(it.var)
            if coef:
                shape = [1] * len(iters)
                shape[axis] = it.count
                index = index + coef * np.arange(it.count).reshape(shape)
        return mats[index]  # [iters..., N, K]

    # ------------------------------------------------------------------ execution
    def execute(self, ins: Instr, iters: tuple[_Iter, ...] = ()) -> None:
        kernel = KERNELS.get(ins.opcode)
        if kernel is None:
            raise SimulationError(f"opcode {ins.opcode} cannot run inside the functional core model")
        with np.errstate(all="ignore"):
            kernel(self, ins.opcode, ins.operands, iters)

    def _xmvm(self, dst_v: View, w: WeightRef, src_v: View, iters) -> None:
        rows, order = self.gathered(src_v, iters)
        read = self.reads[w.name] = self.reads.get(w.name, -1) + 1
        noise = SampleNoise(self.options.seed, (self.chip.tile_index[w.name], read), self.first, self.batch)
        tile = self.tiles[w.name]
        out = (tile if order is None else tile.reordered(order)).mvm(rows, noise)
        dst = self.view(dst_v, iters)
        dst[...] = np.rint(out).reshape(dst.shape)

    def _mvm(self, dst_v: View, w: WeightRef, src_v: View, iters) -> None:
        dst = self.view(dst_v, iters)
        # a convolution written channel-major: per sample an [N, positions] block, computed in place
        # as W [N, K] times the source as a [K, positions] matrix
        per = int(np.prod([i.count for i in iters], dtype=np.int64))
        out = _channel_major(dst, per) if w.index is None else None
        if out is not None and (block := self._positions_minor(src_v, iters, per)) is not None:
            np.matmul(self.weights[w.name], block, out=out)
            return
        rows, order = self.gathered(src_v, iters)
        mats = self.weight(w, iters)  # [N, K], or [iterations..., N, K]
        if order is not None:
            mats = self.chip.reordered_weights(w.name, order) if w.index is None else np.take(mats, order.indices, -1)
        if out is not None:
            np.matmul(mats, rows.reshape(self.batch, per, -1).transpose(0, 2, 1), out=out)
            return
        if w.index is None:
            out = rows @ mats.T
        else:
            src = rows.reshape((self.batch,) + tuple(i.count for i in iters) + (-1,))
            out = np.matmul(mats[None], src[..., None])[..., 0]
        dst[...] = out.reshape(dst.shape)

    def _positions_minor(self, src_v: View, iters, per: int) -> np.ndarray | None:
        """The source of a convolution as [batch, K, positions] in the weights' own K order, or
        None where gathering it channel-minor (``gathered``) copies faster. A 1×1 convolution
        over a channel-major buffer is that matrix already (no copy); other windows are gathered
        kernel-major — every window element for a row of positions at a time — when the rows
        are long or the positions many, or when there are too few channels for ``Order``."""
        if src_v.buffer not in self.mem:
            return None
        src = self.view(src_v, iters)   # [batch, iterations..., window...]
        lead = 1 + len(iters)
        inner = [j for j in range(lead, src.ndim) if src.shape[j] > 1]
        if len(inner) <= 1:
            moved = src.reshape(src.shape[:lead] + (-1,)) if not inner else \
                np.moveaxis(src, inner[0], -1).reshape(src.shape[:lead] + (src.shape[inner[0]],))
            block = _channel_major(moved, per)
            if block is not None:
                return block
        run = src.shape[lead - 1] if lead > 1 and src.strides[lead - 1] == src.itemsize else 1
        if run < KERNEL_MAJOR_RUN and per < KERNEL_MAJOR_POSITIONS and self._order(src_v, iters) is not None:
            return None
        axes = (0,) + tuple(range(lead, src.ndim)) + tuple(range(1, lead))
        return np.ascontiguousarray(src.transpose(axes)).reshape(self.batch, src_v.size, per)

    def gathered(self, v: View, iters: tuple[_Iter, ...]) -> tuple[np.ndarray, "Order | None"]:
        """The elements of ``v`` for every sample and iteration as one contiguous ``[rows, K]``
        matrix (the operand of a matrix product; rows: samples, then iterations), and the order
        of its K columns when it differs from the view's. A view whose inner run is short (an
        im2col window of a channel-major buffer) is gathered from the buffer transposed to
        channel-minor (``Order``), so the copy moves whole channel vectors."""
        order = self._order(v, iters)
        if order is None:
            # contiguous: a view into [batch, size] buffers has the whole buffer as its batch stride,
            # which sends matmul down a slow non-BLAS path (50× slower for a [32, 128] step of an RNN)
            return np.ascontiguousarray(self.view(v, iters)).reshape(-1, v.size), None
        arr = self.mem[v.buffer]
        channel_minor = np.ascontiguousarray(arr.reshape(self.batch, order.channels, order.run).transpose(0, 2, 1))
        item = channel_minor.itemsize
        shape = (self.batch,) + tuple(i.count for i in iters) + order.shape
        strides = (channel_minor.strides[0],) + tuple(s * item for s in order.iter_strides) \
            + tuple(s * item for s in order.strides)
        rows = as_strided(channel_minor.reshape(self.batch, -1)[:, order.offset:], shape=shape, strides=strides,
                          writeable=False)
        return np.ascontiguousarray(rows).reshape(-1, v.size), order

    def _order(self, v: View, iters: tuple[_Iter, ...]) -> "Order | None":
        if v.buffer not in self.mem or len(v.dims) < 2:
            return None
        const = v.offset.const + sum(coef * self.bound[var] for var, coef in v.offset.terms if var in self.bound)
        key = (v, tuple(iters), const)
        cache = self.chip.orders
        if key not in cache:
            cache[key] = Order.plan(v, [v.offset.coef(i.var) for i in iters], [i.count for i in iters], const,
                                    self.p.buffers[v.buffer].size)
        return cache[key]

    def run_block(self, stmts, iters: tuple[_Iter, ...] = ()) -> None:
        for s in stmts:
            if isinstance(s, Loop) and s.sequential:
                for step in range(s.count):
                    self.bound[s.var] = step
                    self.run_block(s.body, iters)
                del self.bound[s.var]
            elif isinstance(s, Loop):
                self.run_block(s.body, iters + (_Iter(s.var, s.count),))
            else:
                self.execute(s, iters)


def _copy(m: Machine, op, ops, iters):
    m.view(ops[0], iters)[...] = m.view(ops[1], iters)


def _fill(m: Machine, op, ops, iters):
    m.view(ops[0], iters)[...] = np.float32(ops[1].value)


def _unary(m: Machine, op, ops, iters):
    dst, src = m.view(ops[0], iters), m.view(ops[1], iters)
    if op in kernels.UNARY_INTO and dst.dtype == src.dtype == np.float32:   # one pass, no temporary
        kernels.UNARY[op](src, out=dst)
    else:
        dst[...] = kernels.UNARY[op](src)


def _binary(m: Machine, op, ops, iters):
    dst, a, b = m.view(ops[0], iters), m.view(ops[1], iters), m.operand(ops[2], iters)
    if dst.dtype == a.dtype == b.dtype == np.float32:   # straight into dst (numpy handles overlap)
        kernels.BINARY[op](a, b, out=dst)
    else:
        dst[...] = kernels.BINARY[op](a, b)


def _reduce(m: Machine, op, ops, iters):
    dst, src = m.view(ops[0], iters), m.view(ops[1], iters)
    if not kernels.reduce_into(op, src, dst):
        dst[...] = kernels.reduce(op, src, src.ndim - dst.ndim)


def _quant(m: Machine, op, ops, iters):
    m.view(ops[0], iters)[...] = quantise(m.view(ops[1], iters), m.operand(ops[2], iters), ops[3].value, ops[4].value)


def _dequant(m: Machine, op, ops, iters):
    m.view(ops[0], iters)[...] = m.view(ops[1], iters).astype(np.float32) * m.operand(ops[2], iters)


def _matmul(m: Machine, op, ops, iters):
    m.view(ops[0], iters)[...] = np.matmul(m.view(ops[1], iters), m.view(ops[2], iters))


def _softmax(m: Machine, op, ops, iters):
    m.view(ops[0], iters)[...] = kernels.softmax(m.view(ops[1], iters))


def _argmax(m: Machine, op, ops, iters):
    m.view(ops[0], iters)[...] = np.argmax(m.view(ops[1], iters), axis=-1)


def _leaky(m: Machine, op, ops, iters):
    x = m.view(ops[1], iters)
    m.view(ops[0], iters)[...] = np.where(x >= 0, x, x * np.float32(ops[2].value))


def _elu(m: Machine, op, ops, iters):
    x = m.view(ops[1], iters)
    m.view(ops[0], iters)[...] = np.where(x > 0, x, np.float32(ops[2].value) * np.expm1(x))


def _clip(m: Machine, op, ops, iters):
    x = m.view(ops[1], iters)
    m.view(ops[0], iters)[...] = np.minimum(np.maximum(x, np.float32(ops[2].value)), np.float32(ops[3].value))


def _compare(m: Machine, op, ops, iters):
    m.view(ops[0], iters)[...] = kernels.COMPARE[op](m.view(ops[1], iters), m.typed_operand(ops[2], iters, ops[1]))


def _select(m: Machine, op, ops, iters):
    dst = m.view(ops[0], iters)
    dst[...] = np.where(m.view(ops[1], iters) != 0, m.typed_operand(ops[2], iters, ops[0]),
                        m.typed_operand(ops[3], iters, ops[0]))


def _cast(m: Machine, op, ops, iters):
    dst, src = m.view(ops[0], iters), m.view(ops[1], iters)
    if dst.dtype.kind == "i" and src.dtype.kind == "f":
        whole = np.trunc(src)
        bad = ~np.isfinite(whole) | (whole < np.iinfo(np.int32).min) | (whole > np.iinfo(np.int32).max)
        if bad.any():
            raise SimulationError(f"cast of {ops[1].buffer} to i32: value {src[bad].flat[0]} is beyond int32")
        dst[...] = whole
    else:
        dst[...] = src


def _gather(m: Machine, op, ops, iters):
    """Rows of the table at the indices, per sample (and loop iteration); ONNX bounds rules."""
    dst_v, table_v, idx_v = ops
    table, idx = m.view(table_v, iters), m.view(idx_v, iters).astype(np.int64)
    rows = table_v.shape[0]
    if idx.size and (idx.min() < -rows or idx.max() >= rows):
        bad = idx[(idx < -rows) | (idx >= rows)].flat[0]
        raise SimulationError(f"gather from {table_v.buffer}: index {bad} is outside -{rows}..{rows - 1}")
    idx = np.where(idx < 0, idx + rows, idx)
    lead = 1 + len(iters)
    if table_v.buffer not in m.mem and not table_v.offset.terms:  # a constant table: one copy for the batch
        out = table[(0,) * lead][idx.reshape(-1)]
    else:
        flat_table = table.reshape((-1,) + table.shape[lead:])           # [B·iters, R, ...]
        flat_idx = idx.reshape(flat_table.shape[0], -1)                   # [B·iters, M]
        out = flat_table[np.arange(flat_table.shape[0])[:, None], flat_idx]  # [B·iters, M, ...]
    dst = m.view(dst_v, iters)
    dst[...] = out.reshape(dst.shape)


def _scheduled(m: Machine, op, ops, iters):
    raise SimulationError(f"{op} is run by the core streams, not inside a block")


# The functional kernel of every opcode of the instruction table (isa.instructions.OPCODES):
# ``kernel(machine, opcode, operands, iterations)`` writes its destination for all samples and
# loop iterations at once. tests/test_isa.py checks that every opcode has one.
KERNELS = {
    "load": _copy, "store": _copy, "mov": _copy, "fill": _fill,
    **{name: _unary for name in UNARY_OPS},
    **{name: _binary for name in BINARY_OPS},
    **{name: _reduce for name in REDUCE_OPS},
    "xmvm": lambda m, op, ops, iters: m._xmvm(ops[0], ops[1], ops[2], iters),
    "mvm": lambda m, op, ops, iters: m._mvm(ops[0], ops[1], ops[2], iters),
    "quant": _quant, "dequant": _dequant, "matmul": _matmul, "softmax": _softmax, "argmax": _argmax,
    **cam.KERNELS,
    "leaky": _leaky, "elu": _elu, "clip": _clip,
    **{name: _compare for name in COMPARE_OPS},
    "select": _select, "cast": _cast, "gather": _gather,
    "send": _scheduled, "recv": _scheduled, "sync": _scheduled,
}


def _stream_runner(machine: Machine, core: int, stream, mail: dict, syncs: dict, progress: list,
                   report: Callable[[], None] | None = None):
    """A generator per core: runs its stream, yielding ('recv', peer) or ('sync', k) while it waits.
    ``progress[0]`` counts the top-level statements run; ``report()`` hears of each."""
    bound: dict[str, int] = {}  # this core's sequential loop counters (cores interleave at yields)
    for s in stream:
        yield from _run_statement(machine, core, s, mail, syncs, bound, progress)
        progress[0] += 1
        if report is not None:
            report()


def _run_statement(machine: Machine, core: int, s, mail: dict, syncs: dict, bound: dict[str, int],
                   progress: list):
    """One statement of a core's stream. A sequential loop that exchanges messages runs here
    step by step, its counter bound in ``bound``, so the core can wait inside it; ``progress[1]``
    counts the statements run at any depth (the deadlock check's sign of life)."""
    machine.bound = bound
    progress[1] += 1
    if isinstance(s, Loop) and s.sequential and exchanges_messages(s):
        for step in range(s.count):
            bound[s.var] = step
            for inner in s.body:
                yield from _run_statement(machine, core, inner, mail, syncs, bound, progress)
        del bound[s.var]
    elif isinstance(s, Instr) and s.opcode == "send":
        peer = s.operands[0].core
        mail.setdefault((core, peer), deque()).append(np.array(machine.view(s.operands[1], ())))
    elif isinstance(s, Instr) and s.opcode == "recv":
        peer = s.operands[1].core
        while not mail.get((peer, core)):
            yield ("recv from core", peer)
        machine.bound = bound
        data = mail[(peer, core)].popleft()
        dst = machine.view(s.operands[0], ())
        if data[0].size != dst[0].size:
            raise SimulationError(f"core {core}: recv of {dst[0].size} elements got a message of "
                                  f"{data[0].size} from core {peer}")
        dst[...] = data.reshape(dst.shape)
    elif isinstance(s, Instr) and s.opcode == "sync":
        syncs[core] += 1
        while min(syncs.values()) < syncs[core]:
            yield ("sync", syncs[core])
    elif isinstance(s, Loop):
        machine.run_block((s,))
    else:
        machine.execute(s)


# a window gathers kernel-major (rows of positions) rather than channel-minor when a row of positions
# is at least this long or a sample has at least this many (measured: digits CNN, ResNet-50)
KERNEL_MAJOR_RUN = 8
KERNEL_MAJOR_POSITIONS = 32


def _channel_major(dst: np.ndarray, per: int) -> np.ndarray | None:
    """``dst`` ([batch, iterations..., N]) as [batch, N, per] when, per sample, its iterations
    are one contiguous run of ``per`` elements and N steps over whole runs: a convolution's
    output written channel by channel. None otherwise."""
    if dst.ndim < 3 or dst.dtype != np.float32:
        return None
    item = dst.itemsize
    expected = item
    for count, stride in reversed(list(zip(dst.shape[1:-1], dst.strides[1:-1]))):
        if count > 1 and stride != expected:
            return None
        expected *= count
    if dst.strides[-1] < expected or expected != per * item:
        return None
    return as_strided(dst, shape=(dst.shape[0], dst.shape[-1], per), strides=(dst.strides[0], dst.strides[-1], item))


PARALLEL_CELLS = 1 << 20  # tiles of fewer weights in all are programmed on one thread
CHUNK_BYTES = 64 << 20  # the memory of a chunk's buffers (and their temporaries) aims at this


def chunk_size(program: Program, batch: int) -> int:
    """Samples per chunk: as many as keep the buffers and their temporaries near CHUNK_BYTES,
    a multiple of 256 (a noise block) when there are that many."""
    if not program.batched:
        return 1
    per_sample = 4 * sum(b.size * np.dtype(DTYPES[b.dtype]).itemsize for b in program.buffers.values())
    fit = max(1, CHUNK_BYTES // max(per_sample, 1))
    size = fit - fit % 256 if fit >= 256 else 1 << (fit.bit_length() - 1)
    return min(size, batch)


def execute(program: Program, inputs: dict[str, np.ndarray], target: Target | None = None,
            options: SimOptions | None = None, validated: bool = False,
            progress: Callable[..., None] | None = None, chunk: int | None = None,
            workers: int | None = None, first_sample: int = 0) -> dict[str, np.ndarray]:
    """Run ``program`` on ``inputs`` (ONNX input name → array) and return its outputs by name.

    ``target`` describes the chip (default: the preset named by the program); ``options`` set
    time since programming, seed and noise switches. The program is validated first (bounds of
    every view), unless the caller already did. ``progress(done, total, note)``, if given, is
    called as crossbar tiles are programmed and statements (or chunks) run (for progress bars).

    The batch runs in chunks of ``chunk`` samples (default: ``chunk_size``), by ``workers``
    threads (default: one per processor), so memory stays bounded whatever the batch; the
    outputs do not depend on either (read noise is drawn per sample, ``runtime.noise``).
    ``first_sample``: the index of the first input sample in a larger batch run in parts (a
    part sees the noise those samples see in the whole batch).
    """
    if not validated:
        validate(program)
    batch = _batch_size(program, inputs)
    options = options or SimOptions()
    tiles = len(program.tiles)
    steps = sum(len(stream) for stream in program.cores.values()) + len(program.cores)
    total = tiles + steps
    chip = Chip(program, target, options, progress and (lambda done, _total, note: progress(done, total, note)))
    feeds = {port.buffer: port_array(port, inputs[port.name]).reshape(batch, -1) for port in program.inputs}
    size = max(1, min(chunk or chunk_size(program, batch), batch))
    firsts = list(range(0, batch, size))
    results = {port.buffer: np.empty((batch, program.buffers[port.buffer].size),
                                     DTYPES[program.buffers[port.buffer].dtype]) for port in program.outputs}
    machines: list[Machine] = []
    lock = threading.Lock()

    def run_chunk(first: int, report: Callable[[int], None] | None = None) -> None:
        with lock:
            machine = machines.pop() if machines else Machine(program, size, options=options, chip=chip)
        n = min(size, batch - first)
        machine.start(first_sample + first, n)
        for buffer, values in feeds.items():
            machine.mem[buffer][...] = values[first:first + n]
        _run_streams(machine, report)
        for buffer, out in results.items():
            out[first:first + n] = machine.mem[buffer]
        with lock:
            machines.append(machine)

    with _blas().limit(limits=1, user_api="blas"):  # parallel over chunks, not inside each product
        _run_chunks(run_chunk, firsts, workers, progress and (lambda done: progress(tiles + done, total, "running")),
                    steps)
    outputs = {}
    for port in program.outputs:
        arr = results[port.buffer]
        outputs[port.name] = arr.reshape((batch,) + port.shape) if program.batched else arr.reshape(port.shape)
    return outputs


@functools.lru_cache(maxsize=1)
def _blas() -> ThreadpoolController:
    """The process's BLAS thread pools, found once (0.5 ms a look)."""
    return ThreadpoolController()


def _run_chunks(run_chunk: Callable, firsts: list[int], workers: int | None,
                report: Callable[[float], None] | None, steps: int) -> None:
    """Every chunk once: the first alone (CAM blocks are programmed on their first search), the
    others by ``workers`` threads; ``report(done)`` hears of statements (one chunk) or chunks."""
    if len(firsts) == 1:
        run_chunk(0, report)
        return
    run_chunk(firsts[0])
    finished = 1
    n_workers = max(1, min(workers or os.cpu_count() or 1, len(firsts) - 1))
    with ThreadPoolExecutor(n_workers) as pool:
        for future in [pool.submit(run_chunk, first) for first in firsts[1:]]:
            future.result()
            finished += 1
            if report is not None:
                report(steps * finished / len(firsts))


def _run_streams(machine: Machine, report: Callable[[int], None] | None = None) -> None:
    """Every core's stream on one chunk, interleaved at its waits; ``report(done)`` hears of
    each top-level statement run."""
    program = machine.p
    mail: dict = {}
    syncs = {core: 0 for core in program.cores}
    progress_count = [0, 0]  # top-level statements run, statements run at any depth
    tell = report and (lambda: report(progress_count[0]))
    runners = {core: _stream_runner(machine, core, stream, mail, syncs, progress_count, tell)
               for core, stream in program.cores.items()}
    waiting: dict[int, tuple] = {}
    while runners:
        before = progress_count[1]
        for core in sorted(runners):
            try:
                waiting[core] = next(runners[core])
            except StopIteration:
                del runners[core]
                waiting.pop(core, None)
                progress_count[0] += 1
                progress_count[1] += 1
        if runners and progress_count[1] == before:
            raise SimulationError("deadlock: " + ", ".join(
                f"core {c} waits ({w[0]} {w[1]})" for c, w in sorted(waiting.items()))
                + (f"; finished cores never reach the sync" if len(runners) < len(program.cores) else ""))


def port_array(port, value) -> np.ndarray:
    """The user's array in the port's element type: float32, or int32 for an integer or boolean
    port (booleans as 0/1), refusing values that are not whole numbers within int32."""
    arr = np.asarray(value)
    if port.dtype != "i32":
        return arr.astype(np.float32)
    if arr.dtype.kind == "b":
        return arr.astype(np.int32)
    if arr.dtype.kind not in "iuf":
        raise SimulationError(f"input {port.name!r} is an integer port; got an array of {arr.dtype}")
    if arr.dtype.kind == "f" and arr.size and not np.all(np.isfinite(arr) & (arr == np.trunc(arr))):
        raise SimulationError(f"input {port.name!r} is an integer port; got {arr.dtype} values that are not whole")
    info = np.iinfo(np.int32)
    if arr.size and (arr.min() < info.min or arr.max() > info.max):
        raise SimulationError(f"input {port.name!r} holds values in [{arr.min()}, {arr.max()}], beyond the int32 "
                              f"range [{info.min}, {info.max}] nmc computes integers in")
    return arr.astype(np.int32)


def _own_target(program: Program) -> Target:
    """The preset a program names, for callers that give no target."""
    if program.target in preset_names():
        return load_target(program.target)
    raise SimulationError(f"the program was compiled for target {program.target!r}, which is not a preset: "
                          "pass its Target, or load the .nmc file with nmc.load(path), which carries its target")


def _batch_size(program: Program, inputs: dict[str, np.ndarray]) -> int:
    missing = [q.name for q in program.inputs if q.name not in inputs]
    if missing:
        raise SimulationError(f"missing input(s) {missing}; the program takes {[q.name for q in program.inputs]}")
    extra = sorted(set(inputs) - {q.name for q in program.inputs})
    if extra:
        raise SimulationError(f"unknown input(s) {extra}; the program takes {[q.name for q in program.inputs]}")
    batch = None
    for port in program.inputs:
        arr = np.asarray(inputs[port.name])
        want = ("N",) + port.shape if program.batched else port.shape
        ok = arr.shape[1:] == port.shape and arr.ndim >= 1 if program.batched else arr.shape == port.shape
        if not ok:
            raise SimulationError(f"input {port.name!r} has shape {list(arr.shape)}, expected {list(want)}")
        b = arr.shape[0] if program.batched else 1
        if batch is not None and b != batch:
            raise SimulationError(f"inputs disagree on the batch size ({batch} vs {b})")
        batch = b
    if batch == 0:
        raise SimulationError("empty batch")
    return batch or 1
