"""Noise drawn at read time, owned by samples: what sample ``i`` sees depends on the run's seed,
the read (which tile, which read of it, which draw) and ``i`` only, never on how the batch is
cut into chunks or which worker runs a chunk.

Samples are grouped in blocks of a fixed size (a function of the draw's shape per sample);
every block has its own random stream, keyed by (seed, read, draw, block), from which its
samples' values are drawn in order. A chunk takes the blocks it covers (a chunk that starts
inside a block skips that block's first samples).
"""
from __future__ import annotations

import math

import numpy as np

BLOCK_VALUES = 1 << 16   # a block holds about this many values (at most MAX_BLOCK samples)
MAX_BLOCK = 256


def block_samples(per_sample: int) -> int:
    """Samples per block for a draw of ``per_sample`` values per sample: a power of two."""
    fit = max(1, BLOCK_VALUES // max(per_sample, 1))
    return min(MAX_BLOCK, 1 << (fit.bit_length() - 1))


class SampleNoise:
    """The standard normal draws of one read for samples ``first .. first + samples − 1``."""

    def __init__(self, seed: int, read: tuple[int, ...], first: int, samples: int):
        self.seed, self.read, self.first, self.samples = seed, read, first, samples

    def normal(self, draw: int, shape: tuple[int, ...]) -> np.ndarray:
        """float32 ``[samples, *shape]``: draw number ``draw`` of this read."""
        per = math.prod(shape)
        size = block_samples(per)
        out = np.empty((self.samples,) + tuple(shape), np.float32)
        flat = out.reshape(self.samples, per)
        end = self.first + self.samples
        for block in range(self.first // size, -(-end // size)):
            lo, hi = max(self.first, block * size), min(end, (block + 1) * size)
            stream = np.random.Generator(np.random.PCG64(np.random.SeedSequence(
                (self.seed, *self.read, draw, block))))
            if lo == block * size:   # the block's samples from its first: drawn in place
                stream.standard_normal(dtype=np.float32, out=flat[lo - self.first: hi - self.first])
                continue
            values = stream.standard_normal(((hi - block * size), per), dtype=np.float32)
            flat[lo - self.first: hi - self.first] = values[lo - block * size:]
        return out


def rows_noise(rng: np.random.Generator, rows: int) -> SampleNoise:
    """Noise for a direct read of ``rows`` input rows (each its own sample), seeded from ``rng``:
    for callers that read a tile outside a run."""
    return SampleNoise(int(rng.integers(2 ** 63)), (), 0, rows)
