"""Regenerate ``digits_cnn.onnx``: a small CNN (Conv/BatchNorm/ReLU/MaxPool/GlobalAveragePool/
Linear) trained on the 8x8 digits, input [N, 1, 8, 8] in [0, 1], output logits [N, 10].

Run: ``python examples/make_digits_cnn.py`` (needs torch; deterministic: fixed split and seeds).
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _digits import HERE, export_torch, load_split, save_test_split, torch_accuracy, train_torch  # noqa: E402


def build():
    import torch
    from torch import nn

    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.MaxPool2d(2),                                                  # 8x8 → 4x4
        nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(),                            # GlobalAveragePool
        nn.Linear(32, 10),
    )


def main() -> None:
    x_train, y_train, x_test, y_test = load_split()
    x_train, x_test = x_train.reshape(-1, 1, 8, 8), x_test.reshape(-1, 1, 8, 8)
    model = train_torch(build(), x_train, y_train, epochs=30)
    print(f"torch test accuracy: {torch_accuracy(model, x_test, y_test):.4f}")
    export_torch(model, x_test[:2], HERE / "digits_cnn.onnx",
                 "digits CNN (conv16-bn-relu-pool-conv32-bn-relu-gap-fc10); see examples/make_digits_cnn.py",
                 fold=False)  # keep BatchNormalization in the graph: nmc folds it itself
    save_test_split()


if __name__ == "__main__":
    main()
