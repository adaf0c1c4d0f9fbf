"""CAM threshold coding worked out by hand on hand-made splits.

A feature's code is the number of its cuts a value lies above, a cut being ``x >= t`` (split modes
LT / GTE) or ``x > t`` (LEQ / GT); with ``c`` cuts the code needs ``c + 2`` levels (one for NaN).
On ``acam`` (4-bit cells) one cell holds 16 levels, so a feature with 15 cuts does not fit and
one cut is merged onto a neighbour: each decision then compares with the nearest kept cut,
preferring one of the same kind (so ``x <= t`` stays ``x <= t'`` where it can).

The model: 15 one-split trees on feature 0, tree ``i`` writing 1 to target ``i`` on its true
branch and 0 on its false branch, so the output shows every decision separately.
"""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

from nmc.compiler import compile_model
from nmc.runtime.crossbar import SimOptions
from nmc.runtime.machine import execute

EXACT = SimOptions(noise=False)

# (mode, threshold) per tree. Sorted cuts: (1, >=), (1, >), (2, >) … (6, >), (7, >), (7.25, >=), (8, >) … (13, >)
SPLITS = ([("BRANCH_LT", 1.0), ("BRANCH_LEQ", 1.0)] + [("BRANCH_LEQ", float(t)) for t in range(2, 8)]
          + [("BRANCH_GTE", 7.25)] + [("BRANCH_LEQ", float(t)) for t in range(8, 14)])


def _stumps(splits):
    n = len(splits)
    attrs = dict(
        nodes_treeids=[i for i in range(n) for _ in range(3)], nodes_nodeids=[0, 1, 2] * n,
        nodes_featureids=[0] * 3 * n, nodes_modes=[m for mode, _ in splits for m in (mode, "LEAF", "LEAF")],
        nodes_values=[v for _, t in splits for v in (t, 0.0, 0.0)],
        nodes_truenodeids=[1, 0, 0] * n, nodes_falsenodeids=[2, 0, 0] * n,
        nodes_missing_value_tracks_true=[0] * 3 * n,
        target_treeids=[i for i in range(n) for _ in range(2)], target_nodeids=[1, 2] * n,
        target_ids=[i for i in range(n) for _ in range(2)], target_weights=[1.0, 0.0] * n,
        n_targets=n, aggregate_function="SUM", post_transform="NONE")
    node = helper.make_node("TreeEnsembleRegressor", ["X"], ["Y"], domain="ai.onnx.ml", **attrs)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, 1])],
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [None, n])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 3)])


def _decide(mode: str, t: float, x: np.ndarray) -> np.ndarray:
    return {"BRANCH_LT": x < t, "BRANCH_LEQ": x <= t, "BRANCH_GTE": x >= t, "BRANCH_GT": x > t}[mode]


PROBES = np.array([0.5, 1.0, 1.5, 4.0, 5.0, 6.5, 7.0, 7.1, 7.2, 7.25, 7.5, 13.0, 14.0, np.nan], np.float32)


def _run(model, options):
    c = compile_model(model, "acam", pass_options={"cam-mapping": options})
    (cam,) = [m.cam for m in c.graph.mapping.values() if m.unit == "cam"]
    return cam, execute(c.program, {"X": PROBES.reshape(-1, 1)}, options=EXACT)["Y"]


def test_a_merged_cut_moves_to_its_nearest_neighbour_and_the_rest_stay_exact():
    cam, got = _run(_stumps(SPLITS), "max_cells=1")
    (code,) = cam.codes
    assert (code.distinct, code.merged, code.levels, code.cells) == (15, 1, 16, 1)
    # the middle cut (7, >) is the one dropped; its nearest kept cut is (7.25, >=), 0.25 away
    assert code.ge == (1.0, 7.25)
    assert code.gt == (1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 9.0, 10.0, 11.0, 12.0, 13.0)
    assert not cam.lossless and len(cam.warnings) == 1
    assert "1 cuts merged" in cam.warnings[0] and "1 of 15 decisions" in cam.warnings[0]
    assert "largest move 0.25" in cam.warnings[0]
    # by hand: every tree decides as the model does, except "x <= 7", which now reads "x < 7.25"
    moved = [("BRANCH_LT", 7.25) if s == ("BRANCH_LEQ", 7.0) else s for s in SPLITS]
    want = np.stack([_decide(mode, t, PROBES) for mode, t in moved], axis=1).astype(np.float32)
    np.testing.assert_array_equal(got, want)
    # x = 1 tells "x < 1" (false) from "x <= 1" (true): both kept, each decision keeps its own kind
    assert got[1, 0] == 0 and got[1, 1] == 1
    # 7.1 is where the moved decision differs from the model's
    assert got[7, SPLITS.index(("BRANCH_LEQ", 7.0))] == 1


def test_lossless_coding_keeps_every_cut():
    cam, got = _run(_stumps(SPLITS), "lossless=true")
    (code,) = cam.codes
    assert (code.distinct, code.merged, code.levels, code.cells) == (15, 0, 17, 2)
    assert cam.lossless and not cam.warnings
    want = np.stack([_decide(mode, t, PROBES) for mode, t in SPLITS], axis=1).astype(np.float32)
    np.testing.assert_array_equal(got, want)


def test_a_merged_cut_prefers_a_neighbour_of_its_own_kind_at_equal_distance():
    """The dropped cut (6.5, >=) is 0.5 from (6, >), (7, >=) and (7, >): the one of its own kind
    is taken, so "x >= 6.5" becomes "x >= 7" (not "x > 6")."""
    # sorted: (1,>) (2,>) (3,>=) (3,>) (4,>) (5,>) (6,>) [(6.5,>=) dropped] (7,>=) (7,>) (8,>) … (11,>)
    splits = ([("BRANCH_LEQ", float(t)) for t in range(1, 7)] + [("BRANCH_LT", 3.0), ("BRANCH_GTE", 6.5),
                                                                 ("BRANCH_LT", 7.0)]
              + [("BRANCH_LEQ", float(t)) for t in range(7, 13)])
    assert len(splits) == 15
    cam, got = _run(_stumps(splits), "max_cells=1")
    (code,) = cam.codes
    assert code.merged == 1 and 6.5 not in code.ge
    moved = [("BRANCH_GTE", 7.0) if s == ("BRANCH_GTE", 6.5) else s for s in splits]
    want = np.stack([_decide(mode, t, PROBES) for mode, t in moved], axis=1).astype(np.float32)
    np.testing.assert_array_equal(got, want)
