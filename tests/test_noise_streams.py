"""Read-time noise streams (runtime/noise.py) against their documented definition: sample ``i``
of draw ``d`` of a read is row ``i − b·size`` of the float32 standard normals of the PCG64
stream keyed by (seed, read, d, b), b = i // size, whatever the chunk that asks for it."""
from __future__ import annotations

import numpy as np
import pytest

from nmc.runtime.noise import BLOCK_VALUES, MAX_BLOCK, SampleNoise, block_samples, rows_noise


def _by_definition(seed, read, draw, sample, shape):
    per = int(np.prod(shape))
    size = block_samples(per)
    block, row = divmod(sample, size)
    stream = np.random.Generator(np.random.PCG64(np.random.SeedSequence((seed, *read, draw, block))))
    return stream.standard_normal((row + 1, per), dtype=np.float32)[row].reshape(shape)


@pytest.mark.parametrize("per_sample, expected", [(1, MAX_BLOCK), (256, MAX_BLOCK), (257, 128),
                                                  (BLOCK_VALUES, 1), (3 * BLOCK_VALUES, 1)])
def test_block_sizes_are_powers_of_two_holding_about_block_values(per_sample, expected):
    assert block_samples(per_sample) == expected


@pytest.mark.parametrize("shape", [(3,), (40, 9), (300,)])
@pytest.mark.parametrize("first, samples", [(0, 1), (0, 600), (255, 3), (517, 300)])
def test_every_sample_draws_its_own_row_of_its_blocks_stream(shape, first, samples):
    noise = SampleNoise(11, (2, 5), first, samples)
    out = noise.normal(3, shape)
    assert out.dtype == np.float32 and out.shape == (samples,) + shape
    for i in sorted({0, samples // 2, samples - 1}):
        np.testing.assert_array_equal(out[i], _by_definition(11, (2, 5), 3, first + i, shape))


def test_rows_noise_seeds_a_read_from_the_generator_and_starts_at_row_zero():
    a, b = np.random.default_rng(4), np.random.default_rng(4)
    noise = rows_noise(a, 7)
    assert (noise.seed, noise.read, noise.first, noise.samples) == (int(b.integers(2 ** 63)), (), 0, 7)


def test_reads_seeded_from_one_generator_do_not_repeat():
    rng = np.random.default_rng(0)
    seeds = {rows_noise(rng, 1).seed for _ in range(500)}
    assert len(seeds) == 500
