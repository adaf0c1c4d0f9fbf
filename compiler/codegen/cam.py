"""Lowering of a tree ensemble mapped to analog CAM (``CamMapping``).

On the vector core (the target's vector core) the input is threshold-coded (``cenc``) and sent to the first core
of every row block — or, with ``input_dacs``, the input itself is sent and each block's DACs code
it (a ``cenc`` on the CAM core: the same codes, priced as one DAC conversion per feature). With the
``tree`` reduction the same network distributes the input: the vector core sends it to block 0 and
block i forwards it to blocks 2i+1 and 2i+2 (X-TIME's demultiplexer tree; log2 blocks levels, two
sends per core instead of one per block on the vector core). Each CAM
core searches its rows (``csearch``: one match line per root-to-leaf path), reads the leaves of the
matched rows from leaf memory and adds them per target (``cleaf``, which adds onto dst row after row).
Under SUM with the ``chain`` reduction the running sum passes from block to block in row order, which
is tree order (block 0 starts from 0, the last sends it to the vector core), so the trees add one
after another in float32 as onnxruntime adds them on one thread; with ``tree`` each block sums its
own leaves and the partial sums meet pairwise through the network's adders (log2 blocks levels, the
float32 sums in another order: equal to onnxruntime's within rounding).
Averaging, base values and the post transform follow as ordinary digital nodes. For the MIN /
MAX aggregates the reduction network compares instead of adding (``cleafmin`` / ``cleafmax``), a
second ``cleaf`` counts the matched leaves that have a value per target, and the vector core writes 0
where none has (onnxruntime's ``has_score``).
"""
from __future__ import annotations

import numpy as np

from nmc.compiler.codegen.emitter import view
from nmc.compiler.ir.graph import Node
from nmc.compiler.ir.mapping import CamMapping
from nmc.isa.views import CoreRef



