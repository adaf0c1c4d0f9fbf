"""What an analog CAM does to a search: range cells with programmed bounds, match lines.

Each cell holds a range ``[lo, hi)`` of a feature's code as the conductances of two memristors
(Li et al., Nat. Commun. 2020); a row matches when every cell does. Programming puts each
bound at a conductance with the device's spread (the device model's ``cam_bound_sigma``,
``backends.devices``; RRAM: the NeuRRAM fit), so a stored bound lands between code levels and a
query near it may fall on the wrong side: the boundary errors of an analog CAM. Open bounds (lo = 0, hi = levels: wildcards and the ends of
the code range) are programmed to the extreme states and never move.

A search compares every row with every sample at once. Per feature the row bounds cut the code
axis into segments; one small table gives the segment of every code level, another the packed
bit set of rows whose range covers each segment, so a search is two lookups and one AND per
feature over 64-row words (a feature of very many levels finds its segment by binary search).
Blocks are read-only once programmed, so chunks of a batch may search them from several threads.

Simplification: a feature spanning several adjacent cells is treated as one comparator of its
composite code, with the bound's spread taken in units of one level of that code.
"""
from __future__ import annotations

import threading

import numpy as np

from nmc.backends.devices import device_model

_WORD = 64
_DIRECT_LEVELS = 1 << 12   # features with up to this many levels find their segment by table
_PROGRAMMING = threading.Lock()   # chunks running in threads share the programmed blocks


