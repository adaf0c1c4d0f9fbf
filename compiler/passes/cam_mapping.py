"""cam-mapping: tree ensembles onto analog CAM cores.

One root-to-leaf path per CAM row (Pedretti et al., Nat. Commun. 2021): every feature is one
range ``[low, high)`` of a per-feature *threshold code*, features a path does not test are
wildcards, and a path whose condition on a feature is a union of ranges (NEQ, missing values
sent one way) becomes several rows, one per combination of ranges. The code of a value is the
number of the feature's cuts it lies above, a cut being "x >= t" or "x > t" for each threshold
the model compares with; so comparing codes gives exactly the decisions of comparing values,
and with the cuts sorted the code needs ``cuts + 2`` levels (one for NaN). A feature takes as
many adjacent cells of ``cell_bits`` as its levels need, up to the target's
``max_cells_per_feature``; past that, cuts are merged onto their neighbours, and the mapping
records a warning that says which and how many decisions move. Rows are packed into cores of
``rows`` rows; a row wider than one core's columns chains the next cores.
"""
from __future__ import annotations

import bisect
import dataclasses
import itertools
import math
from dataclasses import dataclass

import numpy as np

from nmc.compiler.errors import CompileError
from nmc.compiler.ir import ops
from nmc.compiler.ir.graph import Graph
from nmc.compiler.ir.mapping import CamBlock, CamMapping, FeatureCode, LayerMapping
from nmc.compiler.passes.base import Pass
from nmc.compiler.passes.placement import CapacityError

_BEFORE, _AFTER = 0, 1   # a cut "x >= t" (before t) or "x > t" (after t)
_CUT_SIDES = {"BRANCH_LEQ": (_AFTER,), "BRANCH_GT": (_AFTER,), "BRANCH_LT": (_BEFORE,), "BRANCH_GTE": (_BEFORE,),
              "BRANCH_EQ": (_BEFORE, _AFTER), "BRANCH_NEQ": (_BEFORE, _AFTER)}


