"""Regenerate ``tiny_transformer.onnx``: a two-layer transformer encoder classifier on the
digits. Each 8x8 image is a sequence of 8 row tokens of 8 pixels: linear embedding to d=32,
learned positional embedding, 2 pre-norm encoder layers (explicit multi-head self-attention,
LayerNorm, GELU MLP), mean over tokens, linear head. Input [N, 8, 8] in [0, 1], logits [N, 10].

Attention is written out (q/k/v Linear, reshape to heads, matmul, softmax, matmul) and every
reshape/transpose keeps the batch axis first, as nmc requires.

Run: ``python examples/make_tiny_transformer.py`` (needs torch; deterministic).
"""
from __future__ import annotations

import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _digits import HERE, export_torch, load_split, save_test_split, torch_accuracy, train_torch  # noqa: E402

TOKENS, FEATURES, WIDTH, HEADS, LAYERS, MLP_WIDTH = 8, 8, 32, 4, 2, 64


def build():
    import torch
    from torch import nn

    class SelfAttention(nn.Module):
        def __init__(self):
            super().__init__()
            self.q, self.k, self.v = nn.Linear(WIDTH, WIDTH), nn.Linear(WIDTH, WIDTH), nn.Linear(WIDTH, WIDTH)
            self.out = nn.Linear(WIDTH, WIDTH)
            self.head_dim = WIDTH // HEADS

        def heads(self, t):  # (B, S, D) → (B, H, S, hd), batch axis kept first
            return t.reshape(t.shape[0], TOKENS, HEADS, self.head_dim).transpose(1, 2)

        def forward(self, x):
            q, k, v = self.heads(self.q(x)), self.heads(self.k(x)), self.heads(self.v(x))
            scores = torch.matmul(q, k.transpose(2, 3)) / math.sqrt(self.head_dim)
            context = torch.matmul(torch.softmax(scores, dim=-1), v)            # (B, H, S, hd)
            return self.out(context.transpose(1, 2).reshape(x.shape[0], TOKENS, WIDTH))

    class EncoderLayer(nn.Module):
        def __init__(self):
            super().__init__()
            self.norm1, self.norm2 = nn.LayerNorm(WIDTH), nn.LayerNorm(WIDTH)
            self.attention = SelfAttention()
            self.mlp = nn.Sequential(nn.Linear(WIDTH, MLP_WIDTH), nn.GELU(), nn.Linear(MLP_WIDTH, WIDTH))

        def forward(self, x):
            x = x + self.attention(self.norm1(x))
            return x + self.mlp(self.norm2(x))

    class TinyTransformer(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Linear(FEATURES, WIDTH)
            self.position = nn.Parameter(0.02 * torch.randn(1, TOKENS, WIDTH))
            self.layers = nn.Sequential(*[EncoderLayer() for _ in range(LAYERS)])
            self.norm = nn.LayerNorm(WIDTH)
            self.head = nn.Linear(WIDTH, 10)

        def forward(self, x):                                                   # (B, 8, 8)
            h = self.layers(self.embed(x) + self.position)
            return self.head(self.norm(h).mean(dim=1))

    torch.manual_seed(0)
    return TinyTransformer()


def main() -> None:
    x_train, y_train, x_test, y_test = load_split()
    x_train, x_test = x_train.reshape(-1, TOKENS, FEATURES), x_test.reshape(-1, TOKENS, FEATURES)
    model = train_torch(build(), x_train, y_train, epochs=30)
    print(f"torch test accuracy: {torch_accuracy(model, x_test, y_test):.4f}")
    export_torch(model, x_test[:2], HERE / "tiny_transformer.onnx",
                 "digits transformer encoder (8 row tokens, d=32, 4 heads, 2 layers); "
                 "see examples/make_tiny_transformer.py")
    save_test_split()


if __name__ == "__main__":
    main()
