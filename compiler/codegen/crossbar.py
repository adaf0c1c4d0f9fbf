"""Lowering of a crossbar-mapped Dense or Conv layer.

On the vector core (the target's vector core): the input is quantised to integers (with a scale fixed
by calibration or taken per sample from the largest |x|) into a padded buffer whose border is zero and sent to every crossbar core that
holds a tile of the layer. Each crossbar core receives it, runs one loop of ``xmvm`` per tile
over the output positions (a convolution reads im2col windows as strided views) and sends the
partial sums back. The vector core receives the first partial sum of each output range in place and adds those
of further row blocks, dequantises with the
per-channel weight scale and the input scale, and adds the bias.
"""
from __future__ import annotations

import numpy as np

from nmc.compiler.codegen.emitter import affine, strides_of, view, weight
from nmc.compiler.ir import ops
from nmc.compiler.ir.graph import Node
from nmc.compiler.ir.mapping import LayerMapping
from nmc.compiler.passes.bit_slicing import block_matrix
from nmc.isa.program import Tile
from nmc.isa.views import CoreRef

_TINY = 1e-30


class CrossbarLowering:
    def __init__(self, low):
        self.low, self.e, self.g = low, low.e, low.g

    def lower(self, node: Node, mapping: LayerMapping) -> None:
        quant = mapping.quant
        x, y = node.inputs[0], node.outputs[0]
        conv = isinstance(node.op, ops.Conv)
        e = self.e
        e.core = self.low.vector_core
        # geometry: the integer input buffer and how a block reads it at each output position
        if conv:
            rank = len(node.op.kernel)
            channels = self.g.shape(x)[1]
            out_shape = self.g.shape(y)
            m, o_spatial = out_shape[1], tuple(out_shape[2:])
            kernel = int(np.prod(node.op.kernel))
            begins, ends = node.op.pads[:rank], node.op.pads[rank:]
            spatial = tuple(self.g.shape(x)[2:])
            p_spatial = tuple(s + b + z for s, b, z in zip(spatial, begins, ends))
            in_size = channels * int(np.prod(p_spatial))
            positions = o_spatial
        else:
            k = self.g.shape(node.inputs[1])[1]
            m = self.g.shape(node.inputs[1])[0]
            rows = self.g.tensors[x].size // k
            kernel = 1
            in_size = rows * k
            positions = (rows,)
        n_pos = int(np.prod(positions))
        # 1. input scale and quantisation on the vector core
        if quant.input_scale is None:
            xs = self.low.dense(x, (self.g.tensors[x].size,))
            absx = e.buffer(self.g.tensors[x].size)
            scale = e.buffer(1)
            e.emit("abs", view(absx, 0, [(self.g.tensors[x].size, 1)]), xs)
            e.emit("rmax", view(scale, 0, [(1, 1)]), view(absx, 0, [(1, 0), (self.g.tensors[x].size, 1)]))
            e.emit("div", view(scale, 0, [(1, 1)]), view(scale, 0, [(1, 1)]), float(quant.input_max))
            e.emit("max", view(scale, 0, [(1, 1)]), view(scale, 0, [(1, 1)]), _TINY)
        else:
            scale_op = float(np.float32(quant.input_scale))
        lo = -quant.input_max if quant.input_signed else 0
        qin = e.buffer(in_size, dtype="i32")
        if conv:   # quantised into the interior of the padded integer input; only its border is zeroed
            interior = self.low.pad(qin, (channels,) + p_spatial, 1, begins, spatial, 0.0)
            src = self.low.dense(x, (channels,) + spatial)
        else:
            interior = view(qin, 0, [(in_size, 1)])
            src = self.low.dense(x, (in_size,))
        q_scale = view(scale, 0, [(n, 0) for n, _ in interior.dims]) if quant.input_scale is None else scale_op
        e.emit("quant", interior, src, q_scale, float(lo), float(quant.input_max))
        # 2. ship the integers to each crossbar core of the layer
        cores = sorted({t.core for t in mapping.tiles})
        remote_in = {}
        for c in cores:
            e.emit("send", CoreRef(c), view(qin, 0, [(in_size, 1)]))
        q = self.g.constants[quant.weights]
        partials = []
        for c in cores:
            e.core = c
            remote_in[c] = e.buffer(in_size, dtype="i32")
            e.emit("recv", view(remote_in[c], 0, [(in_size, 1)]), CoreRef(self.low.vector_core))
            for index, block in enumerate(mapping.tiles):
                if block.core != c:
                    continue
                name = e.tile(Tile(f"x{len(e.program.tiles)}", "", c, block.xbar, block.row, 0, quant.input_bits,
                                   quant.input_signed, block.adc_range, quant.weight_bits, e.layer, block.copies,
                                   block.round),
                              block_matrix(q, block, kernel))
                n_out = block.groups * block.outs
                if block.replica == 0:   # the block's replicas share its partial sums, each its positions
                    part = e.buffer(n_out * n_pos, dtype="i32")
                first_axis = o_spatial[0] if conv else rows
                share = (block.replica * first_axis // block.replicas, (block.replica + 1) * first_axis // block.replicas)
                if conv:
                    self._conv_block(node.op, name, part, remote_in[c], block, channels, p_spatial, o_spatial, rank,
                                     share)
                else:
                    self._dense_block(name, part, remote_in[c], block, share, k)
                if block.replica == block.replicas - 1:
                    e.emit("send", CoreRef(self.low.vector_core), view(part, 0, [(n_out * n_pos, 1)]))
                    partials.append((c, block, n_out))
        # 3. gather partial sums on the vector core, dequantise, add the bias
        e.core = self.low.vector_core
        acc = e.buffer(m * n_pos, dtype="i32")
        mg = m // (node.op.group if conv else 1)
        seen = set()   # output ranges already received: blocks tile the outputs (equal or disjoint ranges)
        for c, block, n_out in partials:
            ch0 = block.group * mg + block.out
            if conv:  # acc and partials are [channel, position]
                dst = view(acc, ch0 * n_pos, [(n_out, n_pos), (n_pos, 1)])
            else:  # [row, output]
                dst = view(acc, ch0, [(rows, m), (n_out, 1)])
            if (ch0, n_out) not in seen:   # the first partial of its outputs: received in place
                seen.add((ch0, n_out))
                e.emit("recv", dst, CoreRef(c))
                continue
            back = e.buffer(n_out * n_pos, dtype="i32")
            e.emit("recv", view(back, 0, [(n_out * n_pos, 1)]), CoreRef(c))
            if conv:
                src = view(back, 0, [(n_out, n_pos), (n_pos, 1)])
            else:
                src = view(back, 0, [(rows, n_out), (n_out, 1)])
            e.emit("add", dst, dst, src)
        yb, yo = self.low.place(y)
        wscale = self.low.place(quant.weight_scale)
        if conv:
            yv = view(yb, yo, [(m, n_pos), (n_pos, 1)])
            accv = view(acc, 0, [(m, n_pos), (n_pos, 1)])
            sv = view(wscale[0], wscale[1], [(m, 1), (n_pos, 0)])
        else:
            yv = view(yb, yo, [(rows, m), (m, 1)])
            accv = view(acc, 0, [(rows, m), (m, 1)])
            sv = view(wscale[0], wscale[1], [(rows, 0), (m, 1)])
        e.emit("dequant", yv, accv, sv)
        if quant.input_scale is None:
            e.emit("mul", yv, yv, view(scale, 0, [(yv.dims[0][0], 0), (yv.dims[1][0], 0)]))
        else:
            e.emit("mul", yv, yv, scale_op)
        if len(node.inputs) > 2:
            b = self.low.place(node.inputs[2])
            bias = view(b[0], b[1], [(m, 1), (n_pos, 0)]) if conv else view(b[0], b[1], [(rows, 0), (m, 1)])
            e.emit("add", yv, yv, bias)

    def _conv_block(self, op: ops.Conv, tile: str, part: str, src_buf: str, block, channels, p_spatial, o_spatial,
                    rank, share: tuple[int, int]) -> None:
        """The block's xmvm loop over its ``share`` [start, stop) of the first output axis (all of
        it unless the block is replicated) and every position of the other axes."""
        p_str = strides_of((channels,) + tuple(p_spatial))
        o_str = strides_of(tuple(o_spatial))
        n_pos = int(np.prod(o_spatial))
        cg = channels // op.group
        first_channel = block.group * cg + block.channel
        n_out = block.groups * block.outs

        start, stop = share

        def nest(axis, counters):
            if axis < rank:
                with self.e.loop(stop - start if axis == 0 else o_spatial[axis]) as var:
                    nest(axis + 1, counters + [var])
                return
            dst = view(part, affine(start * o_str[0], *[(v, o_str[a]) for a, v in enumerate(counters)]),
                       [(n_out, n_pos)])
            src = view(src_buf, affine(first_channel * p_str[0] + start * op.strides[0] * p_str[1],
                                       *[(v, op.strides[a] * p_str[1 + a]) for a, v in enumerate(counters)]),
                       [(block.groups * block.channels, p_str[0])]
                       + [(op.kernel[a], op.dilations[a] * p_str[1 + a]) for a in range(rank)])
            self.e.emit("xmvm", dst, weight(tile), src)

        nest(0, [])

    def _dense_block(self, tile: str, part: str, src_buf: str, block, share: tuple[int, int], k: int) -> None:
        """The block's xmvm loop over its ``share`` [start, stop) of the rows."""
        n_out = block.outs
        start, stop = share
        with self.e.loop(stop - start) as r:
            self.e.emit("xmvm", view(part, affine(start * n_out, (r, n_out)), [(n_out, 1)]), weight(tile),
                        view(src_buf, affine(block.channel + start * k, (r, k)), [(block.channels, 1)]))

