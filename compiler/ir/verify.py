"""``verify(graph)``: well-formedness and per-op invariants, run after every pass in tests."""
from __future__ import annotations

from dataclasses import replace

from typing import TYPE_CHECKING

import networkx as nx
import numpy as np

from nmc.compiler.errors import CompileError, InternalError
from nmc.compiler.ir import ops
from nmc.compiler.ir.graph import Graph, Node
from nmc.compiler.ir.mapping import CamMapping, LayerMapping, Quant, TileBlock

if TYPE_CHECKING:
    from nmc.backends.target import Target


class VerifyError(InternalError):
    """The IR broke an invariant (a compiler bug, reported with the node and the pass)."""


def verify(g: Graph, after: str = "", target: "Target | None" = None) -> None:
    """Raise ``VerifyError`` naming the node and ``after`` (the pass) at the first broken
    invariant of the graph or of its mapping records (block sizes against ``target`` if given)."""
    where = f" after pass {after}" if after else ""
    if not nx.is_directed_acyclic_graph(g.dag):
        raise VerifyError(f"graph has a cycle{where}")
    produced: dict[str, str] = {}
    for node in g.nodes():
        for t in node.outputs:
            if t in produced or t in g.inputs or t in g.constants:
                raise VerifyError(f"{node.describe()}: tensor {t} has two definitions{where}")
            produced[t] = node.name
    defined = set(g.inputs) | set(g.constants)
    for node in g.nodes():
        for t in node.inputs:
            if t not in defined:
                raise VerifyError(f"{node.describe()}: reads {t!r}, which is not defined before it{where}")
            if t not in g.tensors:
                raise VerifyError(f"{node.describe()}: input {t!r} has no type{where}")
        for t in node.outputs:
            if t not in g.tensors:
                raise VerifyError(f"{node.describe()}: output {t!r} has no type{where}")
            defined.add(t)
        _check_op(g, node, where)
    for t in g.outputs:
        if t not in defined:
            raise VerifyError(f"graph output {t!r} is never computed{where}")
    if g.batched:
        check_batch_axis(g, where)
    check_mapping(g, where, target)


_BATCH_HINT = ("nmc runs a model with a free leading batch dimension sample by sample, so no operation may "
               "act across axis 0 (export with a fixed batch size to compile the whole tensor as one sample)")


class BatchAxisError(CompileError):
    """A batched model moves or mixes the batch axis."""


def check_batch_axis(g: Graph, where: str = "") -> None:
    """In a batched graph every activation keeps the batch as its leading axis of size 1 and no
    operation acts across it, so running the graph per sample is exact. A graph whose operations
    move the batch axis is followed axis by axis instead when the frontend recorded the model's
    shapes at a second batch size (``g.batch_shapes``, ``compiler/ir/batch.py``)."""
    try:
        _check_batch_leading(g, where)
    except BatchAxisError:
        if not g.batch_shapes:
            raise
        from nmc.compiler.ir.batch import batch_axes

        batch_axes(g, g.batch_shapes, lambda node, why: BatchAxisError(f"{node.describe()}: {why}{where}; "
                                                                        f"{_BATCH_HINT}"))


def _check_batch_leading(g: Graph, where: str = "") -> None:
    for t, ty in g.tensors.items():
        if t not in g.constants and (not ty.shape or ty.shape[0] != 1):
            raise BatchAxisError(f"activation {t!r} of shape {list(ty.shape)} lost its leading batch axis"
                                 f"{where}; {_BATCH_HINT}")
    for node in g.nodes():
        reason = _mixes_batch(g, node)
        if reason:
            raise BatchAxisError(f"{node.describe()}: {reason}{where}; {_BATCH_HINT}")


