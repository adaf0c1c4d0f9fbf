"""What an analog CAM does to a search: range cells with programmed bounds, match lines.

Each cell holds a range ``[lo, hi)`` of a feature's code as the conductances of two memristors
(Li et al., Nat. Commun. 2020); a row matches when every cell does. Programming puts each
bound at a conductance with the device's spread (the device model's ``cam_bound_sigma``,
``backends.devices``; RRAM: the NeuRRAM fit), so a stored bound lands between code levels and a
query near it may fall on the wrong side: the boundary errors of an analog CAM. Open bounds (lo = 0, hi = levels: wildcards and the ends of
the code range) are programmed to the extreme states and never move.

A search compares every row with every sample at once. Per feature the row bounds cut the code
axis into segments; a table gives, per segment, the packed bit set of rows whose range covers
it, so a search is one lookup and one AND per feature over 64-row words.

Simplification: a feature spanning several adjacent cells is treated as one comparator of its
composite code, with the bound's spread taken in units of one level of that code.
"""
from __future__ import annotations

import numpy as np

from nmc.backends.devices import device_model

_WORD = 64


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
        self.tables = []  # (feature, segment starts, packed row sets per segment)
        for f in range(self.features):
            wild = (lo[:, f] <= 0) & (hi[:, f] >= self.levels[f])
            if wild.all():
                continue
            starts = np.unique(np.concatenate([[0], lo[:, f], hi[:, f]]))
            starts = starts[(starts >= 0) & (starts < self.levels[f])] if self.levels[f] > 0 else starts[:1]
            starts = np.unique(np.concatenate([[np.iinfo(np.int64).min], starts]))
            # a segment [s_i, s_{i+1}) is inside [lo, hi) when lo <= s_i and s_i < hi
            inside = (lo[None, :, f] <= starts[:, None]) & (starts[:, None] < hi[None, :, f])
            self.tables.append((f, starts, _pack(inside)))

    @staticmethod
    def _program(lo, hi, levels, sigma_levels, rng):
        """Bounds after programming: each closed bound moves by its spread, then the integer
        codes it admits are those on its side (q >= lo' ⟺ q >= ceil(lo'); q < hi' ⟺ q < ceil(hi'))."""
        lo_f = lo + sigma_levels(lo) * rng.standard_normal(lo.shape)
        hi_f = hi + sigma_levels(hi) * rng.standard_normal(hi.shape)
        lo_new = np.where(lo <= 0, lo, np.ceil(lo_f).astype(np.int64))
        hi_new = np.where(hi >= levels[None, :], hi, np.ceil(hi_f).astype(np.int64))
        return lo_new, hi_new

    def search(self, codes: np.ndarray) -> np.ndarray:
        """``codes`` [M, F] integers → match lines [M, rows] (bool)."""
        m = codes.shape[0]
        acc = np.full((m, self.words), np.uint64(~np.uint64(0)), dtype=np.uint64)
        for f, starts, table in self.tables:
            segment = np.searchsorted(starts, codes[:, f], side="right") - 1
            acc &= table[segment]
        bits = np.unpackbits(acc.view(np.uint8).reshape(m, -1), axis=1, bitorder="little")
        return bits[:, : self.rows].astype(bool)

    def search_reference(self, codes: np.ndarray) -> np.ndarray:
        """The plain comparison, every cell of every row (the slow reference for tests)."""
        q = codes[:, None, :]
        return np.all((self.lo[None] <= q) & (q < self.hi[None]), axis=2)


def _pack(inside: np.ndarray) -> np.ndarray:
    """[S, rows] bool → [S, words] uint64, row r at bit r % 64 of word r // 64."""
    s, rows = inside.shape
    padded = np.zeros((s, -(-rows // _WORD) * _WORD), dtype=np.uint8)
    padded[:, :rows] = inside
    return np.packbits(padded, axis=1, bitorder="little").view(np.uint64)



# ---------------------------------------------------------------------- kernels
# ``kernel(machine, opcode, operands, iterations)`` for the CAM opcodes (runtime.machine.KERNELS)

def _cenc(m, op, ops, iters) -> None:
    """Feature values → codes: the number of thresholds each value passes (≥ ge, > gt)."""
    x = m.view(ops[1], iters)[..., None]
    ge, gt = m.view(ops[2], ())[0], m.view(ops[3], ())[0]
    with np.errstate(invalid="ignore"):
        code = (x >= ge).sum(axis=-1) + (x > gt).sum(axis=-1)
    nan = m.view(ops[4], ())[0]
    m.view(ops[0], iters)[...] = np.where(np.isnan(x[..., 0]), nan, code)


def _csearch(m, op, ops, iters) -> None:
    """All rows × all samples: the programmed block's lookup tables, built on first use."""
    key = (ops[1].buffer, ops[2].buffer)
    cam = m.cams.get(key)
    if cam is None:
        lo = np.array(m.view(ops[1], ())[0])
        hi = np.array(m.view(ops[2], ())[0])
        levels = np.array(m.view(ops[3], ())[0])
        sigma = rng = None
        target = m.target
        if m.options.noise and target.cam is not None:
            sigma = device_model(target.device).cam_bound_sigma(target.cam.cell_bits)
            if sigma is not None:
                rng = np.random.default_rng([m.options.seed, len(m.cams)])
        cam = m.cams[key] = ProgrammedCam(lo, hi, levels, sigma_levels=sigma, rng=rng)
    q = m.view(ops[4], iters)
    match = cam.search(q.reshape(-1, q.shape[-1]))
    dst = m.view(ops[0], iters)
    dst[...] = match.reshape(dst.shape)


def _cleaf(m, op, ops, iters) -> None:
    """dst += the leaves of the matched rows, added one row after another in row (tree) order in
    float32: onnxruntime's order on one thread, so sums that tie round the same way."""
    match = m.view(ops[1], iters)
    leaves = m.view(ops[2], ())[0]
    dst = m.view(ops[0], iters)
    lines = match.reshape(-1, match.shape[-1])
    total = np.array(dst, dtype=np.float32).reshape(lines.shape[0], -1)
    for row in np.flatnonzero(lines.any(axis=0)):
        total += lines[:, row: row + 1] * leaves[row]
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
