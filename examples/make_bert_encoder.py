"""Regenerate ``bert_encoder.onnx`` and ``bert_sequences.npz``: a small BERT-style encoder that
classifies token sequences, built with ``onnx.helper`` and numpy (no torch).

The model is written out as the Hugging Face BERT export writes it:
- inputs ``input_ids`` and ``attention_mask``, int64 [N, 16] (a free batch axis);
- token embeddings (a ``Gather`` of a [64, 32] table by ``input_ids``) plus position embeddings
  (a ``Gather`` of a [16, 32] table by constant position ids), LayerNorm;
- the additive mask ``(1 - attention_mask) * -10000`` (Unsqueeze, Cast, Sub, Mul) on the scores;
- 2 post-norm encoder layers: Q/K/V projections, 4 heads of 8 (Reshape, Transpose), scores
  ``q·kᵀ / √8`` (MatMul of two activations), Softmax, ``probs·v``, output projection, residual and
  LayerNorm; a GELU feed-forward (erf form, 32 → 64 → 32), residual and LayerNorm;
- a pooler on the first token (``x[:, 0]``: a Gather of index 0, Dense, Tanh) and a linear
  classifier into 4 classes, output ``logits`` [N, 4].

The task (``sequences``): token 1 is [CLS], 0 is padding, tokens 2–63 are content, each
belonging to one of 4 topics (token mod 4), whose embeddings share the topic's direction. A sequence of class c has [CLS] and 5–15 content
tokens, each drawn from topic c with probability ``TOPIC_SHARE`` and uniformly otherwise; its
label is c. The encoder's weights are random (fixed seed); only the classifier is trained, by
ridge least squares on the float encoder's pooled features of ``TRAIN_SEQUENCES`` sequences
(onnxruntime computes them), so the float model's accuracy is a property of the whole network.

``bert_sequences.npz`` holds a held-out test split (``input_ids``, ``attention_mask``, ``y``) and
a calibration split from yet another seed (``calibration_input_ids``,
``calibration_attention_mask``), never test sequences.

Run: ``python examples/make_bert_encoder.py`` (deterministic; about 1 s). From Python:
``build_model()`` (the ONNX model, trained head included) and ``sequences(n, seed)``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

HERE = Path(__file__).resolve().parent
MODEL = HERE / "bert_encoder.onnx"
DATA = HERE / "bert_sequences.npz"

VOCAB, SEQUENCE, WIDTH, HEADS, LAYERS, FFN_WIDTH, CLASSES = 64, 16, 32, 4, 2, 64, 4
PAD, CLS, FIRST_CONTENT = 0, 1, 2
MIN_CONTENT, TOPIC_SHARE, TOPIC_SCALE = 5, 0.5, 2.0
TRAIN_SEQUENCES, TEST_SEQUENCES, CALIBRATION_SEQUENCES = 3000, 400, 64
WEIGHT_SEED, TRAIN_SEED, TEST_SEED, CALIBRATION_SEED = 0, 1, 2, 3
RIDGE = 1e-2
OPSET = 17


def sequences(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n`` sequences of the topic task: (input_ids int64 [n, 16], attention_mask int64 [n, 16],
    labels int64 [n]); padded positions hold token 0 and mask 0."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, CLASSES, n)
    ids = np.full((n, SEQUENCE), PAD, np.int64)
    mask = np.zeros((n, SEQUENCE), np.int64)
    content = np.arange(FIRST_CONTENT, VOCAB)
    for row, label in enumerate(labels):
        length = int(rng.integers(MIN_CONTENT, SEQUENCE))              # content tokens after [CLS]
        topic = content[content % CLASSES == label]
        tokens = np.where(rng.random(length) < TOPIC_SHARE, rng.choice(topic, length), rng.choice(content, length))
        ids[row, 0], ids[row, 1:1 + length] = CLS, tokens
        mask[row, :1 + length] = 1
    return ids, mask, labels.astype(np.int64)


def _weights() -> dict[str, np.ndarray]:
    """The encoder's random weights: unit-variance token embeddings that share a direction per topic
    (as trained embeddings cluster by meaning), projections scaled by 1/√fan-in."""
    rng = np.random.default_rng(WEIGHT_SEED)

    def dense(fan_in, fan_out, gain=1.0):
        return (gain * rng.normal(size=(fan_in, fan_out)) / np.sqrt(fan_in)).astype(np.float32)

    def bias(size):
        return (0.1 * rng.normal(size=size)).astype(np.float32)

    word = rng.normal(size=(VOCAB, WIDTH))
    topics = rng.normal(size=(CLASSES, WIDTH))
    content = np.arange(FIRST_CONTENT, VOCAB)
    word[content] += TOPIC_SCALE * topics[content % CLASSES]
    w = {"embeddings.word": word.astype(np.float32),
         "embeddings.position": (0.5 * rng.normal(size=(SEQUENCE, WIDTH))).astype(np.float32),
         "embeddings.position_ids": np.arange(SEQUENCE, dtype=np.int64)[None]}
    w.update(_layer_norm("embeddings.norm", rng))
    for layer in range(LAYERS):
        p = f"layer{layer}"
        for name, gain in (("query", 0.7), ("key", 0.7), ("value", 1.0), ("output", 1.0)):
            w[f"{p}.{name}.weight"], w[f"{p}.{name}.bias"] = dense(WIDTH, WIDTH, gain), bias(WIDTH)
        w[f"{p}.ffn_in.weight"], w[f"{p}.ffn_in.bias"] = dense(WIDTH, FFN_WIDTH), bias(FFN_WIDTH)
        w[f"{p}.ffn_out.weight"], w[f"{p}.ffn_out.bias"] = dense(FFN_WIDTH, WIDTH), bias(WIDTH)
        w.update(_layer_norm(f"{p}.attention_norm", rng))
        w.update(_layer_norm(f"{p}.ffn_norm", rng))
    w["pooler.weight"], w["pooler.bias"] = dense(WIDTH, WIDTH), bias(WIDTH)
    return w


def _layer_norm(prefix: str, rng) -> dict[str, np.ndarray]:
    return {f"{prefix}.scale": (1 + 0.1 * rng.normal(size=WIDTH)).astype(np.float32),
            f"{prefix}.bias": (0.05 * rng.normal(size=WIDTH)).astype(np.float32)}


class _Builder:
    """Nodes and constants of one graph, with unique tensor names."""

    def __init__(self, weights: dict[str, np.ndarray]):
        self.nodes: list[onnx.NodeProto] = []
        self.constants = dict(weights)

    def const(self, name: str, value) -> str:
        self.constants[name] = np.asarray(value)
        return name

    def op(self, op_type: str, inputs: list[str], output: str, **attributes) -> str:
        self.nodes.append(helper.make_node(op_type, inputs, [output], name=output, **attributes))
        return output

    def dense(self, x: str, prefix: str, out: str) -> str:
        """``x @ W + b`` as torch exports a Linear on a 3-D tensor (MatMul, Add)."""
        return self.op("Add", [self.op("MatMul", [x, f"{prefix}.weight"], f"{out}.matmul"), f"{prefix}.bias"], out)

    def layer_norm(self, x: str, prefix: str, out: str) -> str:
        return self.op("LayerNormalization", [x, f"{prefix}.scale", f"{prefix}.bias"], out, axis=-1, epsilon=1e-12)

    def heads(self, x: str, out: str, perm: list[int]) -> str:
        """[N, S, D] → [N, H, S, d] (or [N, H, d, S] for keys): Reshape keeping the batch (0), Transpose."""
        split = self.op("Reshape", [x, "shape.heads"], f"{out}.split")
        return self.op("Transpose", [split], out, perm=perm)

    def gelu(self, x: str, out: str) -> str:
        """x · ½ · (1 + erf(x / √2)), the exact GELU as torch exports it at opset 17."""
        scaled = self.op("Div", [x, "const.sqrt2"], f"{out}.scaled")
        erf = self.op("Erf", [scaled], f"{out}.erf")
        return self.op("Mul", [self.op("Mul", [x, self.op("Add", [erf, "const.one"], f"{out}.shift")], f"{out}.x"),
                               "const.half"], out)

    def encoder_layer(self, x: str, mask_bias: str, p: str) -> str:
        head_width = WIDTH // HEADS
        q = self.heads(self.dense(x, f"{p}.query", f"{p}.q"), f"{p}.q.heads", [0, 2, 1, 3])
        k = self.heads(self.dense(x, f"{p}.key", f"{p}.k"), f"{p}.k.heads", [0, 2, 3, 1])
        v = self.heads(self.dense(x, f"{p}.value", f"{p}.v"), f"{p}.v.heads", [0, 2, 1, 3])
        scores = self.op("Div", [self.op("MatMul", [q, k], f"{p}.scores.raw"),
                                 self.const(f"{p}.scores.scale", np.float32(np.sqrt(head_width)))], f"{p}.scores")
        probs = self.op("Softmax", [self.op("Add", [scores, mask_bias], f"{p}.scores.masked")], f"{p}.probs", axis=-1)
        context = self.op("Transpose", [self.op("MatMul", [probs, v], f"{p}.context.heads")], f"{p}.context.t",
                          perm=[0, 2, 1, 3])
        context = self.op("Reshape", [context, "shape.merge"], f"{p}.context")
        attended = self.dense(context, f"{p}.output", f"{p}.attention")
        x = self.layer_norm(self.op("Add", [x, attended], f"{p}.attention.residual"), f"{p}.attention_norm",
                            f"{p}.attention.out")
        hidden = self.gelu(self.dense(x, f"{p}.ffn_in", f"{p}.ffn.in"), f"{p}.ffn.gelu")
        ffn = self.dense(hidden, f"{p}.ffn_out", f"{p}.ffn.out")
        return self.layer_norm(self.op("Add", [x, ffn], f"{p}.ffn.residual"), f"{p}.ffn_norm", f"{p}.out")


def _graph(weights: dict[str, np.ndarray], head: tuple[np.ndarray, np.ndarray] | None) -> onnx.ModelProto:
    """The encoder; with ``head`` = (W [32, 4], b [4]) the classifier and output ``logits``, without
    it the pooled features (output ``pooled`` [N, 32]) the head is trained on."""
    b = _Builder(weights)
    b.const("shape.heads", np.array([0, SEQUENCE, HEADS, WIDTH // HEADS], np.int64))
    b.const("shape.merge", np.array([0, SEQUENCE, WIDTH], np.int64))
    b.const("const.sqrt2", np.float32(np.sqrt(2.0)))
    b.const("const.one", np.float32(1.0))
    b.const("const.half", np.float32(0.5))
    # embeddings: token lookup by the int64 input, positions by constant ids, LayerNorm
    tokens = b.op("Gather", ["embeddings.word", "input_ids"], "embeddings.tokens")
    positions = b.op("Gather", ["embeddings.position", "embeddings.position_ids"], "embeddings.positions")
    x = b.layer_norm(b.op("Add", [tokens, positions], "embeddings.sum"), "embeddings.norm", "embeddings")
    # the additive attention mask, [N, 1, 1, S]: 0 where attended, -10000 at padding
    mask = b.op("Unsqueeze", ["attention_mask", b.const("mask.axes", np.array([1, 2], np.int64))], "mask.4d")
    mask = b.op("Cast", [mask], "mask.float", to=TensorProto.FLOAT)
    inverted = b.op("Sub", [b.const("mask.one", np.float32(1.0)), mask], "mask.inverted")
    mask_bias = b.op("Mul", [inverted, b.const("mask.min", np.float32(-10000.0))], "mask.bias")
    for layer in range(LAYERS):
        x = b.encoder_layer(x, mask_bias, f"layer{layer}")
    first = b.op("Gather", [x, b.const("first_token", np.array(0, np.int64))], "first_token.hidden", axis=1)
    pooled = b.op("Tanh", [b.op("Gemm", [first, "pooler.weight", "pooler.bias"], "pooler.dense")], "pooled")
    outputs = [helper.make_tensor_value_info("pooled", TensorProto.FLOAT, ["batch", WIDTH])]
    if head is not None:
        b.const("classifier.weight", head[0].astype(np.float32))
        b.const("classifier.bias", head[1].astype(np.float32))
        b.op("Gemm", [pooled, "classifier.weight", "classifier.bias"], "logits")
        outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", CLASSES])]
    inputs = [helper.make_tensor_value_info(name, TensorProto.INT64, ["batch", SEQUENCE])
              for name in ("input_ids", "attention_mask")]
    initializers = [numpy_helper.from_array(value, name) for name, value in b.constants.items()]
    graph = helper.make_graph(b.nodes, "bert_encoder", inputs, outputs, initializer=initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="make_bert_encoder",
                              doc_string="BERT-style encoder (2 layers, 4 heads, d=32, 16 tokens) on a synthetic "
                                         "topic task; see examples/make_bert_encoder.py")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def _run(model: onnx.ModelProto, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session.run(None, {"input_ids": ids, "attention_mask": mask})[0]


def build_model() -> onnx.ModelProto:
    """The encoder with its classifier fitted (ridge least squares on one-hot labels) to the float
    encoder's pooled features of the training sequences."""
    weights = _weights()
    ids, mask, labels = sequences(TRAIN_SEQUENCES, TRAIN_SEED)
    features = _run(_graph(weights, None), ids, mask).astype(np.float64)
    design = np.hstack([features, np.ones((len(features), 1))])
    targets = np.eye(CLASSES)[labels] * 2 - 1
    solution = np.linalg.solve(design.T @ design + RIDGE * len(design) * np.eye(design.shape[1]), design.T @ targets)
    return _graph(weights, (solution[:-1], solution[-1]))


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(logits.argmax(-1) == labels))


def main() -> None:
    model = build_model()
    onnx.save(model, MODEL)
    ids, mask, labels = sequences(TEST_SEQUENCES, TEST_SEED)
    cal_ids, cal_mask, _ = sequences(CALIBRATION_SEQUENCES, CALIBRATION_SEED)
    np.savez_compressed(DATA, input_ids=ids, attention_mask=mask, y=labels,
                        calibration_input_ids=cal_ids, calibration_attention_mask=cal_mask)
    train = sequences(TRAIN_SEQUENCES, TRAIN_SEED)
    print(f"wrote {MODEL} ({MODEL.stat().st_size / 1024:.0f} KB) and {DATA}")
    print(f"float accuracy: train {accuracy(_run(model, *train[:2]), train[2]):.1%}, "
          f"test {accuracy(_run(model, ids, mask), labels):.1%} (chance {1 / CLASSES:.0%})")


if __name__ == "__main__":
    main()
