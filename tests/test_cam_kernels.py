"""The fast CAM kernels (runtime/cam.py) against their plain references on random inputs:
threshold coding with NaN, ±0, ±inf and values on the thresholds; searches by code table and by
segment, in and out of the code range, with and without programming noise; leaf sums in row
order (bit-exact float32) with ragged, empty and multi-target matches; and CAM blocks programmed
the same whatever order (or thread) searches them first."""
from __future__ import annotations

import threading
from types import SimpleNamespace

import numpy as np
import pytest

from nmc.backends.target import load_target
from nmc.runtime import cam
from nmc.runtime.cam import (ProgrammedCam, add_leaves, add_leaves_reference, threshold_codes,
                             threshold_codes_reference)
from nmc.runtime.crossbar import SimOptions


# ----------------------------------------------------------------------------- threshold coding
def _cut_tables(rng, features: int, width: int):
    """NaN-padded [F, K] cut tables with duplicates, ±0, ±inf, and a feature without cuts."""
    pool = np.array([-np.inf, -2.5, -1.0, -0.0, 0.0, 1e-39, 0.5, 1.0, 3.0, 1e30, np.inf], np.float32)
    tables = []
    for _ in range(2):
        t = np.full((features, width), np.nan, np.float32)
        for f in range(1, features):
            n = rng.integers(0, width + 1)
            t[f, :n] = np.where(rng.random(n) < 0.5, rng.choice(pool, n), rng.normal(0, 2, n).astype(np.float32))
        tables.append(t)
    return tables


@pytest.mark.parametrize("seed", range(4))
def test_threshold_codes_equal_comparing_with_every_cut(seed):
    rng = np.random.default_rng(seed)
    features, width = 6, 9
    ge, gt = _cut_tables(rng, features, width)
    nan = rng.integers(2, 30, features).astype(np.float32)
    on_cuts = np.concatenate([ge[~np.isnan(ge)], gt[~np.isnan(gt)]])
    special = np.array([np.nan, -np.inf, np.inf, -0.0, 0.0, 1e-45, -1e-45], np.float32)
    values = np.where(rng.random((400, features)) < 0.5, rng.normal(0, 2, (400, features)),
                      rng.choice(np.concatenate([on_cuts, special]), (400, features))).astype(np.float32)
    got = threshold_codes(values, ge, gt, nan)
    np.testing.assert_array_equal(got, threshold_codes_reference(values, ge, gt, nan))
    assert np.isnan(values).any() and (got == nan).any()


# ----------------------------------------------------------------------------- search
def _bounds(rng, rows: int, levels: np.ndarray):
    lo = np.stack([rng.integers(0, lv, rows) for lv in levels], axis=1)
    hi = np.stack([rng.integers(0, lv + 1, rows) for lv in levels], axis=1)
    lo[::5] = 0
    hi[::5] = levels  # wildcard rows
    hi[3::11] = lo[3::11]  # empty ranges: rows that never match
    return lo, hi


