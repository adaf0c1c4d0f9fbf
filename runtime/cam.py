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