def _mixes_batch(g: Graph, node: Node) -> str:
    """Why ``node`` would mix samples of a batch (empty if it does not)."""
    op = node.op
    if isinstance(op, ops.Transpose) and op.perm[0] != 0:
        return f"perm {list(op.perm)} moves the batch axis"
    if isinstance(op, (ops.Softmax, ops.Reduce)) and 0 in op.axes:
        return "it reduces over the batch axis"
    if isinstance(op, (ops.Concat, ops.ArgMax)) and op.axis == 0:
        return "it works along the batch axis"
    if isinstance(op, ops.LayerNorm) and op.axis == 0:
        return "it normalises over the batch axis"
    if isinstance(op, ops.Slice) and (op.starts[0] != 0 or op.steps[0] != 1):
        return "it slices the batch axis"
    if isinstance(op, ops.Pad) and (op.pads[0] or op.pads[len(op.pads) // 2]):
        return "it pads the batch axis"
    if isinstance(op, ops.Recurrence) and op.layout == 0:
        return "with layout 0 its axis 0 holds the time steps, which it runs in order"
    if isinstance(op, ops.Gather) and op.axis == 0 and not g.is_const(node.inputs[0]):
        return "it gathers along the batch axis"
    if isinstance(op, ops.MatMul) and not g.is_const(node.inputs[1]) and len(g.shape(node.inputs[1])) < 3:
        return "its right operand is a per-sample matrix of rank 2, so the batch axis is a matrix axis"
    return ""


def _check_op(g: Graph, node: Node, where: str) -> None:
    op = node.op

    def fail(msg: str):
        raise VerifyError(f"{node.describe()}: {msg}{where}")

    if isinstance(op, ops.Gather) and g.tensors[node.inputs[1]].dtype != "i32":
        fail(f"indices {node.inputs[1]!r} are {g.tensors[node.inputs[1]].dtype}, not i32")
    if isinstance(op, ops.Select) and g.tensors[node.inputs[0]].dtype != "bool":
        fail(f"condition {node.inputs[0]!r} is {g.tensors[node.inputs[0]].dtype}, not bool")
    if isinstance(op, (ops.Compare, ops.Cast, ops.Select, ops.Gather)):
        want = "bool" if isinstance(op, ops.Compare) else op.to if isinstance(op, ops.Cast) else None
        got = g.tensors[node.outputs[0]].dtype
        if want is not None and got != want:
            fail(f"output {node.outputs[0]!r} is {got}, expected {want}")
    if isinstance(op, (ops.Dense, ops.Conv, ops.BatchNorm, ops.LayerNorm)):
        for t in node.inputs[1:]:
            if not g.is_const(t):
                fail(f"{type(op).__name__} parameter {t!r} must be a constant")
    if isinstance(op, ops.Dense):
        w = g.shape(node.inputs[1])
        if len(w) != 2 or g.shape(node.inputs[0])[-1] != w[1]:
            fail(f"weight {list(w)} does not match input {list(g.shape(node.inputs[0]))}")
        if len(node.inputs) > 2 and g.shape(node.inputs[2]) != (w[0],):
            fail("bias length differs from the weight's output count")
    if isinstance(op, ops.Conv):
        x, w = g.shape(node.inputs[0]), g.shape(node.inputs[1])
        if x[1] != w[1] * op.group or w[0] % op.group:
            fail(f"channels {x[1]} / weight {list(w)} do not agree with group={op.group}")
    if isinstance(op, ops.FakeQuant):
        if len(op.scale) != len(op.zero_point) or not all(s > 0 for s in op.scale):
            fail(f"{len(op.scale)} scales (all positive) need as many zero points, not {len(op.zero_point)}")
        if not op.qmin <= min(op.zero_point) <= max(op.zero_point) <= op.qmax:
            fail(f"zero points {list(op.zero_point)} outside [{op.qmin}, {op.qmax}]")
        if op.per_axis and g.shape(node.inputs[0])[op.axis] != len(op.scale):
            fail(f"{len(op.scale)} scales along axis {op.axis} of {list(g.shape(node.inputs[0]))}")
    if isinstance(op, ops.Expand):
        x, y = g.shape(node.inputs[0]), g.shape(node.outputs[0])
        if len(x) > len(y) or any(a not in (1, b) for a, b in zip(x[::-1], y[::-1])):
            fail(f"input {list(x)} does not broadcast to output {list(y)}")
    if isinstance(op, ops.LoopCarried):
        readers = g.consumers(node.outputs[0])
        if node.inputs or not readers or any(not isinstance(r.op, ops.Dense) or r.inputs[0] != node.outputs[0]
                                             for r in readers):
            fail("a loop-carried state has no inputs and is read only by Dense nodes of its time loop")
    if isinstance(op, ops.Recurrence):
        _check_recurrence(g, node, op, fail)
    if len(node.outputs) != 1:
        fail("every IR node has exactly one output")


def _check_recurrence(g: Graph, node: Node, op: ops.Recurrence, fail) -> None:
    """Inputs as the flags say, shapes from steps, batch, directions and hidden size, and each
    product by R computed by a Dense from a LoopCarried state of this recurrence's directions."""
    nd, hidden, steps = len(op.directions), op.hidden, op.steps
    per = 2 if op.cell == "GRU" and not op.linear_before_reset else 1
    flags = op.has_initial_h + op.has_initial_c + op.has_mask + op.has_peepholes
    if len(node.inputs) != 1 + nd * per + flags or len(op.activations) != nd:
        fail(f"{len(node.inputs)} inputs and {len(op.activations)} activation sets do not fit {nd} direction(s)")
    xw = g.shape(node.inputs[0])
    if len(xw) != 3 or xw[op.layout] != steps or xw[2] != nd * op.gates * hidden:
        fail(f"X·Wᵀ of shape {list(xw)} does not hold {steps} steps of {nd * op.gates * hidden} gate values")
    batch = xw[1 - op.layout]
    seen = set()
    for product in node.inputs[1:1 + nd * per]:
        dense = g.producer(product)
        carried = g.producer(dense.inputs[0]) if dense is not None and isinstance(dense.op, ops.Dense) else None
        if carried is None or not isinstance(carried.op, ops.LoopCarried) or carried.op.direction >= nd:
            fail(f"recurrent product {product!r} is not a Dense of a loop-carried state")
        seen.add((carried.op.direction, carried.op.role))
        if g.shape(dense.inputs[0]) != (batch, hidden):
            fail(f"state {dense.inputs[0]!r} is {list(g.shape(dense.inputs[0]))}, not [{batch}, {hidden}]")
    roles = ("h", "rh") if per == 2 else ("h",)
    if seen != {(d, r) for d in range(nd) for r in roles}:
        fail(f"recurrent products read states {sorted(seen)}, not one per direction and role {roles}")
    stacked = (steps + op.stacked, nd, batch, hidden) if op.layout == 0 else (batch, steps + op.stacked, nd, hidden)
    if g.shape(node.outputs[0]) != stacked:
        fail(f"stacked output {list(g.shape(node.outputs[0]))} is not {list(stacked)}")


_UNITS = ("crossbar", "vector", "cam")
_INPUT_RANGE_SOURCES = ("qdq", "calibration", "dynamic")


def check_mapping(g: Graph, where: str = "", target: "Target | None" = None) -> None:
    """Every mapping record names a node and agrees with it and with the other records: quant
    shapes and bit ranges, tiles covering the weight matrix exactly once within the target's
    crossbars, ADC ranges, placements on distinct crossbars, CAM rows in order. Work is per
    block or vectorised, never per weight in Python."""
    taken: dict[tuple[int, int, int], list] = {}   # crossbar → (first row, end row, tile) held
    for name, record in g.mapping.items():
        if name not in g.dag:
            raise VerifyError(f"mapping record {name!r} names no node of the graph{where}")
        node = g.node(name)

        def fail(msg: str, node: Node = node):
            raise VerifyError(f"{node.describe()}: mapping {msg}{where}")

        if not isinstance(record, LayerMapping):
            fail(f"record is a {type(record).__name__}, not a LayerMapping")
        if record.unit not in _UNITS or not record.reason:
            fail(f"has unit {record.unit!r} and reason {record.reason!r}; it needs a unit "
                 f"({', '.join(_UNITS)}) and a reason")
        if record.unit != "crossbar" and (record.quant is not None or record.tiles):
            fail(f"on unit {record.unit} holds crossbar quantisation or tiles")
        if record.unit == "crossbar" and not isinstance(node.op, (ops.Dense, ops.Conv)):
            fail(f"puts a {type(node.op).__name__} on crossbars; only Dense and Conv have stationary weights")
        if (record.unit == "cam") != (record.cam is not None) or (
                record.unit == "cam" and not isinstance(node.op, ops.TreeEnsemble)):
            fail(f"on unit {record.unit} {'has' if record.cam is not None else 'lacks'} a CAM mapping; "
                 "tree ensembles and only they have one")
        if record.quant is not None:
            _check_quant(g, node, record.quant, fail)
        if record.tiles:
            if record.quant is None:
                fail("has tiles but no quant")
            _check_tiles(g, node, record, fail, target, taken)
        if record.cam is not None:
            _check_cam(g, node, record.cam, fail, target)


def _matrix_shape(g: Graph, node: Node) -> tuple[int, int, int]:
    """``[G, M/G, C/G · prod(kernel)]``: the shape ``mapping.matrix_view`` gives the weight."""
    w = g.shape(node.inputs[1])
    if isinstance(node.op, ops.Dense):
        return (1, w[0], w[1])
    group = node.op.group
    return (group, w[0] // group, int(np.prod(w[1:])))


def _check_quant(g: Graph, node: Node, quant: Quant, fail) -> None:
    q, scale = g.constants.get(quant.weights), g.constants.get(quant.weight_scale)
    if q is None or scale is None:
        fail(f"quant names {quant.weights!r} and {quant.weight_scale!r}, which are not both constants")
    want = _matrix_shape(g, node)
    if q.shape != want or not np.issubdtype(q.dtype, np.integer):
        fail(f"quant weights are {q.dtype}{list(q.shape)}, not integers {list(want)}")
    if scale.shape != (want[0] * want[1],) or not np.all(scale > 0):
        fail(f"quant needs one positive weight scale per output ({want[0] * want[1]}), not {list(scale.shape)}")
    if quant.weight_bits < 1 or quant.input_bits < (2 if quant.input_signed else 1):
        fail(f"quant has {quant.weight_bits} weight bits and {quant.input_bits} "
             f"{'signed' if quant.input_signed else 'unsigned'} input bits")
    qmax = (1 << (quant.weight_bits - 1)) - 1
    if q.size and int(np.abs(q).max()) > qmax:
        fail(f"quant weights reach {int(np.abs(q).max())}, beyond ±{qmax} of {quant.weight_bits} bits")
    if quant.input_range_source not in _INPUT_RANGE_SOURCES:
        fail(f"quant input range source {quant.input_range_source!r} is none of {', '.join(_INPUT_RANGE_SOURCES)}")
    if (quant.input_scale is None) != (quant.input_range_source == "dynamic") or (
            quant.input_scale is not None and not quant.input_scale > 0):
        fail(f"quant input scale {quant.input_scale} does not fit its source {quant.input_range_source!r} "
             "(dynamic: none; else a positive number)")


def _check_tiles(g: Graph, node: Node, record: LayerMapping, fail, target, taken: dict) -> None:
    groups, outs, width = g.constants[record.quant.weights].shape
    kernel = int(np.prod(node.op.kernel)) if isinstance(node.op, ops.Conv) else 1
    dims = (groups, width // kernel, outs)  # groups, input channels per group, outputs per group
    crossbar = target.crossbar if target is not None else None
    first_core = None
    if crossbar is not None:
        first_core = target.core_range("crossbar").start
    lo = np.zeros((len(record.tiles), 3), np.int64)
    hi = np.zeros((len(record.tiles), 3), np.int64)
    cols_per_weight = set()
    for i, t in enumerate(record.tiles):
        if not isinstance(t, TileBlock):
            fail(f"tile {i} is a {type(t).__name__}, not a TileBlock")
        if not 0 <= t.replica < t.replicas:
            fail(f"tile {i} is replica {t.replica} of {t.replicas}")
        if t.replica:   # a replica holds its block's weights again: checked once, through replica 0
            first = record.tiles[i - t.replica]
            if (first.replica, first.replicas, first.core) != (0, t.replicas, t.core) or \
                    replace(first, xbar=t.xbar, replica=t.replica, round=t.round) != t:
                fail(f"tile {i}: replica {t.replica} does not follow its block's replica 0 on the same core")
            continue
        lo[i] = t.group, t.channel, t.out
        hi[i] = t.group + t.groups, t.channel + t.channels, t.out + t.outs
        if lo[i].min() < 0 or min(t.groups, t.channels, t.outs) < 1 or (hi[i] > dims).any():
            fail(f"tile {i} ({_block_text(t)}) lies outside the weight matrix of {dims[0]} groups × "
                 f"{dims[1]} channels × {dims[2]} outputs")
        if t.rows != t.groups * t.channels * kernel:
            fail(f"tile {i} uses {t.rows} rows, not groups × channels × kernel = {t.groups * t.channels * kernel}")
        if t.cols < 1 or t.cols % (t.groups * t.outs):
            fail(f"tile {i} uses {t.cols} columns for {t.groups * t.outs} outputs")
        cols_per_weight.add(t.cols // (t.groups * t.outs))
        if crossbar is not None and (t.rows > crossbar.rows or t.cols > crossbar.cols):
            fail(f"tile {i} of {t.rows}×{t.cols} cells does not fit crossbars of {crossbar.rows}×{crossbar.cols}")
        if not t.adc_range >= 0 or (t.adc_range_source and not t.adc_range > 0):
            fail(f"tile {i} has ADC range {t.adc_range} from {t.adc_range_source!r}")
        if min(t.core, t.xbar) < -1 or (t.core < 0) != (t.xbar < 0):
            fail(f"tile {i} is on core {t.core}, crossbar {t.xbar}: both placed or neither (-1)")
        if t.core >= 0:
            chips = g.chip_plan.chips if g.chip_plan is not None else max(target.chips, 1)
            cores = crossbar.count * chips if crossbar is not None else 0
            if first_core is not None and not (first_core <= t.core < first_core + cores
                                               and t.xbar < crossbar.crossbars_per_core):
                fail(f"tile {i} is on core {t.core}, crossbar {t.xbar}; the target's crossbar cores are "
                     f"{first_core}..{first_core + cores - 1} ({chips} chip(s)) with {crossbar.crossbars_per_core} "
                     "crossbars each")
            here = f"{node.name} tile {i}"
            if crossbar is not None and t.row + t.rows * t.copies > crossbar.rows:
                fail(f"tile {i} uses rows {t.row}..{t.row + t.rows * t.copies - 1}; crossbars have {crossbar.rows}")
            for start, stop, other in taken.setdefault((t.core, t.xbar, t.round), []):
                if start < t.row + t.rows * t.copies and t.row < stop:
                    fail(f"tile {i} shares rows of core {t.core}, crossbar {t.xbar} (round {t.round}) with {other}")
            taken[(t.core, t.xbar, t.round)].append((t.row, t.row + t.rows * t.copies, here))
    if len(cols_per_weight) > 1:
        fail(f"tiles use {sorted(cols_per_weight)} columns per weight; a layer has one width")
    firsts = [i for i, t in enumerate(record.tiles) if t.replica == 0]
    problem = _cover_problem(lo[firsts], hi[firsts], dims)
    if problem:
        fail(problem)


def _cover_problem(lo: np.ndarray, hi: np.ndarray, dims: tuple[int, int, int]) -> str:
    """Where blocks ``[lo, hi)`` (rows of (group, channel, output)) fail to cover ``dims``
    exactly once: counted on the grid the block edges cut, so the work is per block."""
    cuts = [np.unique(np.concatenate(([0, n], lo[:, a], hi[:, a]))) for a, n in enumerate(dims)]
    start = [np.searchsorted(cuts[a], lo[:, a]) for a in range(3)]
    stop = [np.searchsorted(cuts[a], hi[:, a]) for a in range(3)]
    count = np.zeros([len(c) - 1 for c in cuts], np.int32)
    for i in range(len(lo)):
        count[start[0][i]:stop[0][i], start[1][i]:stop[1][i], start[2][i]:stop[2][i]] += 1
    bad = np.argwhere(count != 1)
    if not len(bad):
        return ""
    cell = tuple(bad[0])
    group, channel, out = (int(cuts[a][cell[a]]) for a in range(3))
    return (f"tiles cover group {group}, channel {channel}, output {out} {int(count[cell])} times; "
            "each weight belongs to exactly one tile")


def _block_text(t: TileBlock) -> str:
    return (f"groups [{t.group},{t.group + t.groups}) channels [{t.channel},{t.channel + t.channels}) "
            f"outs [{t.out},{t.out + t.outs})")


def _check_cam(g: Graph, node: Node, cam: CamMapping, fail, target) -> None:
    features = g.shape(node.inputs[0])[-1]
    arrays = [g.constants.get(t) for t in (cam.lo, cam.hi, cam.leaves)]
    if any(a is None for a in arrays):
        fail(f"CAM mapping names {cam.lo!r}, {cam.hi!r}, {cam.leaves!r}, which are not all constants")
    lo, hi, leaves = arrays
    if lo.shape != (cam.rows, features) or hi.shape != lo.shape or leaves.ndim != 2 or len(leaves) != cam.rows:
        fail(f"CAM bounds {list(lo.shape)}, {list(hi.shape)} and leaves {list(leaves.shape)} do not hold "
             f"{cam.rows} rows of {features} features")
    if not np.all(lo < hi):
        fail("CAM row has an empty code range [lo, hi)")
    if [c.feature for c in cam.codes] != list(range(features)) or cam.columns != sum(c.cells for c in cam.codes):
        fail(f"CAM codes describe features {[c.feature for c in cam.codes]} in {cam.columns} columns, not each of "
             f"{features} features once in the sum of their cells")
    if not 1 <= cam.paths <= cam.rows or cam.lossless != (not any(c.merged for c in cam.codes)):
        fail(f"CAM mapping has {cam.paths} paths in {cam.rows} rows, lossless={cam.lossless}")
    cores = target.cam if target is not None else None
    first_core = None
    if cores is not None:
        first_core = target.core_range("cam").start
    row = 0
    for i, b in enumerate(cam.blocks):
        if b.row != row or b.rows < 1 or b.chained < 1:
            fail(f"CAM block {i} holds rows [{b.row},{b.row + b.rows}) on {b.chained} cores; the next rows "
                 f"start at {row}")
        if cores is not None and (b.rows > cores.rows or b.chained * cores.cols < cam.columns
                                  or not first_core <= b.core <= b.core + b.chained <= first_core + cores.count):
            fail(f"CAM block {i} ({b.rows} rows, cores {b.core}..{b.core + b.chained - 1}) does not fit the target's "
                 f"cores {first_core}..{first_core + cores.count - 1} of {cores.rows}×{cores.cols}")
        row += b.rows
    if row != cam.rows or cam.cores != sum(b.chained for b in cam.blocks):
        fail(f"CAM blocks hold {row} rows on {sum(b.chained for b in cam.blocks)} cores; the mapping says "
             f"{cam.rows} rows on {cam.cores}")
