"""The real-model zoo: small configurations of the architectures users bring, with random
weights, exported to ONNX the way users export them (``torch.onnx``, both exporters).

    python tests/zoo/models.py OUT_DIR        # write every model (and its sample inputs)

Each entry builds a torch module and example inputs; ``export`` writes the ONNX file. Needs
the ``zoo`` extra (torch, torchvision, transformers, timm); nmc itself never imports them.
PyPI's torchvision links CUDA libraries: next to the CPU torch it imports only after its two
detection ops are declared (``_torchvision``), which no classification or segmentation model uses.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np


@dataclass(frozen=True)
class ZooModel:
    name: str
    family: str
    build: Callable[[], tuple]   # () -> (torch module, tuple of example input tensors)
    dynamo: bool = False          # which torch exporter
    opset: int = 17


def _torchvision():
    import torch

    if "torchvision" not in sys.modules:
        lib = torch.library.Library("torchvision", "DEF")
        lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        lib.define("qnms(Tensor qdets, Tensor qscores, float iou_threshold) -> Tensor")
        _torchvision.lib = lib  # keep the definitions alive
    import torchvision

    return torchvision


def _image(size=32, batch=1):
    import torch

    return (torch.randn(batch, 3, size, size),)


def _tv(name, size=32, **kwargs):
    def build():
        tv = _torchvision()
        return getattr(tv.models, name)(weights=None, **kwargs).eval(), _image(size)
    return build


def _tv_vit():
    import torch

    _torchvision()
    from torchvision.models.vision_transformer import VisionTransformer

    torch.backends.mha.set_fastpath_enabled(False)  # the fused kernel has no ONNX export

    return VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=32,
                             mlp_dim=64, num_classes=10).eval(), _image(32)


def _tv_segmentation():
    tv = _torchvision()
    return tv.models.segmentation.lraspp_mobilenet_v3_large(weights=None, weights_backbone=None,
                                                             num_classes=4).eval(), _image(64)


def _ids(vocab=100, seq=8, batch=1):
    import torch

    g = torch.Generator().manual_seed(0)
    return torch.randint(0, vocab, (batch, seq), generator=g)


class _Logits:
    """A Hugging Face model that returns a plain tensor (its first output)."""

    def __new__(cls, model, key):
        import torch

        class Wrap(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.model = model

            def forward(self, *args):
                return getattr(self.model(*args), key)

        return Wrap().eval()


def _bert(attention="sdpa"):
    """BERT with ``attention`` as Hugging Face implements it: "sdpa" (torch's fused attention,
    which the TorchScript exporter knows from opset 14) or "eager" (matmul, softmax, matmul)."""
    def build():
        import torch
        from transformers import BertConfig, BertModel

        cfg = BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=16, attn_implementation=attention)
        ids = _ids()
        mask = torch.ones_like(ids)
        return _Logits(BertModel(cfg, add_pooling_layer=False), "last_hidden_state"), (ids, mask)
    return build


def _distilbert():
    import torch
    from transformers import DistilBertConfig, DistilBertModel

    cfg = DistilBertConfig(vocab_size=100, dim=32, n_layers=2, n_heads=2, hidden_dim=64, max_position_embeddings=16)
    ids = _ids()
    return _Logits(DistilBertModel(cfg), "last_hidden_state"), (ids, torch.ones_like(ids))


def _gpt2():
    from transformers import GPT2Config, GPT2Model

    cfg = GPT2Config(vocab_size=100, n_embd=32, n_layer=2, n_head=2, n_positions=16)
    return _Logits(GPT2Model(cfg), "last_hidden_state"), (_ids(),)


def _tv_swin(v2=False):
    """torchvision's Swin Transformer (v1, or v2 with its cosine attention, log-spaced relative
    positions and post-norm), tiny: 4x4 patches of a 32x32 image, windows of 4x4 patches shifted by
    2 in every second block, one patch merging; dims 16 and 32, 2 and 4 heads."""
    def build():
        _torchvision()
        from torchvision.models import swin_transformer as swin

        blocks = {"block": swin.SwinTransformerBlockV2, "downsample_layer": swin.PatchMergingV2} if v2 else {}
        return swin.SwinTransformer(patch_size=[4, 4], embed_dim=16, depths=[2, 2], num_heads=[2, 4],
                                    window_size=[4, 4], stochastic_depth_prob=0.0, num_classes=10,
                                    **blocks).eval(), _image(32)
    return build


def _hf_vit():
    from transformers import ViTConfig, ViTModel

    cfg = ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                    intermediate_size=64)
    return _Logits(ViTModel(cfg, add_pooling_layer=False), "last_hidden_state"), _image(32)


def _wav2vec2():
    import torch
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    cfg = Wav2Vec2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                         conv_dim=(16, 16), conv_kernel=(10, 3), conv_stride=(5, 2), num_feat_extract_layers=2,
                         num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)
    return _Logits(Wav2Vec2Model(cfg), "last_hidden_state"), (torch.randn(1, 400),)


def _timm(name, size=32, **kwargs):
    def build():
        import timm

        return timm.create_model(name, pretrained=False, img_size=size, **kwargs).eval(), _image(size)
    return build


def _recurrent(kind, bidirectional=False):
    def build():
        import torch

        class Net(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.rnn = getattr(torch.nn, kind)(12, 16, num_layers=2, batch_first=True,
                                                   bidirectional=bidirectional)
                self.head = torch.nn.Linear(16 * (2 if bidirectional else 1), 4)

            def forward(self, x):
                y, _ = self.rnn(x)
                return self.head(y[:, -1])

        return Net().eval(), (torch.randn(2, 10, 12),)
    return build


def _unet():
    import torch
    from torch import nn

    def block(i, o):
        return nn.Sequential(nn.Conv2d(i, o, 3, padding=1), nn.BatchNorm2d(o), nn.ReLU())

    class UNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.down1, self.down2 = block(3, 8), block(8, 16)
            self.pool = nn.MaxPool2d(2)
            self.up = nn.ConvTranspose2d(16, 8, 2, stride=2)
            self.dec = block(16, 8)
            self.out = nn.Conv2d(8, 2, 1)

        def forward(self, x):
            a = self.down1(x)
            b = self.down2(self.pool(a))
            return self.out(self.dec(torch.cat([self.up(b), a], dim=1)))

    return UNet().eval(), _image(32)


def _sensor_cnn():
    import torch
    from torch import nn

    net = nn.Sequential(nn.Conv1d(3, 8, 5, padding=2), nn.ReLU(), nn.MaxPool1d(2), nn.Conv1d(8, 8, 3, padding=1),
                        nn.Upsample(scale_factor=2), nn.Conv1d(8, 4, 1))
    return net.eval(), (torch.randn(1, 3, 64),)


ZOO = [
    ZooModel("resnet18", "torchvision", _tv("resnet18")),
    ZooModel("mobilenet_v3_small", "torchvision", _tv("mobilenet_v3_small")),
    ZooModel("squeezenet1_1", "torchvision", _tv("squeezenet1_1", 64)),
    ZooModel("efficientnet_b0", "torchvision", _tv("efficientnet_b0")),
    ZooModel("vit_tiny_torchvision", "torchvision", _tv_vit),
    ZooModel("vit_tiny_torchvision_dynamo", "torchvision", _tv_vit, dynamo=True, opset=18),
    ZooModel("lraspp_mobilenet_v3", "torchvision segmentation", _tv_segmentation),
    ZooModel("swin_tiny_torchvision", "torchvision", _tv_swin()),
    ZooModel("swin_tiny_torchvision_dynamo", "torchvision", _tv_swin(), dynamo=True, opset=18),
    ZooModel("swin_v2_tiny_torchvision_opset20", "torchvision", _tv_swin(v2=True), opset=20),
    ZooModel("bert_tiny", "huggingface", _bert()),
    ZooModel("bert_tiny_eager_opset13", "huggingface", _bert("eager"), opset=13),
    ZooModel("bert_tiny_opset18", "huggingface", _bert(), opset=18),
    ZooModel("bert_tiny_dynamo", "huggingface", _bert(), dynamo=True, opset=18),
    ZooModel("distilbert_tiny", "huggingface", _distilbert),
    ZooModel("gpt2_tiny", "huggingface", _gpt2),
    ZooModel("vit_tiny_hf", "huggingface", _hf_vit),
    ZooModel("vit_tiny_hf_dynamo", "huggingface", _hf_vit, dynamo=True, opset=18),
    ZooModel("wav2vec2_tiny", "huggingface", _wav2vec2),
    ZooModel("deit_tiny_timm", "timm", _timm("deit_tiny_patch16_224", 32, patch_size=8, depth=2)),
    ZooModel("lstm_2layer", "recurrent", _recurrent("LSTM")),
    ZooModel("lstm_2layer_opset14", "recurrent", _recurrent("LSTM"), opset=14),
    ZooModel("lstm_2layer_opset20", "recurrent", _recurrent("LSTM"), opset=20),
    ZooModel("gru_bidirectional", "recurrent", _recurrent("GRU", bidirectional=True)),
    ZooModel("rnn_2layer", "recurrent", _recurrent("RNN")),
    ZooModel("unet_small", "segmentation", _unet),
    ZooModel("sensor_cnn_1d", "cnn", _sensor_cnn),
    ZooModel("resnet18_opset13", "torchvision", _tv("resnet18"), opset=13),
    ZooModel("resnet18_dynamo_opset21", "torchvision", _tv("resnet18"), dynamo=True, opset=21),
]


def export(model: ZooModel, out: Path) -> tuple[Path, dict[str, np.ndarray]]:
    """Build, export to ``out/NAME.onnx`` with fixed shapes, return the path and the sample inputs."""
    import torch

    _torchvision()  # transformers and timm import torchvision when it is installed: declare its ops first
    torch.manual_seed(0)
    module, args = model.build()
    with torch.no_grad():  # zero-initialised heads (torchvision's ViT) would make the output constant
        for p in module.parameters():
            if p.numel() > 1 and not p.any():
                p.normal_(0.0, 0.05)
    names = [f"input_{i}" for i in range(len(args))]
    path = out / f"{model.name}.onnx"
    with torch.no_grad():
        torch.onnx.export(module, args, str(path), dynamo=model.dynamo, opset_version=model.opset,
                          input_names=names, **({} if model.dynamo else {"do_constant_folding": True}))
    return path, {n: a.numpy() for n, a in zip(names, args)}


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else ".")
    target.mkdir(parents=True, exist_ok=True)
    for m in ZOO:
        try:
            path, feeds = export(m, target)
            np.savez(target / f"{m.name}.inputs.npz", **feeds)
            print(f"{m.name}: {path}")
        except Exception as e:  # noqa: BLE001 - report every export failure and go on
            print(f"{m.name}: export failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