class CamLowering:
    def __init__(self, low):
        self.low, self.e, self.g = low, low.e, low.g

    def lower(self, node: Node, cam: CamMapping) -> None:
        e, g = self.e, self.g
        extreme = {"MIN": "cleafmin", "MAX": "cleafmax"}.get(node.op.aggregate)
        x, y = node.inputs[0], node.outputs[0]
        features = g.shape(x)[-1]
        targets = g.shape(y)[-1]
        e.core = self.low.vector_core
        # 1. threshold coding on the vector core
        width = max(1, max(max(len(c.ge), len(c.gt)) for c in cam.codes))
        ge = np.full((features, width), np.nan, np.float32)
        gt = np.full((features, width), np.nan, np.float32)
        for c in cam.codes:
            ge[c.feature, : len(c.ge)] = c.ge
            gt[c.feature, : len(c.gt)] = c.gt
        nan_code = np.array([c.levels - 1 for c in cam.codes], np.float32)
        levels_c = e.constant(np.array([c.levels for c in cam.codes], np.float32), dtype="i32")
        ge_c, gt_c, nan_c = e.constant(ge), e.constant(gt), e.constant(nan_code)
        xb, xo = self.low.place(x)
        x_v = view(xb, xo, [(features, 1)])
        tables = (view(ge_c, 0, [(features, width), (width, 1)]), view(gt_c, 0, [(features, width), (width, 1)]),
                  view(nan_c, 0, [(features, 1)]))
        # the tree network also distributes the input: block i forwards it to blocks 2i+1 and 2i+2
        fan = cam.reduction == "tree"
        sent = x_v
        if not cam.input_dacs:
            sent = view(e.buffer(features, dtype="i32"), 0, [(features, 1)])
            e.emit("cenc", sent, x_v, *tables)
        for block in cam.blocks[:1] if fan else cam.blocks:
            e.emit("send", CoreRef(block.core), sent)
        tree = cam.reduction == "tree" and not extreme
        parts = []
        # 2. search and leaf accumulation on each CAM core
        lo, hi, leaves = (g.constants[n] for n in (cam.lo, cam.hi, cam.leaves))
        for index, block in enumerate(cam.blocks):
            e.core = block.core
            rows = slice(block.row, block.row + block.rows)
            local = e.buffer(features, dtype="i32")
            match = e.buffer(block.rows)
            part = e.buffer(targets)
            lo_c = e.constant(lo[rows], dtype="i32")
            hi_c = e.constant(hi[rows], dtype="i32")
            leaf_c = e.constant(leaves[rows])
            source = cam.blocks[(index - 1) // 2].core if fan and index else self.low.vector_core
            inbox = view(e.buffer(features) if cam.input_dacs else local, 0, [(features, 1)])
            e.emit("recv", inbox, CoreRef(source))
            for child in (2 * index + 1, 2 * index + 2) if fan else ():
                if child < len(cam.blocks):
                    e.emit("send", CoreRef(cam.blocks[child].core), inbox)
            if cam.input_dacs:   # the block's DACs code the input it receives
                e.emit("cenc", view(local, 0, [(features, 1)]), inbox, *tables)
            bounds = [(block.rows, features), (features, 1)]
            e.emit("csearch", view(match, 0, [(block.rows, 1)]), view(lo_c, 0, bounds), view(hi_c, 0, bounds),
                   view(levels_c, 0, [(features, 1)]), view(local, 0, [(features, 1)]), float(cam.columns))
            leaf_v = view(leaf_c, 0, [(block.rows, targets), (targets, 1)])
            part_v = view(part, 0, [(targets, 1)])
            if tree:  # each block its own sum; the blocks meet pairwise below
                e.emit("fill", part_v, 0.0)
                e.emit("cleaf", part_v, view(match, 0, [(block.rows, 1)]), leaf_v, float(block.trees))
                parts.append((block.core, part_v, view(e.buffer(targets), 0, [(targets, 1)])))
                continue
            if not extreme:
                # SUM: the running sum passes from block to block in row (tree) order, each block
                # adding its leaves one after another, as onnxruntime adds the trees in order
                if index == 0:
                    e.emit("fill", part_v, 0.0)
                else:
                    e.emit("recv", part_v, CoreRef(cam.blocks[index - 1].core))
                e.emit("cleaf", part_v, view(match, 0, [(block.rows, 1)]), leaf_v, float(block.trees))
                last = index == len(cam.blocks) - 1
                e.emit("send", CoreRef(self.low.vector_core if last else cam.blocks[index + 1].core), part_v)
                continue
            e.emit(extreme, part_v, view(match, 0, [(block.rows, 1)]), leaf_v, float(block.trees))
            e.emit("send", CoreRef(self.low.vector_core), part_v)
            if extreme:  # and how many matched leaves have a value per target (has_score)
                has_c = e.constant((~np.isnan(leaves[rows])).astype(np.float32))
                e.emit("fill", part_v, 0.0)
                e.emit("cleaf", view(part, 0, [(targets, 1)]), view(match, 0, [(block.rows, 1)]),
                       view(has_c, 0, [(block.rows, targets), (targets, 1)]), float(block.trees))
                e.emit("send", CoreRef(self.low.vector_core), view(part, 0, [(targets, 1)]))
        # 3. the tree reduction: at level l block i (a multiple of 2^(l+1)) adds block i + 2^l's sum
        step = 1
        while tree and step < len(parts):
            for i in range(0, len(parts) - step, 2 * step):
                (core, part_v, inbox), (other, other_v, _) = parts[i], parts[i + step]
                e.core = other
                e.emit("send", CoreRef(core), other_v)
                e.core = core
                e.emit("recv", inbox, CoreRef(other))
                e.emit("add", part_v, part_v, inbox)
            step *= 2
        if tree:
            e.core = parts[0][0]
            e.emit("send", CoreRef(self.low.vector_core), parts[0][1])
        # 4. the vector core takes the sum, or combines the blocks' extremes
        e.core = self.low.vector_core
        yb, yo = self.low.place(y)
        out = view(yb, yo, [(targets, 1)])
        if not extreme:
            e.emit("recv", out, CoreRef(parts[0][0] if tree else cam.blocks[-1].core))
            return
        back = e.buffer(targets)
        back_v = view(back, 0, [(targets, 1)])
        # MIN/MAX: the extreme of the blocks' extremes, then 0 where no matched leaf has a value
        # (count 0): out * clip(count, 0, 1) is exact, as the empty extreme is a finite float32
        largest = float(np.finfo(np.float32).max)
        e.emit("fill", out, largest if extreme == "cleafmin" else -largest)
        count = e.buffer(targets)
        count_v = view(count, 0, [(targets, 1)])
        e.emit("fill", count_v, 0.0)
        for block in cam.blocks:
            e.emit("recv", back_v, CoreRef(block.core))
            e.emit("min" if extreme == "cleafmin" else "max", out, out, back_v)
            e.emit("recv", back_v, CoreRef(block.core))
            e.emit("add", count_v, count_v, back_v)
        e.emit("clip", count_v, count_v, 0.0, 1.0)
        e.emit("mul", out, out, count_v)
        e.emit("add", out, out, 0.0)   # -0.0 (no value under MAX) to 0.0
