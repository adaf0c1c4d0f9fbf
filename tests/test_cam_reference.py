"""The analog-CAM kernels (runtime/cam.py) against plain Python written here from the cell's
definition (REFERENCE_DATA.md, "Analog CAM": a cell matches when lo ≤ q < hi, a row when all
its cells do), not against the module's own reference functions: searches by code table and by
segment with their documented bit layout, threshold codes, leaf sums in row order in float32,
leaf minima and maxima, and the programming spread of the bounds (5 standard errors)."""
from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

from nmc.backends.target import load_target
from nmc.runtime import cam
from nmc.runtime.cam import ProgrammedCam, add_leaves, threshold_codes
from nmc.runtime.crossbar import SimOptions

Z = 5.0


def plain_search(lo, hi, levels, codes):
    """Row r matches sample s when every feature the block tests (not every row a wildcard)
    has lo ≤ q < hi, a code above the range taken as the top code (its segment) and a code
    below 0 (no threshold code is) in no row's range, even a low bound moved below 0."""
    rows, features = lo.shape
    out = np.zeros((len(codes), rows), bool)
    tested = [f for f in range(features) if not all(lo[r, f] <= 0 and hi[r, f] >= levels[f] for r in range(rows))]
    for s, q in enumerate(codes):
        for r in range(rows):
            ok = True
            for f in tested:
                c = min(int(q[f]), int(levels[f]) - 1)
                if c < 0 or not (lo[r, f] <= c < hi[r, f]):
                    ok = False
                    break
            out[s, r] = ok
    return out


def bounds(rng, rows, levels):
    lo = np.stack([rng.integers(0, lv, rows) for lv in levels], axis=1)
    hi = np.stack([rng.integers(1, lv + 1, rows) for lv in levels], axis=1)
    lo, hi = np.minimum(lo, hi), np.maximum(lo, hi)
    lo[::4] = 0
    hi[::4] = levels            # wildcard rows
    hi[2::9] = lo[2::9]         # empty ranges: never match
    lo[1::7, 0] = 0             # wildcards in one feature only
    hi[1::7, 0] = levels[0]
    return lo, hi


