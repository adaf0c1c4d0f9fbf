"""Lowering of a tree ensemble mapped to analog CAM (``CamMapping``).

On the vector core (core 0) the input is threshold-coded (``cenc``) and sent to the first core
of every row block. Each CAM core searches its rows (``csearch``: one match line per
root-to-leaf path), reads the leaves of the matched rows from leaf memory and adds them per
target (``cleaf``), and sends the partial sums back; core 0 adds the blocks' partial sums.
Averaging, base values and the post transform follow as ordinary digital nodes.
"""
from __future__ import annotations

import numpy as np

from compiler.codegen.emitter import view
from compiler.ir.graph import Node
from compiler.ir.mapping import CamMapping
from isa.views import CoreRef

VECTOR_CORE = 0


class CamLowering:
    def __init__(self, low):
        self.low, self.e, self.g = low, low.e, low.g

    def lower(self, node: Node, cam: CamMapping) -> None:
        e, g = self.e, self.g
        x, y = node.inputs[0], node.outputs[0]
        features = g.shape(x)[-1]
        targets = g.shape(y)[-1]
        e.core = VECTOR_CORE
        # 1. threshold coding on the vector core
        width = max(1, max(max(len(c.ge), len(c.gt)) for c in cam.codes))
        ge = np.full((features, width), np.nan, np.float32)
        gt = np.full((features, width), np.nan, np.float32)
        for c in cam.codes:
            ge[c.feature, : len(c.ge)] = c.ge
            gt[c.feature, : len(c.gt)] = c.gt
        nan_code = np.array([c.levels - 1 for c in cam.codes], np.float32)
        ge_c, gt_c, nan_c = e.constant(ge), e.constant(gt), e.constant(nan_code)
        codes = e.buffer(features, dtype="i32")
        codes_v = view(codes, 0, [(features, 1)])
        xb, xo = self.low.place(x)
        e.emit("cenc", codes_v, view(xb, xo, [(features, 1)]), view(ge_c, 0, [(features, width), (width, 1)]),
               view(gt_c, 0, [(features, width), (width, 1)]), view(nan_c, 0, [(features, 1)]))
        for block in cam.blocks:
            e.emit("send", CoreRef(block.core), codes_v)
        # 2. search and leaf accumulation on each CAM core
        lo, hi, leaves = (g.constants[n] for n in (cam.lo, cam.hi, cam.leaves))
        for block in cam.blocks:
            e.core = block.core
            rows = slice(block.row, block.row + block.rows)
            local = e.buffer(features, dtype="i32")
            match = e.buffer(block.rows)
            part = e.buffer(targets)
            lo_c = e.constant(lo[rows], dtype="i32")
            hi_c = e.constant(hi[rows], dtype="i32")
            leaf_c = e.constant(leaves[rows])
            e.emit("recv", view(local, 0, [(features, 1)]), CoreRef(VECTOR_CORE))
            bounds = [(block.rows, features), (features, 1)]
            e.emit("csearch", view(match, 0, [(block.rows, 1)]), view(lo_c, 0, bounds), view(hi_c, 0, bounds),
                   view(local, 0, [(features, 1)]), float(cam.columns))
            e.emit("cleaf", view(part, 0, [(targets, 1)]), view(match, 0, [(block.rows, 1)]),
                   view(leaf_c, 0, [(block.rows, targets), (targets, 1)]), float(block.trees))
            e.emit("send", CoreRef(VECTOR_CORE), view(part, 0, [(targets, 1)]))
        # 3. the blocks' partial sums added on the vector core
        e.core = VECTOR_CORE
        yb, yo = self.low.place(y)
        out = view(yb, yo, [(targets, 1)])
        e.emit("fill", out, 0.0)
        back = e.buffer(targets)
        back_v = view(back, 0, [(targets, 1)])
        for block in cam.blocks:
            e.emit("recv", back_v, CoreRef(block.core))
            e.emit("add", out, out, back_v)
