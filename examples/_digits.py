"""The digits data shared by the example scripts: a fixed train/test split of scikit-learn's
bundled 8x8 digits (no download), pixels scaled to [0, 1]."""
from __future__ import annotations

from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
TEST_FRACTION = 0.2
SPLIT_SEED = 0


def load_split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x_train, y_train, x_test, y_test); x as float32 [N, 64] in [0, 1], y as int64."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    y = digits.target.astype(np.int64)
    order = np.random.default_rng(SPLIT_SEED).permutation(len(x))
    n_test = int(round(TEST_FRACTION * len(x)))
    test, train = order[-n_test:], order[:-n_test]
    return x[train], y[train], x[test], y[test]


def save_test_split(path: Path = HERE / "digits_test.npz") -> None:
    """The test split in the forms the examples take: flat [N, 64] (MLP), image [N, 1, 8, 8]
    (CNN) and rows as tokens [N, 8, 8] (transformer); labels y [N]."""
    _, _, x_test, y_test = load_split()
    np.savez_compressed(path, x_flat=x_test, x_image=x_test.reshape(-1, 1, 8, 8),
                        x_tokens=x_test.reshape(-1, 8, 8), y=y_test)


CALIBRATION_SAMPLES = 64


def save_calibration(path: Path = HERE / "digits_calibration.npz") -> None:
    """The first ``CALIBRATION_SAMPLES`` training images (never test images), in the same forms,
    for ``nmc compile --calibration``: input scales and ADC ranges from what they draw."""
    x_train, _, _, _ = load_split()
    x = x_train[:CALIBRATION_SAMPLES]
    np.savez_compressed(path, x_flat=x, x_image=x.reshape(-1, 1, 8, 8), x_tokens=x.reshape(-1, 8, 8))


if __name__ == "__main__":
    save_test_split()
    save_calibration()


def train_torch(model, x_train: np.ndarray, y_train: np.ndarray, epochs: int, lr: float = 3e-3,
                batch_size: int = 32, seed: int = 0):
    """Train a torch classifier with Adam and cross-entropy; deterministic for a given seed."""
    import torch

    torch.manual_seed(seed)
    torch.set_num_threads(1)
    x, y = torch.from_numpy(x_train), torch.from_numpy(y_train)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=gen).split(batch_size):
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
            loss.backward()
            opt.step()
    model.eval()
    return model


def torch_accuracy(model, x: np.ndarray, y: np.ndarray) -> float:
    import torch

    with torch.no_grad():
        return float((model(torch.from_numpy(x)).argmax(-1).numpy() == y).mean())


def export_torch(model, example: np.ndarray, path: Path, doc: str, fold: bool = True) -> None:
    """Export with the TorchScript-based exporter (``dynamo=False``: it needs no onnxscript and
    works offline), opset 17, a free leading batch axis named ``N``. ``fold=False`` turns off
    the exporter's constant folding, which would otherwise merge BatchNormalization into Conv."""
    import onnx
    import torch

    model.eval()
    torch.onnx.export(model, (torch.from_numpy(example),), str(path), dynamo=False, opset_version=17,
                      do_constant_folding=fold,
                      input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}})
    proto = onnx.load(str(path))
    proto.doc_string = doc
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))
    print("ops:", sorted({n.op_type for n in proto.graph.node}))