class ProgrammedCam:
    """One block of CAM rows after programming: integer effective bounds and lookup tables."""

    def __init__(self, lo: np.ndarray, hi: np.ndarray, levels: np.ndarray | None = None,
                 sigma_levels=None, rng: np.random.Generator | None = None):
        lo = lo.astype(np.int64)
        hi = hi.astype(np.int64)
        self.rows, self.features = lo.shape
        if levels is None:
            levels = hi.max(axis=0)
        self.levels = np.asarray(levels, dtype=np.int64).reshape(-1)
        if sigma_levels is not None and rng is not None:
            lo, hi = self._program(lo, hi, self.levels, sigma_levels, rng)
        self.lo, self.hi = lo, hi
        self.words = -(-self.rows // _WORD)
        self.tables = []  # (feature, segment starts, packed row sets per segment), past _DIRECT_LEVELS
        direct = []       # features whose segment a table gives by code
        for f in range(self.features):
            wild = (lo[:, f] <= 0) & (hi[:, f] >= self.levels[f])
            if wild.all():
                continue
            if 0 < self.levels[f] <= _DIRECT_LEVELS:
                direct.append(f)
                continue
            starts = np.unique(np.concatenate([[0], lo[:, f], hi[:, f]]))
            starts = starts[(starts >= 0) & (starts < self.levels[f])] if self.levels[f] > 0 else starts[:1]
            starts = np.unique(np.concatenate([[np.iinfo(np.int64).min], starts]))
            # a segment [s_i, s_{i+1}) is inside [lo, hi) when lo <= s_i and s_i < hi
            inside = (lo[None, :, f] <= starts[:, None]) & (starts[:, None] < hi[None, :, f])
            self.tables.append((f, starts, _pack(inside)))
        self._direct_tables(direct)

    def _direct_tables(self, features: list[int]) -> None:
        """For the features looked up by code: the segment of every code -1 .. levels - 1 (a
        small integer table) and the packed row set of every segment, each stacked over the
        features. The row set of a code is its segment's (the segments are cut at the bounds);
        a code below 0 is in the segment below every bound (no row) and one above the top in the
        top code's, so a clipped code finds the same rows as the segment search."""
        levels = self.levels[features]
        lengths = levels + 1
        first = np.cumsum(lengths) - lengths    # where each feature's code -1 sits
        starts = np.zeros(int(lengths.sum()), dtype=bool)
        starts[first] = starts[first + 1] = True   # below every bound, and code 0
        for bounds in (self.lo, self.hi):
            b = bounds[:, features].T
            cut = (b >= 0) & (b < levels[:, None])
            starts[(b + (first + 1)[:, None])[cut]] = True
        segment = np.cumsum(starts) - 1
        self._segment_of_code = segment.astype(np.intp)
        feature_of = np.repeat(np.array(features, dtype=np.intp), lengths)[starts]
        code_of = (np.arange(starts.size) - np.repeat(first + 1, lengths))[starts]
        code_of[code_of < 0] = np.iinfo(np.int64).min
        lo_t, hi_t = np.ascontiguousarray(self.lo.T), np.ascontiguousarray(self.hi.T)
        group = max(1, (1 << 22) // max(self.rows, 1))   # segments per piece, to bound the temporaries
        parts = []
        for at in range(0, len(code_of), group):
            f, code = feature_of[at: at + group], code_of[at: at + group, None]
            parts.append(_pack((lo_t[f] <= code) & (code < hi_t[f])))
        self._segment_rows = np.concatenate(parts) if parts else np.zeros((0, self.words), np.uint64)
        self._direct_features = np.array(features, dtype=np.intp)
        self._direct_top = levels.astype(np.intp) - 1
        self._direct_base = (first + 1).astype(np.intp)

    @staticmethod
    def _program(lo, hi, levels, sigma_levels, rng):
        """Bounds after programming: each closed bound moves by its spread, then the integer
        codes it admits are those on its side (q >= lo' ⟺ q >= ceil(lo'); q < hi' ⟺ q < ceil(hi'))."""
        lo_f = lo + sigma_levels(lo) * rng.standard_normal(lo.shape)
        hi_f = hi + sigma_levels(hi) * rng.standard_normal(hi.shape)
        lo_new = np.where(lo <= 0, lo, np.ceil(lo_f).astype(np.int64))
        hi_new = np.where(hi >= levels[None, :], hi, np.ceil(hi_f).astype(np.int64))
        return lo_new, hi_new

    def search_words(self, codes: np.ndarray) -> np.ndarray:
        """``codes`` [M, F] integers → match lines packed [M, words] (uint64), row r at bit
        r % 64 of word r // 64."""
        samples = codes.shape[0]
        if self._direct_features.size:
            index = codes.T[self._direct_features].astype(np.intp)   # [features, samples]
            np.maximum(index, -1, out=index)
            np.minimum(index, self._direct_top[:, None], out=index)
            index += self._direct_base[:, None]
            segment = np.take(self._segment_of_code, index)
            acc = np.take(self._segment_rows, segment[0], axis=0)
            for feature in segment[1:]:
                acc &= np.take(self._segment_rows, feature, axis=0)
        else:
            acc = np.full((samples, self.words), np.uint64(~np.uint64(0)), dtype=np.uint64)
        for f, starts, table in self.tables:
            segment = np.searchsorted(starts, codes[:, f], side="right") - 1
            acc &= np.take(table, segment, axis=0)
        return acc

    def search(self, codes: np.ndarray) -> np.ndarray:
        """``codes`` [M, F] integers → match lines [M, rows] (bool)."""
        return _unpack(self.search_words(codes), self.rows).astype(bool)

    def search_reference(self, codes: np.ndarray) -> np.ndarray:
        """The plain comparison, every cell of every row (the slow reference for tests)."""
        q = codes[:, None, :]
        return np.all((self.lo[None] <= q) & (q < self.hi[None]), axis=2)


def _pack(inside: np.ndarray) -> np.ndarray:
    """[S, rows] bool → [S, words] uint64, row r at bit r % 64 of word r // 64."""
    s, rows = inside.shape
    padded = inside
    if rows % _WORD:
        padded = np.zeros((s, -(-rows // _WORD) * _WORD), dtype=np.uint8)
        padded[:, :rows] = inside
    return np.ascontiguousarray(np.packbits(padded, axis=1, bitorder="little")).view(np.uint64)


def _unpack(words: np.ndarray, rows: int) -> np.ndarray:
    """[M, words] uint64 → [M, rows] 0/1 (uint8): the inverse of ``_pack``."""
    return np.unpackbits(np.ascontiguousarray(words).view(np.uint8).reshape(len(words), -1), axis=1,
                         count=rows, bitorder="little")


# ---------------------------------------------------------------------- threshold coding
def threshold_codes(values: np.ndarray, ge: np.ndarray, gt: np.ndarray, nan: np.ndarray) -> np.ndarray:
    """[M, F] float32 values → codes: per feature, how many of its cuts the value passes
    (``value >= ge[f, k]``, ``value > gt[f, k]``; NaN entries pad and count for nothing), or
    ``nan[f]`` for a NaN value. One sorted search for all features: a float32 maps to an
    unsigned key in the same order (-0.0 taken as +0.0), "> t" is ">= the key after t", and
    the feature's number sits above the key."""
    features = values.shape[-1]
    feature_key = (np.arange(features, dtype=np.uint64) << np.uint64(32))[:, None]
    cuts = np.sort(np.concatenate([(feature_key + _order_key(ge))[~np.isnan(ge)],
                                   (feature_key + _order_key(gt) + np.uint64(1))[~np.isnan(gt)]]))
    before = np.searchsorted(cuts, feature_key[:, 0])   # the cuts of the features before each
    code = np.searchsorted(cuts, _order_key(values) + feature_key[:, 0], side="right") - before
    return np.where(np.isnan(values), nan, code)


def threshold_codes_reference(values: np.ndarray, ge: np.ndarray, gt: np.ndarray, nan: np.ndarray) -> np.ndarray:
    """Every value against every cut (the slow reference for tests)."""
    x = values[..., None]
    with np.errstate(invalid="ignore"):
        code = (x >= ge).sum(axis=-1) + (x > gt).sum(axis=-1)
    return np.where(np.isnan(values), nan, code)


def _order_key(v: np.ndarray) -> np.ndarray:
    """float32 → uint64 key with a < b ⟺ key(a) < key(b) for non-NaN values (and ±0 one key)."""
    bits = (np.asarray(v, dtype=np.float32) + np.float32(0)).view(np.uint32)
    return np.where(bits >= np.uint32(1 << 31), ~bits, bits | np.uint32(1 << 31)).astype(np.uint64)


# ---------------------------------------------------------------------- leaf accumulation
def add_leaves(total: np.ndarray, lines: np.ndarray, leaves: np.ndarray) -> None:
    """``total[s] += leaves[r]`` (float32, in place) for every row r with ``lines[s, r] != 0``,
    one row after another in row order, per sample. The match lines are packed into 64-row
    words; pass k over word j adds, for all samples at once, the leaf of the lowest row still set
    in the sample's word (its bit found as the exponent of the lowest set bit), and clears it: so
    each sample adds its rows in order, and a sample with fewer rows in the word adds -0.0,
    which leaves every float as it is. The passes of a word are its most matches in a sample."""
    words = np.ascontiguousarray(_pack(lines != 0).T)   # [words, samples]
    none = np.full((1, leaves.shape[1]), -0.0, dtype=np.float32)
    for j, word in enumerate(words):
        passes = int(np.bitwise_count(word).max()) if word.size else 0
        if not passes:
            continue
        # exponent e of the lowest set bit 2^(e-1) → row 64 j + e - 1; e = 0 (no bit left) → none
        table = np.concatenate([none, leaves[_WORD * j: _WORD * (j + 1)]])
        for _ in range(passes):
            lowest = word & -word
            total += np.take(table, np.frexp(lowest.astype(np.float64))[1], axis=0)
            word &= word - np.uint64(1)


def add_leaves_reference(total: np.ndarray, lines: np.ndarray, leaves: np.ndarray) -> None:
    """``add_leaves`` one sample and one row at a time (the slow reference for tests)."""
    for s in range(lines.shape[0]):
        for r in range(lines.shape[1]):
            if lines[s, r] != 0:
                total[s] += leaves[r]


# ---------------------------------------------------------------------- kernels
# ``kernel(machine, opcode, operands, iterations)`` for the CAM opcodes (runtime.machine.KERNELS)

def _cenc(m, op, ops, iters) -> None:
    """Feature values → codes: the number of thresholds each value passes (≥ ge, > gt). CAM cores
    with input DACs each code the same input with the same tables: the chunk's last coding is
    reused when both are equal (compared, not hashed)."""
    x = m.view(ops[1], iters)
    ge, gt = m.view(ops[2], ())[0], m.view(ops[3], ())[0]
    nan = m.view(ops[4], ())[0]
    dst = m.view(ops[0], iters)
    tables = tuple(ops[2:5])   # the table views themselves (frozen: compared by value)
    last = getattr(m, "last_coding", None)
    if (last is not None and last[0] == tables and last[1].shape == x.shape
            and np.array_equal(last[1], x, equal_nan=True)):
        dst[...] = last[2]
        return
    codes = threshold_codes(x.reshape(-1, x.shape[-1]), ge, gt, nan).reshape(dst.shape)
    dst[...] = codes
    m.last_coding = (tables, np.array(x), codes)


def _csearch(m, op, ops, iters) -> None:
    """All rows × all samples: the programmed block's lookup tables, built on first use."""
    key = (ops[1].buffer, ops[2].buffer)
    cam = m.cams.get(key) or _program_blocks(m, ops)
    q = m.view(ops[4], iters)
    words = cam.search_words(q.reshape(-1, q.shape[-1]))
    dst = m.view(ops[0], iters)
    dst[...] = _unpack(words, cam.rows).reshape(dst.shape)


def _program_blocks(m, ops) -> ProgrammedCam:
    """Program the CAM blocks (on the first search of any), each with its own noise stream:
    block k in program order (cores in order, each core's stream in order) draws from
    ``default_rng([seed, k])``. Under a lock, so chunks searching in threads program each block
    once, and the same whatever thread gets there first."""
    key = (ops[1].buffer, ops[2].buffer)
    with _PROGRAMMING:
        if key not in m.cams:
            program = getattr(m, "p", None)
            for block_ops in (_searches(program) if program is not None else []):
                block_key = (block_ops[1].buffer, block_ops[2].buffer)
                if block_key not in m.cams:
                    m.cams[block_key] = _programmed(m, block_ops, len(m.cams))
            if key not in m.cams:   # a search the program does not hold (a kernel called by hand)
                m.cams[key] = _programmed(m, ops, len(m.cams))
        return m.cams[key]


def _searches(program):
    """The operands of every csearch of the program, in program order."""
    def walk(stream):
        for s in stream:
            body = getattr(s, "body", None)
            if body is not None:
                yield from walk(body)
            elif s.opcode == "csearch":
                yield s.operands
    for core in sorted(program.cores):
        yield from walk(program.cores[core])


def _programmed(m, ops, index: int) -> ProgrammedCam:
    lo = np.array(m.view(ops[1], ())[0])
    hi = np.array(m.view(ops[2], ())[0])
    levels = np.array(m.view(ops[3], ())[0])
    sigma = rng = None
    target = m.target
    if m.options.noise and target.cam is not None:
        sigma = device_model(target.device).cam_bound_sigma(target.cam.cell_bits)
        if sigma is not None:
            rng = np.random.default_rng([m.options.seed, index])
    return ProgrammedCam(lo, hi, levels, sigma_levels=sigma, rng=rng)


def _cleaf(m, op, ops, iters) -> None:
    """dst += the leaves of the matched rows, added one row after another in row (tree) order in
    float32: onnxruntime's order on one thread, so sums that tie round the same way."""
    match = m.view(ops[1], iters)
    leaves = m.view(ops[2], ())[0]
    dst = m.view(ops[0], iters)
    lines = match.reshape(-1, match.shape[-1])
    total = np.array(dst, dtype=np.float32).reshape(lines.shape[0], -1)
    add_leaves(total, lines, leaves)
    dst[...] = total.reshape(dst.shape)


def _cleaf_extreme(m, op, ops, iters) -> None:
    """The smallest (largest) leaf value per target among matched rows; NaN leaves are none."""
    match = m.view(ops[1], iters)
    leaves = m.view(ops[2], ())[0]
    hit = (match.reshape(-1, match.shape[-1]) != 0)[:, :, None] & ~np.isnan(leaves)[None]
    empty = np.finfo(np.float32).max if op == "cleafmin" else -np.finfo(np.float32).max
    values = np.where(hit, leaves[None], np.float32(empty))
    out = values.min(axis=1) if op == "cleafmin" else values.max(axis=1)
    dst = m.view(ops[0], iters)
    dst[...] = out.reshape(dst.shape)


KERNELS = {"cenc": _cenc, "csearch": _csearch, "cleaf": _cleaf, "cleafmin": _cleaf_extreme,
           "cleafmax": _cleaf_extreme}
