"""Regenerate ``digits_mlp.onnx``: a scikit-learn MLPClassifier on the digits, via skl2onnx.

skl2onnx emits a ``label`` output (ArgMax → int64 → ArrayFeatureExtractor over the class list)
besides the probabilities. nmc computes float tensors only, so the model keeps just the
``probabilities`` output (zipmap disabled, graph pruned with onnx.utils.Extractor); the label
is the argmax of the probabilities.

Run: ``python examples/make_digits_mlp.py`` (deterministic: fixed split and seed).
"""
from __future__ import annotations

import sys
from pathlib import Path

import onnx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _digits import HERE, load_split, save_test_split  # noqa: E402


def build(hidden: tuple[int, ...] = (64, 32)) -> onnx.ModelProto:
    """A digits MLPClassifier with ``hidden`` layer sizes, trained (fixed split and seed) and
    exported with its probabilities as the only output."""
    from skl2onnx import to_onnx
    from sklearn.neural_network import MLPClassifier

    x_train, y_train, x_test, y_test = load_split()
    clf = MLPClassifier(hidden_layer_sizes=hidden, max_iter=300, random_state=0)
    clf.fit(x_train, y_train)
    print(f"sklearn test accuracy: {clf.score(x_test, y_test):.4f}")

    full = to_onnx(clf, x_train[:1], options={id(clf): {"zipmap": False}}, target_opset=17)
    full.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "N"
    outputs = [o.name for o in full.graph.output]
    prob = next(name for name in outputs if "prob" in name)
    model = onnx.utils.Extractor(full).extract_model([full.graph.input[0].name], [prob])
    del model.opset_import[:]  # the pruned graph no longer needs the ai.onnx.ml domain
    model.opset_import.extend(op for op in full.opset_import if op.domain in ("", "ai.onnx"))
    model.ir_version = full.ir_version
    model.producer_name, model.producer_version = full.producer_name, full.producer_version
    sizes = "-".join(str(h) for h in hidden)
    model.doc_string = f"digits MLPClassifier ({sizes}), probabilities only; see examples/make_digits_mlp.py"
    onnx.checker.check_model(model)
    print("ops:", sorted({n.op_type for n in model.graph.node}), "outputs:", [o.name for o in model.graph.output])
    return model


def main() -> None:
    onnx.save(build(), HERE / "digits_mlp.onnx")
    save_test_split()


if __name__ == "__main__":
    main()