@dataclass(frozen=True)
class CamMappingPass(Pass):
    """``lossless``: as many adjacent cells per feature as its code needs (never merge cuts);
    ``max_cells``: cells per feature (0: the target's ``max_cells_per_feature``)."""

    name = "cam-mapping"
    ensures = ("trees-on-cam",)
    lossless: bool = False
    max_cells: int = 0

    def run(self, g: Graph, target=None) -> bool:
        trees = [n for n in g.nodes() if isinstance(n.op, ops.TreeEnsemble)]
        if not trees:
            return False
        cam = target.cam if target is not None else None
        if cam is None:
            node = trees[0]
            name = target.name if target is not None else "(none)"
            raise CompileError(f"{node.describe()}: tree ensembles run on analog CAM cores, and target {name!r} has "
                               "none; compile with --target acam or add a [[cores]] group of kind 'cam'")
        next_core = target.core_range("cam").start
        used = 0
        for node in trees:
            mapping = self.map_ensemble(g, node, cam, next_core)
            next_core += mapping.cores
            used += mapping.cores
            if used > cam.count:
                raise CapacityError(f"{node.describe()}: the tree ensembles need {used} CAM cores of {cam.rows}×{cam.cols} "
                                    f"but target {target.name!r} has {cam.count}")
            g.mapping[node.name] = LayerMapping(
                "cam", f"tree ensemble: {mapping.rows} paths in {mapping.cores} {cam.technology} CAM cores", cam=mapping)
        return True

    # ------------------------------------------------------------------ one ensemble
    def map_ensemble(self, g: Graph, node, cam, first_core: int) -> CamMapping:
        x, nodes_name, leaves_name, roots_name = node.inputs
        table = g.constants[nodes_name]
        leaf_values = g.constants[leaves_name]
        roots = g.constants[roots_name].astype(np.int64)
        n_features = g.shape(x)[-1]
        max_cells = None if self.lossless else (self.max_cells or cam.max_cells_per_feature)
        codes, cut_index, warnings = self._codes(table, n_features, cam.cell_bits, max_cells)
        conditions = self._conditions(table, codes, cut_index)
        levels = np.array([c.levels for c in codes])
        lo_rows, hi_rows, leaf_rows, tree_of_row = [], [], [], []
        paths = 0
        for root in roots:
            for leaf, allowed in _paths(table, int(root), conditions, levels):
                paths += 1
                per_feature = [_intervals(allowed[f]) if f in allowed else [(0, int(levels[f]))]
                               for f in range(n_features)]
                # SUM: a leaf without a value for a target adds 0; MIN/MAX keep NaN ("no value")
                value = leaf_values[leaf] if node.op.aggregate != "SUM" else np.nan_to_num(leaf_values[leaf], nan=0.0)
                for combo in itertools.product(*per_feature):
                    lo_rows.append([a for a, _ in combo])
                    hi_rows.append([b for _, b in combo])
                    leaf_rows.append(value)
                    tree_of_row.append(int(table[leaf, 6]))
        rows = len(lo_rows)
        if rows == 0:
            raise CompileError(f"{node.describe()}: the ensemble has no reachable leaf")
        columns = sum(c.cells for c in codes)
        chained = max(1, math.ceil(columns / cam.cols))
        blocks = []
        for b, row in enumerate(range(0, rows, cam.rows)):
            count = min(cam.rows, rows - row)
            trees_here = len(set(tree_of_row[row: row + count]))
            blocks.append(CamBlock(row, count, first_core + b * chained, chained, trees_here))
        cores = len(blocks) * chained
        lo = g.add_constant(f"{node.name}.cam_lo", np.asarray(lo_rows, dtype=np.float32))
        hi = g.add_constant(f"{node.name}.cam_hi", np.asarray(hi_rows, dtype=np.float32))
        leaves = g.add_constant(f"{node.name}.cam_leaves", np.asarray(leaf_rows, dtype=np.float32))
        return CamMapping(lo, hi, leaves, tuple(codes), tuple(blocks), paths, rows, columns, cores,
                          cores * cam.arrays_per_core, rows * columns / (cores * cam.rows * cam.cols),
                          not any(c.merged for c in codes), tuple(warnings), cam.input_dacs, cam.reduction)

    def _codes(self, table: np.ndarray, n_features: int, cell_bits: int, max_cells: int | None):
        """Per feature: the cuts, their code (merged if the cell cap forces it), and for every
        (node, side) the index of the cut it now compares with."""
        branches = table[:, 2] != 0
        codes, cut_index, warnings = [], {}, []
        for f in range(n_features):
            rows = np.nonzero(branches & (table[:, 0] == f))[0]
            wanted = sorted({(float(table[r, 1]), side) for r in rows
                             for side in _CUT_SIDES[ops.NODE_MODES[int(table[r, 2])]]})
            kept = wanted
            capacity = None if max_cells is None else 1 << (cell_bits * max_cells)
            if capacity is not None and len(wanted) + 2 > capacity:
                keep = capacity - 2
                picks = np.unique(np.round(np.linspace(0, len(wanted) - 1, keep)).astype(int))
                kept = [wanted[i] for i in picks]
            values = np.array([t for t, _ in kept], dtype=np.float64)
            moved, largest = 0, 0.0
            for r in rows:
                for side in _CUT_SIDES[ops.NODE_MODES[int(table[r, 2])]]:
                    cut = (float(table[r, 1]), side)
                    if kept is wanted:
                        k = bisect.bisect_left(wanted, cut)
                    else:
                        k = _nearest(kept, values, cut)
                        if kept[k] != cut:
                            moved += 1
                            largest = max(largest, abs(values[k] - cut[0]))
                    cut_index[(int(r), side)] = k
            levels = len(kept) + 2
            cells = max(1, math.ceil(math.ceil(math.log2(levels)) / cell_bits)) if len(rows) else 0
            merged = len(wanted) - len(kept)
            if merged:
                warnings.append(
                    f"feature {f}: {len(wanted)} distinct cuts need {len(wanted) + 2} levels but {max_cells} cell(s) of "
                    f"{cell_bits} bits hold {capacity}: {merged} cuts merged into their neighbours, so {moved} of "
                    f"{len(rows)} decisions on this feature compare with a moved threshold (largest move "
                    f"{largest:.4g}); inputs between the old and new threshold may take the other branch")
            codes.append(FeatureCode(f, tuple(t for t, s in kept if s == _BEFORE), tuple(t for t, s in kept if s == _AFTER),
                                     levels, cells, len(wanted), merged))
        if codes and not any(c.cells for c in codes):
            # no tree tests a feature (one-leaf trees): one cell of feature 0 that every code matches
            codes[0] = dataclasses.replace(codes[0], cells=1)
        return codes, cut_index, warnings

    def _conditions(self, table, codes, cut_index) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """For every branch row: the codes (a mask over the feature's levels) that go to the true
        child and those that go to the false child."""
        out = {}
        for r in np.nonzero(table[:, 2] != 0)[0]:
            f, mode, missing_true = int(table[r, 0]), ops.NODE_MODES[int(table[r, 2])], bool(table[r, 5])
            levels = codes[f].levels
            nan = levels - 1
            true = np.zeros(levels, dtype=bool)
            if mode in ("BRANCH_LEQ", "BRANCH_LT"):
                true[: cut_index[(int(r), _CUT_SIDES[mode][0])] + 1] = True
            elif mode in ("BRANCH_GTE", "BRANCH_GT"):
                true[cut_index[(int(r), _CUT_SIDES[mode][0])] + 1: nan] = True
            else:
                true[cut_index[(int(r), _BEFORE)] + 1: cut_index[(int(r), _AFTER)] + 1] = True
                if mode == "BRANCH_NEQ":
                    true[:nan] = ~true[:nan]
            false = ~true
            true[nan] = mode == "BRANCH_NEQ" or missing_true   # onnxruntime: NaN != t is true
            false[nan] = not true[nan]
            out[int(r)] = (true, false)
        return out


def _nearest(kept, values: np.ndarray, cut) -> int:
    """The kept cut closest in value to ``cut``, preferring one of the same side."""
    distance = np.abs(values - cut[0])
    best = np.flatnonzero(distance == distance.min())
    same = [int(k) for k in best if kept[k][1] == cut[1]]
    return same[0] if same else int(best[0])


def _paths(table, root: int, conditions, levels):
    """(leaf row, {feature: allowed code mask}) for every root-to-leaf path of one tree."""
    stack = [(root, {})]
    while stack:
        r, allowed = stack.pop()
        if table[r, 2] == 0:
            yield r, allowed
            continue
        f = int(table[r, 0])
        true, false = conditions[r]
        for child, mask in ((int(table[r, 3]), true), (int(table[r, 4]), false)):
            narrowed = mask if f not in allowed else allowed[f] & mask
            if narrowed.any():
                stack.append((child, {**allowed, f: narrowed}))


def _intervals(mask: np.ndarray) -> list[tuple[int, int]]:
    """Maximal runs of True in ``mask`` as [start, end) pairs."""
    padded = np.concatenate([[False], mask, [False]])
    edges = np.flatnonzero(padded[1:] != padded[:-1])
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2])]
