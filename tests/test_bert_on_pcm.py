"""examples/bert_on_pcm.py, run small: a BERT-style encoder (int64 input_ids and attention_mask,
embeddings, 2 layers of multi-head attention, LayerNorm, GELU, a head on the first token) on
``pcm``. The ideal target matches onnxruntime, the chip loses accuracy to device physics but stays
far above chance, per-token figures are per-sequence figures over the tokens, and the attention
products stay digital with their reason while the weight matrices go to crossbars. Also: the
shipped model and sequences are what ``make_bert_encoder.py`` makes."""
from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np
import onnx
import pytest
from helpers import load_example
from onnx import numpy_helper

import nmc

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
CHANCE = 0.25


@pytest.fixture(scope="module")
def run():
    """One run of the example's main with small sizes: (its figures, what it printed)."""
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        figures = load_example("bert_on_pcm").main(["--trials", "2", "--sequences", "100"])
    return figures, printed.getvalue()


@pytest.fixture(scope="module")
def figures(run):
    return run[0]


def test_docstring_says_what_and_how_long():
    doc = load_example("bert_on_pcm").__doc__
    assert "python examples/bert_on_pcm.py" in doc and " s (" in doc and "--quick" in doc


def test_main_prints_every_figure(run):
    figures, out = run
    assert (figures["sequences"], figures["trials"], figures["time"]) == (100, 2, "1d")
    for text in ("float model (onnxruntime)", "pcm, noise off", "pcm at 1d, mean ± std", "agreement with float",
                 "relative error max", "per sequence", "per token", "÷ 16 positions", "padding included",
                 "on crossbars", "attention products", "product of two activations"):
        assert text in out, text


def test_ideal_matches_onnxruntime(figures):
    assert figures["ideal_rel_error"] <= 1e-4
    data = np.load(EXAMPLES / "bert_sequences.npz")
    feeds = {name: data[name][:40] for name in ("input_ids", "attention_mask")}
    report = nmc.verify(EXAMPLES / "bert_encoder.onnx", feeds, "ideal")  # nmc's own oracle, 1e-4 on ideal
    assert report.ok and all(check.rel_error <= 1e-4 for check in report.outputs)


def test_pcm_is_below_float_and_far_above_chance(figures):
    pcm, quantised, float_accuracy = figures["pcm"], figures["quantised"], figures["float_accuracy"]
    assert float_accuracy > 0.85                        # the trained head learned the task
    assert pcm["accuracy"]["n"] == 2                   # one figure per programmed chip
    assert CHANCE + 0.4 < pcm["accuracy"]["mean"] < float_accuracy
    assert pcm["agreement"]["mean"] < 1.0
    # device physics, not 8-bit quantisation, is what moves the outputs
    assert quantised["max_rel_error"] < pcm["max_rel_error"]["mean"]
    assert quantised["mean_rel_error"] < pcm["mean_rel_error"]["mean"]
    assert quantised["agreement"] >= pcm["agreement"]["mean"]


def test_per_token_is_per_sequence_over_tokens(figures):
    s = figures["summary"]
    token = s["per_token"]
    assert (token["input"], token["tokens"], figures["tokens"]) == ("input_ids", 16, 16)
    assert token["latency_s"] == pytest.approx(s["latency_s"] / 16, rel=1e-12)
    assert token["energy_j"] == pytest.approx(s["energy_per_inference_j"] / 16, rel=1e-12)
    assert token["throughput_per_s"] == pytest.approx(s["throughput_per_s"] * 16, rel=1e-12)
    assert s["latency_s"] > 0 and s["energy_per_inference_j"] > 0
    assert "| per token |" in figures["report"].render("md")
    assert "Per token" in figures["report"].render("html")


def test_a_model_without_token_ids_has_no_per_token_figures():
    program = nmc.compile(EXAMPLES / "digits_mlp.onnx", "ideal")
    report = nmc.report(program)
    assert report["summary"]["per_token"] is None and "per token" not in report.render("md")


def test_matrices_on_crossbars_attention_products_digital(figures):
    crossbar = [name for name, _ in figures["crossbar_layers"]]
    projections = [f"layer{i}.{p}.matmul" for i in range(2) for p in ("q", "k", "v", "attention", "ffn.in", "ffn.out")]
    assert crossbar == [*projections, "pooler.dense", "logits"]
    assert all(tiles >= 1 for _, tiles in figures["crossbar_layers"])
    attention = figures["attention_products"]
    assert [name for name, _, _ in attention] == [f"layer{i}.{p}" for i in range(2) for p in ("scores.raw", "context.heads")]
    for _, unit, reason in attention:
        assert unit == "vector" and "two activations" in reason
    assert figures["summary"]["crossbars_used"] == len(crossbar)
    assert 0.5 < figures["summary"]["analog_mac_fraction"] < 1.0  # the attention products are digital MACs


def test_shipped_model_and_sequences_are_what_the_maker_makes():
    maker = load_example("make_bert_encoder")
    made, shipped = maker.build_model(), onnx.load(EXAMPLES / "bert_encoder.onnx")
    assert [(n.op_type, list(n.input), list(n.output)) for n in made.graph.node] == \
           [(n.op_type, list(n.input), list(n.output)) for n in shipped.graph.node]
    made_weights = {t.name: numpy_helper.to_array(t) for t in made.graph.initializer}
    shipped_weights = {t.name: numpy_helper.to_array(t) for t in shipped.graph.initializer}
    assert made_weights.keys() == shipped_weights.keys()
    for name, value in made_weights.items():  # the fitted head may differ in the last bits across BLAS builds
        np.testing.assert_allclose(value, shipped_weights[name], rtol=1e-5, atol=1e-6, err_msg=name)
    assert (EXAMPLES / "bert_encoder.onnx").stat().st_size < 300_000
    data = np.load(EXAMPLES / "bert_sequences.npz")
    ids, mask, labels = maker.sequences(maker.TEST_SEQUENCES, maker.TEST_SEED)
    np.testing.assert_array_equal(data["input_ids"], ids)
    np.testing.assert_array_equal(data["attention_mask"], mask)
    np.testing.assert_array_equal(data["y"], labels)
    cal_ids, cal_mask, _ = maker.sequences(maker.CALIBRATION_SEQUENCES, maker.CALIBRATION_SEED)
    np.testing.assert_array_equal(data["calibration_input_ids"], cal_ids)
    # padding: token 0 exactly where the mask is 0, [CLS] first
    assert ((data["input_ids"] == 0) == (data["attention_mask"] == 0)).all() and (data["input_ids"][:, 0] == 1).all()
