"""Lowering of graph IR nodes to ISA instructions on digital vector cores.

Every tensor lives contiguously (C order) in a core-local buffer; a Reshape only renames.
Operands are strided views, so transposes, slices, broadcasts, padding and the im2col
windows of convolution and pooling are addressing, not code: a convolution is a loop over
output positions around one ``mvm``, and the program grows with layers, not pixels.
"""
from __future__ import annotations

import numpy as np

from nmc.backends.target import Target
from nmc.compiler.codegen.emitter import Emitter, affine, strides_of, view, weight
from nmc.compiler.errors import CompileError
from nmc.compiler.frontend.ops.nn import pool_divisors
from nmc.compiler.ir import ops
from nmc.compiler.ir.graph import BUFFER_DTYPES, Graph, Node
from nmc.isa.program import Program

_REDUCE_OPCODE = {"sum": "rsum", "mean": "rmean", "max": "rmax", "min": "rmin"}


class Lowering:
    def __init__(self, g: Graph, e: Emitter, vector_core: int = 0):
        self.g, self.e, self.vector_core = g, e, vector_core

    # ------------------------------------------------------------------ tensors
    def shape(self, t: str) -> tuple[int, ...]:
        return self.g.shape(t)

    def place(self, t: str) -> tuple[str, int]:
        """Where tensor ``t`` lives: a local buffer (allocated on first use) or a constant."""
        if t in self.e.location:
            return self.e.location[t]
        dtype = BUFFER_DTYPES[self.g.dtype(t)]
        if self.g.is_const(t):
            loc = (self.e.constant(self.g.constants[t], key=t, dtype=dtype), 0)
        else:
            loc = (self.e.buffer(self.g.tensors[t].size, dtype=dtype), 0)
        self.e.location[t] = loc
        return loc

    def dense(self, t: str, shape: tuple[int, ...] | None = None):
        """Contiguous view of ``t`` (optionally regarded as ``shape``)."""
        buf, off = self.place(t)
        shape = self.shape(t) if shape is None else shape
        return view(buf, off, zip(shape, strides_of(shape)))

    def broadcast(self, t: str, out_shape: tuple[int, ...]):
        """View of ``t`` broadcast (numpy rules) to ``out_shape``: repeated axes get stride 0."""
        buf, off = self.place(t)
        shape = self.shape(t)
        pad = len(out_shape) - len(shape)
        strides = strides_of(shape)
        dims = []
        for axis, size in enumerate(out_shape):
            src_axis = axis - pad
            if src_axis < 0 or shape[src_axis] == 1:
                dims.append((size, 0))
            else:
                dims.append((size, strides[src_axis]))
        return view(buf, off, dims)

    def scalar_or(self, t: str, out_shape):
        if self.g.is_const(t) and self.g.constants[t].size == 1:
            return float(self.g.constants[t].reshape(-1)[0])
        return self.broadcast(t, out_shape)

    # ------------------------------------------------------------------ dispatch
    def lower(self, node: Node) -> None:
        from nmc.compiler.codegen.recurrent import RecurrentLowering, inside_loop

        if isinstance(node.op, (ops.LoopCarried, ops.Recurrence)) or inside_loop(self.g, node):
            return RecurrentLowering(self).lower(node)  # a time loop, with its Dense nodes by R inside
        mapping = self.g.mapping.get(node.name)
        if mapping is not None and mapping.unit == "crossbar":
            from nmc.compiler.codegen.crossbar import CrossbarLowering

            return CrossbarLowering(self).lower(node, mapping)
        if mapping is not None and mapping.unit == "cam":
            from nmc.compiler.codegen.cam import CamLowering

            return CamLowering(self).lower(node, mapping.cam)
        method = getattr(self, "lower_" + type(node.op).__name__.lower(), None)
        if method is None:
            raise CompileError(f"{node.describe()}: no lowering for {type(node.op).__name__}")
        method(node, node.op)

    # ------------------------------------------------------------------ ops
    def lower_reshape(self, node: Node, op: ops.Reshape) -> None:
        """Data order is unchanged: the output is the input's storage under a new shape."""
        self.e.location[node.outputs[0]] = self.place(node.inputs[0])

    def lower_dense(self, node: Node, op: ops.Dense) -> None:
        x, w, y = node.inputs[0], node.inputs[1], node.outputs[0]
        n, k = self.shape(w)
        rows = self.g.tensors[x].size // k
        xb, xo = self.place(x)
        yb, yo = self.place(y)
        wc = self.e.constant(self.g.constants[w], key=w)
        with self.e.loop(rows) as r:
            self.e.emit("mvm", view(yb, affine(yo, (r, n)), [(n, 1)]), weight(wc),
                        view(xb, affine(xo, (r, k)), [(k, 1)]))
        if len(node.inputs) > 2:
            b = self.place(node.inputs[2])
            yv = view(yb, yo, [(rows, n), (n, 1)])
            self.e.emit("add", yv, yv, view(b[0], b[1], [(rows, 0), (n, 1)]))

    def lower_matmul(self, node: Node, op: ops.MatMul) -> None:
        a, b, y = node.inputs[0], node.inputs[1], node.outputs[0]
        sa, sb = self.shape(a), self.shape(b)
        a2 = (1,) + sa if len(sa) == 1 else sa
        b2 = sb + (1,) if len(sb) == 1 else sb
        lead = tuple(np.broadcast_shapes(a2[:-2], b2[:-2]))
        out = lead + (a2[-2], b2[-1])
        av = self._lead_view(a, a2, lead)
        bv = self._lead_view(b, b2, lead)
        self.e.emit("matmul", self.dense(y, out), av, bv)

    def _lead_view(self, t, shape, lead):
        buf, off = self.place(t)
        strides = strides_of(shape)
        pad = len(lead) - (len(shape) - 2)
        dims = []
        for axis, size in enumerate(lead):
            src = axis - pad
            dims.append((size, 0) if src < 0 or shape[src] == 1 else (size, strides[src]))
        dims += [(shape[-2], strides[-2]), (shape[-1], strides[-1])]
        return view(buf, off, dims)

    def pad(self, buf: str, shape: tuple[int, ...], first: int, begins, inner, value: float):
        """Set the padding of ``buf`` (``shape``; axes from ``first`` on are padded, ``begins``
        before and ``inner`` elements of data each) to ``value`` — one fill per padded side, so
        the interior is left for its data to be written once (corners are filled twice) — and
        return the view of that interior."""
        strides = strides_of(shape)
        for axis in range(len(inner)):
            a = first + axis
            for start, count in ((0, begins[axis]), (begins[axis] + inner[axis], shape[a] - begins[axis] - inner[axis])):
                if count:
                    dims = [(n, st) for n, st in zip(shape, strides)]
                    dims[a] = (count, strides[a])
                    self.e.emit("fill", view(buf, start * strides[a], dims), value)
        return view(buf, sum(b * st for b, st in zip(begins, strides[first:])),
                    list(zip(shape[:first], strides[:first])) + list(zip(inner, strides[first:])))

    def _padded(self, x: str, begins, ends, fill: float):
        """``x`` [N, C, *S] with its spatial axes padded (a copy only if there is padding);
        returns (buffer, offset, padded spatial shape)."""
        shape = self.shape(x)
        lead, spatial = tuple(shape[:2]), tuple(shape[2:])
        if not any(begins) and not any(ends):
            buf, off = self.place(x)
            return buf, off, spatial
        padded = tuple(s + b + e for s, b, e in zip(spatial, begins, ends))
        full = lead + padded
        pbuf = self.e.buffer(int(np.prod(full)))
        self.e.emit("mov", self.pad(pbuf, full, 2, begins, spatial, fill), self.dense(x))
        return pbuf, 0, padded

    def lower_conv(self, node: Node, op: ops.Conv) -> None:
        x, w, y = node.inputs[0], node.inputs[1], node.outputs[0]
        rank = len(op.kernel)
        samples, channels = self.shape(x)[:2]
        out_shape = self.shape(y)
        m, o_spatial = out_shape[1], out_shape[2:]
        group = op.group
        cg, mg = channels // group, m // group
        pbuf, poff, p_spatial = self._padded(x, op.pads[:rank], op.pads[rank:], 0.0)
        p_str = strides_of((samples, channels) + tuple(p_spatial))
        o_str = strides_of((samples, m) + tuple(o_spatial))
        wmat = self.g.constants[w].reshape(group, mg, -1) if group > 1 else self.g.constants[w].reshape(m, -1)
        wc = self.e.constant(wmat, key=(w, "conv matrix"))   # not a tensor name: no graph constant can share it
        yb, yo = self.place(y)
        with self.e.loop(samples) as n, self.e.loop(group) as g:
            self._conv_loops(op, rank, 0, [], n, g, wc, yb, yo, pbuf, poff, p_str, o_str, o_spatial, cg, mg)
        if len(node.inputs) > 2:
            b = self.place(node.inputs[2])
            o_size = int(np.prod(o_spatial))
            yv = view(yb, yo, [(samples, m * o_size), (m, o_size), (o_size, 1)])
            self.e.emit("add", yv, yv, view(b[0], b[1], [(samples, 0), (m, 1), (o_size, 0)]))

    def _conv_loops(self, op, rank, axis, counters, n, g, wc, yb, yo, pbuf, poff, p_str, o_str, o_spatial, cg, mg):
        if axis < rank:
            with self.e.loop(o_spatial[axis]) as var:
                self._conv_loops(op, rank, axis + 1, counters + [var], n, g, wc, yb, yo, pbuf, poff, p_str,
                                 o_str, o_spatial, cg, mg)
            return
        o_size = o_str[1]
        p_size = p_str[1]
        dst = view(yb, affine(yo, (n, o_str[0]), (g, mg * o_size),
                              *[(v, o_str[2 + a]) for a, v in enumerate(counters)]),
                   [(mg, o_size)])
        src = view(pbuf, affine(poff, (n, p_str[0]), (g, cg * p_size),
                                *[(v, op.strides[a] * p_str[2 + a]) for a, v in enumerate(counters)]),
                   [(cg, p_size)] + [(op.kernel[a], op.dilations[a] * p_str[2 + a]) for a in range(rank)])
        self.e.emit("mvm", dst, weight(wc, affine(0, (g, 1)) if op.group > 1 else None), src)

    def lower_pool(self, node: Node, op: ops.Pool) -> None:
        x, y = node.inputs[0], node.outputs[0]
        rank = len(op.kernel)
        samples, channels = self.shape(x)[:2]
        o_spatial = self.shape(y)[2:]
        fill = -np.inf if op.kind == "max" else 0.0
        pbuf, poff, p_spatial = self._padded(x, op.pads[:rank], op.pads[rank:], fill)
        p_str = strides_of((samples, channels) + tuple(p_spatial))
        yv = self.dense(y, (samples, channels) + tuple(o_spatial))
        src = view(pbuf, poff, [(samples, p_str[0]), (channels, p_str[1])]
                   + [(o_spatial[a], op.strides[a] * p_str[2 + a]) for a in range(rank)]
                   + [(op.kernel[a], op.dilations[a] * p_str[2 + a]) for a in range(rank)])
        self.e.emit("rmax" if op.kind == "max" else "rsum", yv, src)
        if op.kind == "avg":
            divisors = pool_divisors(self.shape(x)[2:], op, o_spatial)
            if np.all(divisors == divisors.reshape(-1)[0]):
                self.e.emit("div", yv, yv, float(divisors.reshape(-1)[0]))
            else:
                dc = self.e.constant(divisors)
                self.e.emit("div", yv, yv, view(dc, 0, [(samples, 0), (channels, 0)]
                                                + list(zip(o_spatial, strides_of(o_spatial)))))

    def lower_batchnorm(self, node: Node, op: ops.BatchNorm) -> None:
        x, y = node.inputs[0], node.outputs[0]
        scale, bias, mean, var = (self.g.constants[t] for t in node.inputs[1:])
        a = scale / np.sqrt(var + op.epsilon)
        b = bias - mean * a
        shape = self.shape(x)
        per_channel = (1, shape[1]) + (1,) * (len(shape) - 2)
        ac = self.e.constant(a.reshape(per_channel))
        bc = self.e.constant(b.reshape(per_channel))
        yv = self.dense(y)
        self.e.emit("mul", yv, self.dense(x), self._bcast_const(ac, per_channel, shape))
        self.e.emit("add", yv, yv, self._bcast_const(bc, per_channel, shape))

    def _bcast_const(self, name: str, shape, out_shape):
        strides = strides_of(shape)
        return view(name, 0, [(o, 0 if s == 1 else st) for o, s, st in zip(out_shape, shape, strides)])

    def lower_layernorm(self, node: Node, op: ops.LayerNorm) -> None:
        x, y = node.inputs[0], node.outputs[0]
        shape = self.shape(x)
        rows = int(np.prod(shape[: op.axis]))
        width = int(np.prod(shape[op.axis:]))
        mean = self.e.buffer(rows)
        var = self.e.buffer(rows)
        square = self.e.buffer(rows * width)
        xv, yv = self.dense(x, (rows, width)), self.dense(y, (rows, width))
        sq = view(square, 0, [(rows, width), (width, 1)])
        self.e.emit("rmean", view(mean, 0, [(rows, 1)]), xv)
        self.e.emit("sub", yv, xv, view(mean, 0, [(rows, 1), (width, 0)]))
        self.e.emit("mul", sq, yv, yv)
        self.e.emit("rmean", view(var, 0, [(rows, 1)]), sq)
        self.e.emit("add", view(var, 0, [(rows, 1)]), view(var, 0, [(rows, 1)]), op.epsilon)
        self.e.emit("sqrt", view(var, 0, [(rows, 1)]), view(var, 0, [(rows, 1)]))
        self.e.emit("div", yv, yv, view(var, 0, [(rows, 1), (width, 0)]))
        for opcode, t in (("mul", node.inputs[1]), ("add", node.inputs[2] if len(node.inputs) > 2 else None)):
            if t is None:
                continue
            value = self.g.constants[t]
            if value.size == 1:
                self.e.emit(opcode, yv, yv, float(value.reshape(-1)[0]))
            elif value.size == width:
                c = self.place(t)
                self.e.emit(opcode, yv, yv, view(c[0], c[1], [(rows, 0), (width, 1)]))
            else:
                full = np.broadcast_to(value, shape[op.axis:]).reshape(-1)
                c = self.e.constant(full)
                self.e.emit(opcode, yv, yv, view(c, 0, [(rows, 0), (width, 1)]))

    def lower_unary(self, node: Node, op: ops.Unary) -> None:
        x, y = node.inputs[0], node.outputs[0]
        if op.fn in ("leaky", "elu"):
            self.e.emit(op.fn, self.dense(y), self.dense(x), op.alpha)
        else:
            self.e.emit(op.fn, self.dense(y), self.dense(x))

    def lower_clip(self, node: Node, op: ops.Clip) -> None:
        self.e.emit("clip", self.dense(node.outputs[0]), self.dense(node.inputs[0]), op.lo, op.hi)

    def lower_fakequant(self, node: Node, op: ops.FakeQuant) -> None:
        """quant to i32 codes ``q − zp`` (clipped to the grid), dequant back: exact in float32.
        Zero points that differ per channel take the long way: add zp, clip, subtract zp."""
        x, y = node.inputs[0], node.outputs[0]
        shape = self.shape(x)
        if op.per_axis:
            along = tuple(len(op.scale) if a == op.axis else 1 for a in range(len(shape)))
            scale = self._bcast_const(self.e.constant(np.asarray(op.scale, np.float32).reshape(along)), along, shape)
        else:
            scale = float(op.scale[0])
        codes = self.e.buffer(self.g.tensors[x].size, dtype="i32")
        cv = view(codes, 0, zip(shape, strides_of(shape)))
        yv = self.dense(y)
        lo, hi = op.codes
        self.e.emit("quant", cv, self.dense(x), scale, float(lo), float(hi))
        if len(set(op.zero_point)) == 1:
            self.e.emit("dequant", yv, cv, scale)
            return
        zero = self._bcast_const(self.e.constant(np.asarray(op.zero_point, np.float32).reshape(along)), along, shape)
        self.e.emit("dequant", yv, cv, 1.0)
        self.e.emit("add", yv, yv, zero)
        self.e.emit("clip", yv, yv, float(op.qmin), float(op.qmax))
        self.e.emit("sub", yv, yv, zero)
        self.e.emit("mul", yv, yv, scale)

    def lower_binary(self, node: Node, op: ops.Binary) -> None:
        a, b, y = node.inputs[0], node.inputs[1], node.outputs[0]
        out = self.shape(y)
        self.e.emit(op.fn, self.dense(y), self.broadcast(a, out), self.scalar_or(b, out))

    def _moved_last(self, t: str, axes: tuple[int, ...], shape=None):
        """View of ``t`` with ``axes`` moved (in order) to the end."""
        buf, off = self.place(t)
        shape = self.shape(t) if shape is None else shape
        strides = strides_of(shape)
        keep = [a for a in range(len(shape)) if a not in axes]
        return view(buf, off, [(shape[a], strides[a]) for a in keep] + [(shape[a], strides[a]) for a in axes])

    def lower_softmax(self, node: Node, op: ops.Softmax) -> None:
        x, y = node.inputs[0], node.outputs[0]
        shape = self.shape(x)
        axes = op.axes
        if len(axes) > 1:  # trailing axes (opset < 13): merge them into one
            lead = shape[: axes[0]]
            shape = tuple(lead) + (int(np.prod(shape[axes[0]:])),)
            axes = (len(shape) - 1,)
        self.e.emit("softmax", self._moved_last(y, axes, shape), self._moved_last(x, axes, shape))

    def lower_reduce(self, node: Node, op: ops.Reduce) -> None:
        x, y = node.inputs[0], node.outputs[0]
        shape = self.shape(x)
        kept = [shape[a] for a in range(len(shape)) if a not in op.axes]
        src = self._moved_last(x, op.axes)
        yb, yo = self.place(y)
        if kept:
            dst = view(yb, yo, zip(kept, strides_of(tuple(kept))))
        else:
            dst = view(yb, yo, [(1, 1)])
            src = view(src.buffer, src.offset, ((1, 0),) + src.dims)
        self.e.emit(_REDUCE_OPCODE[op.kind], dst, src)

    def lower_argmax(self, node: Node, op: ops.ArgMax) -> None:
        x, y = node.inputs[0], node.outputs[0]
        shape = self.shape(x)
        kept = [shape[a] for a in range(len(shape)) if a != op.axis] or [1]
        yb, yo = self.place(y)
        src = self._moved_last(x, (op.axis,))
        if len(shape) == 1:
            src = view(src.buffer, src.offset, ((1, 0),) + src.dims)
        self.e.emit("argmax", view(yb, yo, zip(kept, strides_of(tuple(kept)))), src)

    def lower_treeensemble(self, node: Node, op: ops.TreeEnsemble) -> None:
        raise CompileError(f"{node.describe()}: a tree ensemble needs the cam-mapping pass and a target with CAM cores")

    def lower_transpose(self, node: Node, op: ops.Transpose) -> None:
        x, y = node.inputs[0], node.outputs[0]
        shape = self.shape(x)
        strides = strides_of(shape)
        buf, off = self.place(x)
        self.e.emit("mov", self.dense(y), view(buf, off, [(shape[p], strides[p]) for p in op.perm]))

    def lower_expand(self, node: Node, op: ops.Expand) -> None:
        """One copy from the input broadcast to the output's shape (stride 0 on repeated axes)."""
        y = node.outputs[0]
        self.e.emit("mov", self.dense(y), self.broadcast(node.inputs[0], self.shape(y)))

    def lower_concat(self, node: Node, op: ops.Concat) -> None:
        y = node.outputs[0]
        out = self.shape(y)
        ostr = strides_of(out)
        yb, yo = self.place(y)
        start = 0
        for t in node.inputs:
            shape = self.shape(t)
            dst = view(yb, yo + start * ostr[op.axis], zip(shape, ostr))
            self.e.emit("mov", dst, self.dense(t))
            start += shape[op.axis]

    def lower_slice(self, node: Node, op: ops.Slice) -> None:
        x, y = node.inputs[0], node.outputs[0]
        shape = self.shape(x)
        strides = strides_of(shape)
        buf, off = self.place(x)
        out = self.shape(y)
        if 0 in out:
            raise CompileError(f"{node.describe()}: empty slices are not supported")
        src = view(buf, off + sum(s * st for s, st in zip(op.starts, strides)),
                   [(o, step * st) for o, step, st in zip(out, op.steps, strides)])
        self.e.emit("mov", self.dense(y), src)

    def lower_pad(self, node: Node, op: ops.Pad) -> None:
        x, y = node.inputs[0], node.outputs[0]
        shape, out = self.shape(x), self.shape(y)
        rank = len(shape)
        ostr = strides_of(out)
        yb, yo = self.place(y)
        self.e.emit("fill", view(yb, yo, [(int(np.prod(out)), 1)]), op.value)
        interior = view(yb, yo + sum(p * st for p, st in zip(op.pads[:rank], ostr)), zip(shape, ostr))
        self.e.emit("mov", interior, self.dense(x))

    # ------------------------------------------------------------------ index and mask tensors
    def lower_compare(self, node: Node, op: ops.Compare) -> None:
        a, b, y = node.inputs[0], node.inputs[1], node.outputs[0]
        out = self.shape(y)
        self.e.emit(op.fn, self.dense(y), self.broadcast(a, out), self.scalar_or(b, out))

    def lower_select(self, node: Node, op: ops.Select) -> None:
        cond, a, b = node.inputs
        y = node.outputs[0]
        out = self.shape(y)
        self.e.emit("select", self.dense(y), self.broadcast(cond, out), self.scalar_or(a, out), self.scalar_or(b, out))

    def lower_cast(self, node: Node, op: ops.Cast) -> None:
        """To bool: ``ne x, 0``; between f32 and i32: ``cast``; within one buffer type: the same storage."""
        x, y = node.inputs[0], node.outputs[0]
        if op.to == "bool" and self.g.dtype(x) != "bool":
            self.e.emit("ne", self.dense(y), self.dense(x), 0.0)
        elif BUFFER_DTYPES[op.to] == BUFFER_DTYPES[self.g.dtype(x)]:
            self.e.location[y] = self.place(x)
        else:
            self.e.emit("cast", self.dense(y), self.dense(x))

    def lower_gather(self, node: Node, op: ops.Gather) -> None:
        """One ``gather``: the table viewed with the gathered axis first, dst viewed in the same
        order (the index axes, then the table's other axes) over the output's C-ordered storage."""
        table, idx, y = node.inputs[0], node.inputs[1], node.outputs[0]
        shape, ishape, axis = self.shape(table), self.shape(idx), op.axis
        tstr, ostr = strides_of(shape), strides_of(self.shape(y))
        others = [k for k in range(len(shape)) if k != axis]
        tb, to = self.place(table)
        table_view = view(tb, to, [(shape[axis], tstr[axis])] + [(shape[k], tstr[k]) for k in others])
        out_axis = {k: k if k < axis else k - 1 + len(ishape) for k in others}
        index_dims = [(ishape[j], ostr[axis + j]) for j in range(len(ishape))] or [(1, 0)]
        yb, yo = self.place(y)
        dst = view(yb, yo, index_dims + [(shape[k], ostr[out_axis[k]]) for k in others])
        ib, io = self.place(idx)
        idx_view = view(ib, io, list(zip(ishape, strides_of(ishape))) or [(1, 1)])
        self.e.emit("gather", dst, table_view, idx_view)