@pytest.mark.parametrize("rows", [1, 63, 64, 65, 130])
def test_search_matches_the_cell_definition_with_its_bit_layout(rows):
    rng = np.random.default_rng(rows)
    levels = np.array([7, 2, 5000, 16, 3])   # feature 2 past the direct tables (segment search)
    lo, hi = bounds(rng, rows, levels)
    lo[:, 4], hi[:, 4] = 0, 3                 # a feature no row tests
    codes = np.stack([rng.integers(-2, lv + 3, 300) for lv in levels], axis=1)
    codes[:20] = np.stack([lo[i % rows] for i in range(20)])           # codes on the bounds
    codes[20:40] = np.stack([hi[i % rows] - 1 for i in range(20)])
    codes[40:60] = np.stack([hi[i % rows] for i in range(20)])
    block = ProgrammedCam(lo, hi, levels)
    want = plain_search(lo, hi, levels, codes)
    assert want.any() and (rows == 1 or not want.all())
    lines = block.search(codes)
    assert lines.dtype == bool
    np.testing.assert_array_equal(lines, want)
    words = block.search_words(codes)
    assert words.dtype == np.uint64 and words.shape == (300, -(-rows // 64))
    for r in range(rows):   # row r at bit r % 64 of word r // 64
        np.testing.assert_array_equal((words[:, r // 64] >> np.uint64(r % 64)) & np.uint64(1), want[:, r])


def test_search_with_only_wildcards_and_without_levels():
    lo = np.zeros((70, 3), np.int64)
    hi = np.full((70, 3), 4)
    hi[5, 1] = 2                              # one tested cell
    block = ProgrammedCam(lo, hi)             # levels default to the largest hi per feature
    np.testing.assert_array_equal(block.levels, [4, 4, 4])
    codes = np.array([[0, 0, 0], [3, 3, 3], [1, 2, 1], [9, 1, -5]])
    np.testing.assert_array_equal(block.search(codes), plain_search(lo, hi, np.array([4, 4, 4]), codes))
    everything = ProgrammedCam(np.zeros((3, 2), np.int64), np.full((3, 2), 5), np.array([5, 5]))
    assert everything.search(np.array([[0, 4], [2, 2]])).all()


def test_programmed_bounds_move_by_their_spread():
    """A closed bound b with spread σ(b) admits the integer codes on its side of b + σξ: the
    effective lo is ceil(lo + σξ) (P(lo' ≤ lo − 1) = Φ(−1/σ), P(lo' = lo) = ½ − Φ(−1/σ)); hi
    likewise; open bounds (lo = 0, hi = levels) never move. σ depends on the bound's code."""
    rows, levels = 4000, np.array([32, 32])
    rng = np.random.default_rng(0)
    lo = np.stack([rng.integers(1, 15, rows), np.zeros(rows, np.int64)], axis=1)
    hi = np.stack([rng.integers(17, 31, rows), np.full(rows, 32)], axis=1)

    def sigma(code):
        return np.where(np.asarray(code) % 2 == 0, 0.4, 1.1)

    block = ProgrammedCam(lo, hi, levels, sigma_levels=sigma, rng=np.random.default_rng(1))
    np.testing.assert_array_equal(block.lo[:, 1], 0)
    np.testing.assert_array_equal(block.hi[:, 1], 32)
    phi = lambda v: 0.5 * (1 + math.erf(v / math.sqrt(2)))
    for bound, moved in ((lo[:, 0], block.lo[:, 0]), (hi[:, 0], block.hi[:, 0])):
        shift = moved - bound
        for parity, s in ((0, 0.4), (1, 1.1)):
            pick = shift[bound % 2 == parity]
            n = len(pick)
            for k in (-1, 0, 1):   # ceil(b + sξ) = b + k ⟺ k − 1 < sξ ≤ k
                p = phi(k / s) - phi((k - 1) / s)
                assert abs(np.mean(pick == k) - p) <= Z * math.sqrt(p * (1 - p) / n) + 1e-9, (parity, k)
    codes = np.stack([rng.integers(0, 32, 100), rng.integers(0, 32, 100)], axis=1)
    np.testing.assert_array_equal(block.search(codes)[:, :400],
                                  plain_search(block.lo[:400], block.hi[:400], levels, codes))


# ----------------------------------------------------------------------------- threshold codes
def test_threshold_codes_count_the_cuts_passed():
    rng = np.random.default_rng(2)
    features, width = 4, 6
    pool = np.array([-np.inf, -1.5, -0.0, 0.0, 1e-40, 0.25, 2.0, np.inf], np.float32)
    ge = np.full((features, width), np.nan, np.float32)
    gt = np.full((features, width), np.nan, np.float32)
    for f in range(1, features):
        ge[f, :f + 2] = rng.choice(pool, f + 2)
        gt[f, :f + 1] = rng.choice(pool, f + 1)
    nan = np.array([3, 9, 1, 12], np.int64)
    finite = pool[np.isfinite(pool)]
    neighbours = np.concatenate([np.nextafter(finite, np.float32(np.inf)), np.nextafter(finite, np.float32(-np.inf))])
    values = rng.choice(np.concatenate([pool, neighbours, [np.nan, -1e-40, 5.0, -7.0]]).astype(np.float32), (600, features))
    got = threshold_codes(values, ge, gt, nan)
    # the same cuts and values held as float64 (each a float32 value) code the same
    np.testing.assert_array_equal(threshold_codes(values.astype(np.float64), ge.astype(np.float64),
                                                  gt.astype(np.float64), nan), got)
    for s in range(len(values)):
        for f in range(features):
            v = float(values[s, f])
            if math.isnan(v):
                want = nan[f]
            else:
                want = sum(v >= float(c) for c in ge[f] if not math.isnan(c)) + \
                       sum(v > float(c) for c in gt[f] if not math.isnan(c))
            assert got[s, f] == want, (s, f, v)


# ----------------------------------------------------------------------------- leaves
def plain_leaves(total, lines, leaves):
    out = total.copy()
    for s in range(lines.shape[0]):
        for r in range(lines.shape[1]):
            if lines[s, r] != 0:
                out[s] = (out[s] + leaves[r]).astype(np.float32)
    return out


@pytest.mark.parametrize("rows", [3, 64, 150])
def test_leaf_sums_add_matched_rows_in_row_order_in_float32(rows):
    rng = np.random.default_rng(rows)
    samples, targets = 40, 2
    lines = (rng.random((samples, rows)) < 0.4).astype(np.float32)
    lines[0] = 0.0
    lines[1] = 1.0
    lines[2, : rows // 2] = -0.0
    if rows > 64:
        lines[3:, :64] = 0.0        # a first word nobody but samples 1 and 2 matches
    leaves = (rng.choice([-1, 1], (rows, targets)) * 10.0 ** rng.uniform(-3, 7, (rows, targets))).astype(np.float32)
    total = rng.normal(0, 1, (samples, targets)).astype(np.float32)
    total[0] = -0.0
    got = total.copy()
    add_leaves(got, lines, leaves)
    assert got.dtype == np.float32
    assert got.tobytes() == plain_leaves(total, lines, leaves).tobytes()
    later = lines.copy()
    later[:, :64] = 0.0                # no sample matches a row of the first word
    got = total.copy()
    add_leaves(got, later, leaves)
    assert got.tobytes() == plain_leaves(total, later, leaves).tobytes()
    nobody = np.zeros((0, targets), np.float32)
    add_leaves(nobody, lines[:0], leaves)   # no samples
    assert nobody.shape == (0, targets)


class Machine:
    """The little of a machine the CAM kernels read: named arrays, options, target, program."""

    def __init__(self, arrays, options=SimOptions(noise=False), program=None):
        self.arrays, self.options, self.cams = arrays, options, {}
        self.target = load_target("acam")
        if program is not None:
            self.p = program

    def view(self, v, iters):
        return self.arrays[v.buffer]


def ops(*names):
    return [SimpleNamespace(buffer=n) for n in names]


@pytest.mark.parametrize("op", ["cleafmin", "cleafmax"])
def test_leaf_extremes_over_matched_rows(op):
    rng = np.random.default_rng(3)
    samples, rows, targets = 30, 20, 3
    match = (rng.random((samples, rows)) < 0.3).astype(np.float32)
    match[0] = 0
    leaves = rng.normal(0, 5, (rows, targets)).astype(np.float32)
    leaves[3, 1] = np.nan
    match[1] = 0
    match[1, 3] = 1                         # only a NaN leaf in target 1
    m = Machine({"dst": np.zeros((samples, targets), np.float32), "match": match, "leaves": leaves[None]})
    cam.KERNELS[op](m, op, ops("dst", "match", "leaves"), ())
    big = float(np.finfo(np.float32).max)
    pick = min if op == "cleafmin" else max
    for s in range(samples):
        for t in range(targets):
            vals = [float(leaves[r, t]) for r in range(rows) if match[s, r] and not math.isnan(leaves[r, t])]
            want = pick(vals) if vals else (big if op == "cleafmin" else -big)
            assert m.arrays["dst"][s, t] == np.float32(want), (s, t)


def test_kernels_code_search_and_add_leaves_over_iterations():
    """cenc → csearch → cleaf through the kernels, with a batch × iteration shape."""
    rng = np.random.default_rng(4)
    batch, iters, features, rows, targets = 3, 5, 2, 70, 2
    ge = np.array([[0.0, 1.0, np.nan], [-1.0, np.nan, np.nan]], np.float32)
    gt = np.array([[2.0, np.nan, np.nan], [0.5, 3.0, np.nan]], np.float32)
    nan = np.array([0, 3], np.int64)
    levels = np.array([4, 4])
    lo, hi = bounds(rng, rows, levels)
    x = rng.choice(np.array([-2, 0, 0.5, 1, 2, 2.5, 3, 4, np.nan], np.float32), (batch, iters, features))
    leaves = rng.normal(0, 1, (rows, targets)).astype(np.float32)
    arrays = {"x": x, "ge": ge[None], "gt": gt[None], "nan": nan[None],
              "codes": np.zeros((batch, iters, features), np.int64), "lo": lo[None], "hi": hi[None],
              "levels": levels[None], "match": np.zeros((batch, iters, rows), np.float32),
              "leaves": leaves[None], "acc": np.ones((batch, iters, targets), np.float32)}
    m = Machine(arrays)
    cam.KERNELS["cenc"](m, "cenc", ops("codes", "x", "ge", "gt", "nan"), (iters,))
    cam.KERNELS["csearch"](m, "csearch", ops("match", "lo", "hi", "levels", "codes"), (iters,))
    cam.KERNELS["cleaf"](m, "cleaf", ops("acc", "match", "leaves"), (iters,))
    flat = x.reshape(-1, features)
    codes = np.array([[nan[f] if math.isnan(v) else
                       sum(v >= c for c in ge[f] if not math.isnan(c)) + sum(v > c for c in gt[f] if not math.isnan(c))
                       for f, v in enumerate(row)] for row in flat])
    np.testing.assert_array_equal(m.arrays["codes"].reshape(-1, features), codes)
    want = plain_search(lo, hi, levels, codes)
    np.testing.assert_array_equal(m.arrays["match"].reshape(-1, rows), want)
    total = plain_leaves(np.ones((batch * iters, targets), np.float32), want.astype(np.float32), leaves)
    assert m.arrays["acc"].reshape(-1, targets).tobytes() == total.tobytes()


def test_blocks_draw_from_their_place_in_the_program():
    """Block k in program order (cores in order, nested bodies walked) is programmed from
    default_rng([seed, k]) with the target device's bound spread; without noise not at all."""
    rng = np.random.default_rng(5)
    levels = np.array([16, 16])
    arrays = {"levels": levels[None], "q": rng.integers(0, 16, (10, 2)),
              "m0": np.zeros((10, 50)), "m1": np.zeros((10, 50))}
    for b in range(2):
        lo, hi = bounds(rng, 50, levels)
        arrays[f"lo{b}"], arrays[f"hi{b}"] = lo[None], np.minimum(hi, 15)[None]   # no bound reaches the top
    search = [SimpleNamespace(opcode="csearch", operands=ops(f"m{b}", f"lo{b}", f"hi{b}", "levels", "q"))
              for b in range(2)]
    other = SimpleNamespace(opcode="cleaf", operands=ops("x"))
    loop = SimpleNamespace(opcode="loop", body=[other, SimpleNamespace(opcode="loop", body=[search[0]])])
    program = SimpleNamespace(cores={7: [search[1]], 3: [other, loop]})   # core 3 first: block 0
    target = load_target("acam")
    from nmc.backends.devices import device_model
    spread = device_model(target.device).cam_bound_sigma(target.cam.cell_bits)
    for noise in (True, False):
        m = Machine({k: v.copy() for k, v in arrays.items()}, SimOptions(noise=noise, seed=9), program)
        cam.KERNELS["csearch"](m, "csearch", search[1].operands, ())   # the later block first
        for b in range(2):
            got = m.cams[(f"lo{b}", f"hi{b}")]
            if noise:
                want = ProgrammedCam(arrays[f"lo{b}"][0], arrays[f"hi{b}"][0], levels, sigma_levels=spread,
                                     rng=np.random.default_rng([9, b]))
            else:
                want = SimpleNamespace(lo=arrays[f"lo{b}"][0], hi=arrays[f"hi{b}"][0])
            np.testing.assert_array_equal(got.lo, want.lo)
            np.testing.assert_array_equal(got.hi, want.hi)
        if noise:
            assert (m.cams[("lo0", "hi0")].lo != arrays["lo0"][0]).any()
        block = m.cams[("lo1", "hi1")]
        np.testing.assert_array_equal(m.arrays["m1"], plain_search(block.lo, block.hi, levels, arrays["q"]))
    lone = Machine({k: v.copy() for k, v in arrays.items()}, SimOptions(noise=True, seed=9))   # no program
    cam.KERNELS["csearch"](lone, "csearch", search[1].operands, ())
    want = ProgrammedCam(arrays["lo1"][0], arrays["hi1"][0], levels, sigma_levels=spread, rng=np.random.default_rng([9, 0]))
    np.testing.assert_array_equal(lone.cams[("lo1", "hi1")].lo, want.lo)


def test_search_takes_levels_of_any_shape_and_type_and_bounds_below_zero():
    """levels as the kernels hold them ([1, F], float32) mean the same; a low bound below 0 (a
    programmed bound that moved past the first code) admits code 0; a low bound of 1 is no
    wildcard; a generator without a spread (or a spread without a generator) programs nothing."""
    rng = np.random.default_rng(8)
    rows = 90
    levels = np.array([5000, 6, 9])
    lo, hi = bounds(rng, rows, levels)
    lo[:, 0] = np.where(lo[:, 0] == 0, -1, lo[:, 0])          # the by-segment feature: no bound at 0
    hi[:, 0] = np.maximum(hi[:, 0], 1)
    lo[:, 1] = rng.integers(0, 2, rows)                         # lows of 0 and 1, every high open
    hi[:, 1] = 6
    lo[:, 2] = np.where(lo[:, 2] == 0, -1, lo[:, 2])          # a feature by code table: no bound at 0 either
    hi[:, 2] = np.maximum(hi[:, 2], 1)
    codes = np.stack([rng.integers(-1, lv + 2, 400) for lv in levels], axis=1)
    codes[:100, 0] = 0
    codes[100:200, 1] = 0
    codes[200:300, 2] = 0
    want = plain_search(lo, hi, levels, codes)
    assert want[:100].any() and (~want[100:200]).any() and want[200:300].any()
    for given in (levels, levels[None].astype(np.float32), [5000.0, 6.0, 9.0]):
        np.testing.assert_array_equal(ProgrammedCam(lo, hi, given).search(codes), want)
    for sigma, gen in ((None, np.random.default_rng(0)), (lambda v: np.full(v.shape, 5.0), None)):
        block = ProgrammedCam(lo, hi, levels, sigma_levels=sigma, rng=gen)
        np.testing.assert_array_equal(block.lo, lo)
        np.testing.assert_array_equal(block.hi, hi)
