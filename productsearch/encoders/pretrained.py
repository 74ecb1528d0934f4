"""Encoders from real pretrained checkpoints: CLIP-style dual encoders (transformers) and the
source article's BERT + ResNet pairing with trained projection heads.

Real checkpoints are loaded from a local directory (or a hub name where the machine reaches a
hub); tests build each kind from a tiny randomly initialised config. encoders/loading.py picks
the class from a version directory's tower.json. Every tower returns unit-norm float32 rows.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

HF_DIR = "hf_model"
HEADS_FILE = "heads.pt"


def features(output) -> torch.Tensor:
    """transformers 5 returns a model output from get_*_features; 4.x returned the tensor."""
    return output if isinstance(output, torch.Tensor) else output.pooler_output


def autocast(device: torch.device, precision: str):
    """fp16/bf16 autocast on a GPU; a no-op context on the CPU (fp32 there)."""
    if device.type == "cuda" and precision in ("fp16", "bf16"):
        return torch.autocast("cuda", dtype=torch.float16 if precision == "fp16" else torch.bfloat16)
    return torch.autocast("cpu", enabled=False)


class HFDualEncoderTower:
    """One tower of a CLIP-style dual encoder (CLIPModel / ChineseCLIPModel)."""

    MODEL_CLASSES = {"clip": "CLIPModel", "chinese-clip": "ChineseCLIPModel"}

    def __init__(self, model_dir: Path, kind: str, modality: str, device: str = "cpu", precision: str = "fp32"):
        import transformers

        model_class = getattr(transformers, self.MODEL_CLASSES[kind])
        self.device = torch.device(device)
        self.precision = precision
        self.modality = modality
        self.model = model_class.from_pretrained(str(model_dir)).to(self.device).eval()
        if modality == "text":
            self.tokenizer = transformers.AutoTokenizer.from_pretrained(str(model_dir))
            self.max_length = int(getattr(self.model.config.text_config, "max_position_embeddings", 77))
        else:
            self.processor = transformers.AutoImageProcessor.from_pretrained(str(model_dir))

    @torch.inference_mode()
    def encode(self, items: list, max_length: int | None = None) -> np.ndarray:
        with autocast(self.device, self.precision):
            if self.modality == "text":
                limit = min(max_length or self.max_length, self.max_length)
                batch = self.tokenizer(list(items), padding=True, truncation=True, max_length=limit, return_tensors="pt")
                batch = {k: v.to(self.device) for k, v in batch.items() if k in ("input_ids", "attention_mask")}
                out = features(self.model.get_text_features(**batch))
            else:
                pixels = self.processor(images=[im.convert("RGB") for im in items], return_tensors="pt")["pixel_values"]
                out = features(self.model.get_image_features(pixel_values=pixels.to(self.device)))
        return F.normalize(out.float(), dim=1).cpu().numpy()


class ProjectionHead(torch.nn.Module):
    """Linear projection into the shared space (trained by build_models' bert-resnet preset)."""

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.linear = torch.nn.Linear(in_dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.linear(x), dim=1)


def resnet_backbone(arch: str) -> torch.nn.Module:
    """A torchvision ResNet with its classifier removed (outputs pooled features)."""
    import torchvision

    backbone = getattr(torchvision.models, arch)(weights=None)
    backbone.fc = torch.nn.Identity()
    return backbone


class BertProjTextTower:
    """BERT + mean pooling (un-normalised) + a trained projection head."""

    def __init__(self, version_dir: Path, spec: dict, device: str = "cpu", precision: str = "fp32"):
        from transformers import AutoModel, AutoTokenizer

        self.device = torch.device(device)
        self.precision = precision
        self.tokenizer = AutoTokenizer.from_pretrained(str(Path(version_dir) / "text_model"))
        self.model = AutoModel.from_pretrained(str(Path(version_dir) / "text_model")).to(self.device).eval()
        self.head = ProjectionHead(self.model.config.hidden_size, spec["dim"])
        self.head.load_state_dict(torch.load(Path(version_dir) / HEADS_FILE, map_location="cpu", weights_only=True))
        self.head.to(self.device).eval()

    @torch.inference_mode()
    def pooled(self, texts: list[str], max_length: int = 128) -> torch.Tensor:
        batch = self.tokenizer(list(texts), padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        batch = {k: v.to(self.device) for k, v in batch.items()}
        with autocast(self.device, self.precision):
            hidden = self.model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        return ((hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)).float()

    def encode(self, texts: list[str], max_length: int = 128) -> np.ndarray:
        with torch.inference_mode():
            return self.head(self.pooled(texts, max_length)).cpu().numpy()


class ResNetProjImageTower:
    """torchvision ResNet (pretrained weights from a local file) + a trained projection head."""

    def __init__(self, version_dir: Path, spec: dict, device: str = "cpu", precision: str = "fp32"):
        from torchvision.transforms import v2

        self.device = torch.device(device)
        self.precision = precision
        self.backbone = resnet_backbone(spec["arch"])
        self.backbone.load_state_dict(torch.load(Path(version_dir) / "backbone.pt", map_location="cpu", weights_only=True))
        self.backbone.to(self.device).eval()
        feature_dim = self.backbone(torch.zeros(1, 3, 64, 64, device=self.device)).shape[1]
        self.head = ProjectionHead(feature_dim, spec["dim"])
        self.head.load_state_dict(torch.load(Path(version_dir) / HEADS_FILE, map_location="cpu", weights_only=True))
        self.head.to(self.device).eval()
        self.transform = v2.Compose([
            v2.PILToTensor(), v2.Resize(spec.get("resolution", 224), antialias=True),
            v2.CenterCrop(spec.get("resolution", 224)), v2.ToDtype(torch.float32, scale=True),
            v2.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
        ])

    @torch.inference_mode()
    def pooled(self, images: list) -> torch.Tensor:
        x = torch.stack([self.transform(im.convert("RGB")) for im in images]).to(self.device)
        with autocast(self.device, self.precision):
            return self.backbone(x).float()

    def encode(self, images: list) -> np.ndarray:
        with torch.inference_mode():
            return self.head(self.pooled(images)).cpu().numpy()
