"""The runtime streams a batch in chunks, by several workers: results never depend on the
chunk size or the number of workers (read noise belongs to samples, runtime.noise), and the
gathered operands of matrix products are the views' elements in a known order."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from numpy.lib.stride_tricks import as_strided

import nmc
from nmc.isa.views import Affine, View
from nmc.runtime import SimOptions, execute
from nmc.runtime.machine import Machine, Order, _Iter, chunk_size
from nmc.runtime.noise import SampleNoise, block_samples

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture(scope="module")
def digits():
    return np.load(EXAMPLES / "digits_test.npz"), np.load(EXAMPLES / "digits_calibration.npz")


@pytest.mark.parametrize("target, time", [("pcm", 86400.0), ("rram", 3600.0), ("sram-analog", 0.0),
                                          ("sram-digital", 0.0), ("ideal", 0.0)])
def test_chunk_size_and_workers_change_nothing(digits, target, time):
    data, calib = digits
    program = nmc.compile(EXAMPLES / "digits_cnn.onnx", target, calibration=calib["x_image"])
    x = {"input": data["x_image"][:300]}
    options = SimOptions(time=time, seed=7)
    whole = execute(program.program, x, program.target, options, chunk=300)["logits"]
    for chunk, workers in [(1, 1), (7, 2), (100, 1), (256, 2)]:
        got = execute(program.program, x, program.target, options, chunk=chunk, workers=workers)["logits"]
        if target == "ideal":  # float32 products: BLAS may sum in another order for other row counts
            np.testing.assert_allclose(got, whole, rtol=0, atol=1e-6 * np.abs(whole).max())
        else:  # integers, and noise drawn per sample: the same bits
            np.testing.assert_array_equal(got, whole, err_msg=f"chunk {chunk}, {workers} worker(s)")
    if target in ("pcm", "rram"):  # the noise is there, and another seed draws other noise
        other = execute(program.program, x, program.target, SimOptions(time=time, seed=8))["logits"]
        assert not np.array_equal(other, whole)


def test_a_sample_gets_the_same_noise_alone_or_in_a_batch(digits):
    data, calib = digits
    program = nmc.compile(EXAMPLES / "digits_cnn.onnx", "pcm", calibration=calib["x_image"])
    x = data["x_image"][:40]
    options = SimOptions(time=60.0, seed=3)
    batch = execute(program.program, {"input": x}, program.target, options)["logits"]
    # sample 37 run alone is sample 0 of its run: noise follows the index, so pad to keep it 37
    alone = execute(program.program, {"input": np.concatenate([np.zeros_like(x[:37]), x[37:38]])},
                    program.target, options, chunk=1)["logits"][37]
    np.testing.assert_array_equal(alone, batch[37])


def test_a_recurrent_program_runs_in_chunks():
    """Sequential loops inside a chunk: the batch axis carries the sequences (layout=1)."""
    from test_recurrent import recurrent_model

    model, feeds = recurrent_model("LSTM", layout=1, batch=37, free_batch=True, lengths=[3] * 37)
    compiled = nmc.compile(model, "pcm")
    assert compiled.program.batched
    options = SimOptions(time=3600.0, seed=2)
    one = execute(compiled.program, feeds, compiled.target, options, chunk=37)
    for chunk, workers in ((1, 1), (13, 2)):
        got = execute(compiled.program, feeds, compiled.target, options, chunk=chunk, workers=workers)
        for name in one:
            np.testing.assert_array_equal(got[name], one[name])


def test_chunks_are_bounded_by_memory_not_by_the_batch(digits):
    data, calib = digits
    program = nmc.compile(EXAMPLES / "digits_cnn.onnx", "ideal").program
    assert chunk_size(program, 10 ** 6) < 10 ** 5
    assert chunk_size(program, 10 ** 6) % 256 == 0
    assert chunk_size(program, 10) == 10


def test_noise_blocks_follow_the_sample_index():
    whole = SampleNoise(5, (1, 2), 0, 1000).normal(3, (7, 2))
    parts = [SampleNoise(5, (1, 2), a, b - a).normal(3, (7, 2)) for a, b in [(0, 1), (1, 300), (300, 1000)]]
    np.testing.assert_array_equal(np.concatenate(parts), whole)
    assert abs(whole.mean()) < 0.05 and abs(whole.std() - 1) < 0.05
    assert not np.array_equal(SampleNoise(5, (1, 2), 0, 10).normal(4, (7, 2)), whole[:10])
    assert block_samples(1) == 256 and block_samples(1 << 20) == 1


@pytest.mark.parametrize("channels, size, stride, kernel", [(16, 6, 1, 3), (8, 9, 2, 3), (32, 5, 1, 1)])
def test_a_window_gathered_channel_minor_holds_the_views_elements(channels, size, stride, kernel):
    """An im2col window of a channel-major buffer: gathered through the channel-minor transpose,
    it is the plain view's elements in the order ``Order.indices``."""
    out = (size - kernel) // stride + 1
    buffer = channels * size * size
    view = View("t", Affine(0, (("i0", stride * size), ("i1", stride))),
                ((channels, size * size), (kernel, size), (kernel, 1)))
    m = Machine.__new__(Machine)
    rng = np.random.default_rng(0)
    m.batch, m.bound = 3, {}
    m.mem = {"t": rng.standard_normal((3, buffer)).astype(np.float32)}
    m.p = type("P", (), {"buffers": {"t": type("B", (), {"size": buffer})()}})()
    m.chip = type("C", (), {"orders": {}})()
    iters = (_Iter("i0", out), _Iter("i1", out))
    order = m._order(view, iters)
    assert order is not None
    rows, got_order = m.gathered(view, iters)
    plain = np.ascontiguousarray(m.view(view, iters)).reshape(-1, view.size)
    np.testing.assert_array_equal(rows, plain[:, got_order.indices])
