"""The demo image tower: a small torchvision ResNet trained from scratch into the text tower's space.

Used by the build (training) and inside Triton's python backend; nothing here sets thread
counts. Returns float32 numpy arrays [N, dim] with unit-norm rows.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision.models.resnet import BasicBlock, ResNet
from torchvision.transforms import v2

from productsearch.encoders.minilm import MINILM_DIM

ARCHS = {  # name -> torchvision ResNet block layout (BasicBlock)
    "resnet10": [1, 1, 1, 1],
    "resnet18": [2, 2, 2, 2],
    "resnet34": [3, 4, 6, 3],
}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CONFIG_FILE = "image_tower.json"
WEIGHTS_FILE = "image_tower.pt"


class ImageTower(torch.nn.Module):
    """torchvision ResNet backbone + linear projection into the text tower's space (L2-normed).

    `stem="imagenet"` is torchvision's (7x7/2 conv + max-pool); `stem="small"` (a 3x3/2 conv,
    no pool) keeps twice the spatial resolution but measured ~10x slower to train on 2 CPU cores.
    The architecture is rebuilt from `config` on load, so saved weights are self-describing.
    """

    def __init__(self, arch: str = "resnet10", resolution: int = 64, dim: int = MINILM_DIM,
                 stem: str = "imagenet", mean=IMAGENET_MEAN, std=IMAGENET_STD):
        super().__init__()
        if arch not in ARCHS:
            raise ValueError(f"unknown arch {arch!r}; choose from {sorted(ARCHS)}")
        self.config = {"arch": arch, "resolution": int(resolution), "dim": int(dim),
                       "stem": stem, "mean": list(mean), "std": list(std)}
        backbone = ResNet(BasicBlock, ARCHS[arch])
        if stem == "small":
            backbone.conv1 = torch.nn.Conv2d(3, 64, 3, stride=2, padding=1, bias=False)
            backbone.maxpool = torch.nn.Identity()
        elif stem != "imagenet":
            raise ValueError(f"unknown stem {stem!r}")
        self.feature_dim = backbone.fc.in_features
        backbone.fc = torch.nn.Identity()
        self.backbone = backbone
        self.proj = torch.nn.Linear(self.feature_dim, dim)
        self._resize = v2.Compose([
            v2.Resize(int(resolution), antialias=True), v2.CenterCrop(int(resolution))])
        self.register_buffer("_mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("_std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    @property
    def resolution(self) -> int:
        return self.config["resolution"]

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    # -- preprocessing: split in two so training can cache uint8 pixels and augment them ------
    def to_uint8(self, images: list[Image.Image]) -> torch.Tensor:
        """RGB, shorter side resized to `resolution` (antialiased), centre-cropped: uint8 [N,3,R,R]."""
        return torch.stack([
            self._resize(v2.functional.pil_to_tensor(im.convert("RGB"))) for im in images])

    def normalize(self, pixels: torch.Tensor) -> torch.Tensor:
        """uint8 [N,3,R,R] -> normalized float32 on the tower's device."""
        x = pixels.to(self.device, non_blocking=True).float().div_(255.0)
        return (x - self._mean) / self._std

    def preprocess(self, images: list[Image.Image]) -> torch.Tensor:
        """PIL images (any size/mode) -> the float batch `forward` takes."""
        return self.normalize(self.to_uint8(images))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled backbone features [N, feature_dim] (training adds heads on these)."""
        return self.backbone(x)

    def embed(self, feats: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.proj(feats), p=2, dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.embed(self.features(x))

    def encode(self, images: list[Image.Image], batch_size: int = 256) -> np.ndarray:
        """Unit-norm image embeddings, float32 [N, dim]; runs in eval + inference mode."""
        if len(images) == 0:
            return np.zeros((0, self.config["dim"]), dtype=np.float32)
        was_training = self.training
        self.eval()
        try:
            out = []
            with torch.inference_mode():
                for start in range(0, len(images), batch_size):
                    x = self.preprocess(images[start:start + batch_size])
                    out.append(self(x).float().cpu())
            return torch.cat(out).numpy()
        finally:
            self.train(was_training)

    def save(self, out_dir: str | os.PathLike) -> Path:
        """Write the config JSON and state_dict into `out_dir` (created)."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu() for k, v in self.state_dict().items()}
        torch.save(state, out / WEIGHTS_FILE)
        (out / CONFIG_FILE).write_text(json.dumps(self.config, indent=1))
        return out

    @classmethod
    def load(cls, model_dir: str | os.PathLike, device: str | torch.device = "cpu") -> "ImageTower":
        model_dir = Path(model_dir)
        config = json.loads((model_dir / CONFIG_FILE).read_text())
        tower = cls(**config)
        state = torch.load(model_dir / WEIGHTS_FILE, map_location="cpu", weights_only=True)
        tower.load_state_dict(state)
        return tower.to(device).eval()