@pytest.mark.parametrize("rows", [1, 37, 64, 200])
@pytest.mark.parametrize("noisy", [False, True])
def test_search_by_code_equals_plain_comparison(rows, noisy):
    rng = np.random.default_rng(rows)
    levels = np.array([9, 17, 2, 33, 5])
    lo, hi = _bounds(rng, rows, levels)
    lo[:, 2], hi[:, 2] = 0, 2  # a feature no row tests
    sigma = (lambda v: np.full(v.shape, 0.7)) if noisy else None
    block = ProgrammedCam(lo, hi, levels, sigma_levels=sigma, rng=np.random.default_rng(1))
    codes = np.stack([rng.integers(0, lv, 500) for lv in levels], axis=1).astype(np.int32)
    np.testing.assert_array_equal(block.search(codes), block.search_reference(codes))
    words = block.search_words(codes)
    assert words.shape == (500, -(-rows // 64)) and words.dtype == np.uint64


def test_search_by_code_equals_search_by_segment_out_of_range(monkeypatch):
    """Codes below 0 or above the top level find the rows the segment search finds (none below
    0 on a tested feature, the top code's above), in the same block with and without noise."""
    rng = np.random.default_rng(7)
    levels = np.array([6, 40, 3])
    lo, hi = _bounds(rng, 150, levels)
    codes = np.stack([rng.integers(-3, lv + 4, 600) for lv in levels], axis=1)
    for sigma in (None, lambda v: np.full(v.shape, 0.9)):
        by_code = ProgrammedCam(lo, hi, levels, sigma_levels=sigma, rng=np.random.default_rng(2))
        monkeypatch.setattr(cam, "_DIRECT_LEVELS", 0)
        by_segment = ProgrammedCam(lo, hi, levels, sigma_levels=sigma, rng=np.random.default_rng(2))
        monkeypatch.setattr(cam, "_DIRECT_LEVELS", 8)   # feature 1 by segment, the others by code
        mixed = ProgrammedCam(lo, hi, levels, sigma_levels=sigma, rng=np.random.default_rng(2))
        monkeypatch.undo()
        assert len(by_segment.tables) == 3 and len(mixed.tables) == 1 and not by_code.tables
        expected = by_segment.search_words(codes)
        np.testing.assert_array_equal(by_code.search_words(codes), expected)
        np.testing.assert_array_equal(mixed.search_words(codes), expected)
        inside = ((codes >= 0) & (codes < levels)).all(axis=1)
        np.testing.assert_array_equal(by_code.search(codes)[inside], by_code.search_reference(codes[inside]))


# ----------------------------------------------------------------------------- leaf sums
def _lines(rng, samples: int, rows: int, rate: float) -> np.ndarray:
    lines = (rng.random((samples, rows)) < rate).astype(np.float32)
    lines[rng.random((samples, rows)) < 0.05] = -0.0   # a zero of the other sign is no match
    lines[::9] = 0.0   # samples that match nothing
    lines[:, ::13] = 0.0   # rows nobody matches
    return lines


@pytest.mark.parametrize("targets", [1, 3])
@pytest.mark.parametrize("rate", [0.0, 0.02, 0.3])
def test_leaf_sums_equal_the_row_order_loop_bit_for_bit(targets, rate):
    rng = np.random.default_rng(targets * 10 + int(rate * 100))
    samples, rows = 60, 90
    lines = _lines(rng, samples, rows, rate)
    # magnitudes from 1e-3 to 1e7: float32 sums differ with the order of addition
    leaves = (rng.choice([-1, 1], (rows, targets)) * 10.0 ** rng.uniform(-3, 7, (rows, targets))).astype(np.float32)
    leaves[5] = np.nan
    leaves[7] = -0.0
    start = rng.normal(0, 1, (samples, targets)).astype(np.float32)
    start[::4] = -0.0
    got, expected = start.copy(), start.copy()
    add_leaves(got, lines, leaves)
    add_leaves_reference(expected, lines, leaves)
    assert got.tobytes() == expected.tobytes()
    if rate == 0.3:  # the test can tell the order: adding the rows backwards differs somewhere
        backwards = start.copy()
        add_leaves_reference(backwards, lines[:, ::-1], leaves[::-1])
        assert backwards.tobytes() != expected.tobytes()


def test_leaf_sums_with_one_match_per_tree():
    """The forest case: every sample matches exactly one row of each tree (equal match counts)."""
    rng = np.random.default_rng(3)
    samples, trees, leaves_per_tree = 50, 7, 12
    lines = np.zeros((samples, trees * leaves_per_tree), np.float32)
    for t in range(trees):
        lines[np.arange(samples), t * leaves_per_tree + rng.integers(0, leaves_per_tree, samples)] = 1.0
    leaves = rng.uniform(0, 1, (trees * leaves_per_tree, 2)).astype(np.float32) / 3
    got, expected = np.zeros((samples, 2), np.float32), np.zeros((samples, 2), np.float32)
    add_leaves(got, lines, leaves)
    add_leaves_reference(expected, lines, leaves)
    assert got.tobytes() == expected.tobytes()


# ----------------------------------------------------------------------------- programming
class _Machine:
    """The little of a machine the CAM kernels use: views of named arrays, the shared
    programmed blocks, options, target and program."""

    def __init__(self, arrays: dict, program, cams: dict, options: SimOptions):
        self.arrays, self.p, self.cams, self.options = arrays, program, cams, options
        self.target = load_target("acam")

    def view(self, v, iters):
        return self.arrays[v.buffer]


def _block_program(rng, blocks: int = 3, rows: int = 40, samples: int = 30):
    levels = np.array([7, 12, 5])
    arrays = {"levels": levels[None], "q": np.stack([rng.integers(0, lv, samples) for lv in levels], axis=1)}
    searches = []
    for b in range(blocks):
        lo, hi = _bounds(rng, rows, levels)
        arrays[f"lo{b}"], arrays[f"hi{b}"] = lo[None], hi[None]
        arrays[f"match{b}"] = np.zeros((samples, rows), np.float32)
        operands = [SimpleNamespace(buffer=name) for name in (f"match{b}", f"lo{b}", f"hi{b}", "levels", "q")]
        searches.append(SimpleNamespace(opcode="csearch", operands=operands))
    program = SimpleNamespace(cores={1 + b: [searches[b]] for b in range(blocks)})
    return arrays, program, searches


def test_blocks_are_programmed_alike_whatever_searches_first():
    """Each block draws its noise by its place in the program, so searching the last block first,
    or from two threads at once, programs the same bounds as searching in program order."""
    options = SimOptions(noise=True, seed=5)
    arrays, program, searches = _block_program(np.random.default_rng(0))

    def programmed(order, threads: int = 1):
        machine = _Machine({k: v.copy() for k, v in arrays.items()}, program, {}, options)

        def search(b):
            cam.KERNELS["csearch"](machine, "csearch", searches[b].operands, ())

        for b in order:
            workers = [threading.Thread(target=search, args=(b,)) for _ in range(threads)]
            for w in workers:
                w.start()
            for w in workers:
                w.join()
        return machine

    first = programmed([0, 1, 2])
    for other in (programmed([2, 0, 1]), programmed([1, 2, 0], threads=2)):
        assert list(other.cams) == list(first.cams)
        for key, block in first.cams.items():
            np.testing.assert_array_equal(other.cams[key].lo, block.lo)
            np.testing.assert_array_equal(other.cams[key].hi, block.hi)
        for b in range(3):
            np.testing.assert_array_equal(other.arrays[f"match{b}"], first.arrays[f"match{b}"])
    moved = [(first.cams[(f"lo{b}", f"hi{b}")].lo != arrays[f"lo{b}"][0]).any() for b in range(3)]
    assert any(moved)  # the noise is on: some programmed bound moved


def test_a_chunks_repeated_coding_is_reused_only_for_equal_inputs_and_tables():
    """CAM cores with input DACs each code the same input: the kernel reuses the chunk's last
    coding when input and tables are equal, and codes anew when either differs."""
    from types import SimpleNamespace

    from nmc.runtime.cam import _cenc, threshold_codes_reference

    rng = np.random.default_rng(5)
    ge = np.sort(rng.normal(size=(3, 4)).astype(np.float32), axis=1)
    gt = ge + np.float32(0.1)
    arrays = {"x": rng.normal(size=(6, 3)).astype(np.float32), "y": None, "ge": ge[None], "gt": gt[None],
              "ge2": (ge + 1)[None], "nan": np.full((1, 3), 9.0, np.float32), "d": np.zeros((6, 3), np.int32)}
    arrays["x"][2, 1] = np.nan
    m = _Machine(arrays, None, {}, SimOptions())
    m.last_coding = None
    ops = [SimpleNamespace(buffer=b) for b in ("d", "x", "ge", "gt", "nan")]

    def expect(tables="ge"):
        return threshold_codes_reference(arrays["x"], arrays[tables][0], gt, arrays["nan"][0])

    _cenc(m, "cenc", ops, ())
    np.testing.assert_array_equal(arrays["d"], expect())
    arrays["d"][...] = -1
    _cenc(m, "cenc", ops, ())                       # the same input and tables: reused (NaN included)
    np.testing.assert_array_equal(arrays["d"], expect())
    arrays["x"][0, 0] += np.float32(3.0)            # another input
    _cenc(m, "cenc", ops, ())
    np.testing.assert_array_equal(arrays["d"], expect())
    ops[2] = SimpleNamespace(buffer="ge2")          # other tables
    _cenc(m, "cenc", ops, ())
    np.testing.assert_array_equal(arrays["d"], expect("ge2"))