def generate(g: Graph, target: Target) -> Program:
    """Emit the program: digital work on the target's vector core, crossbar and CAM layers on
    the cores their mapping records name."""
    e = Emitter(target.name, g.batched)
    e.core = target.vector_core
    low = Lowering(g, e, target.vector_core)
    for t in g.inputs:
        size = g.tensors[t].size
        port_buffer = e.buffer(size, "global", prefix="in", dtype=BUFFER_DTYPES[g.dtype(t)])
        shape = g.shape(t)[1:] if g.batched else g.shape(t)
        e.add_port("input", t, shape, port_buffer)
        e.emit("load", low.dense(t, (size,)), view(port_buffer, 0, [(size, 1)]))
    for node in g.nodes():
        e.begin_layer(node.onnx_name or node.name, node.onnx_op or type(node.op).__name__)
        low.lower(node)
    e.layer = -1
    for t, name in zip(g.outputs, g.port_names()):
        size = g.tensors[t].size
        port_buffer = e.buffer(size, "global", prefix="out", dtype=BUFFER_DTYPES[g.dtype(t)])
        shape = g.shape(t)[1:] if g.batched else g.shape(t)
        e.add_port("output", name, shape, port_buffer)
        e.emit("store", view(port_buffer, 0, [(size, 1)]), low.dense(t, (size,)))
    return e.finish()
