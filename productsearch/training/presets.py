"""Build a generation's encoders from real pretrained checkpoints (build_models.py presets).

- `clip`: a transformers CLIPModel (e.g. a ViT-B/32 checkpoint): both towers from one model.
- `chinese-clip`: a ChineseCLIPModel, for Chinese queries (口红, 连衣裙).
- `bert-resnet`: the source article's pairing: a BERT text model and a torchvision ResNet, each
  with a projection head trained contrastively (InfoNCE) on the catalog's title/photo pairs,
  backbones frozen.
A checkpoint is a local directory (or a hub name where the machine reaches a hub). Everything
is copied into the generation's version directories, so Triton never downloads anything.
"""
from __future__ import annotations

import random
import shutil
from pathlib import Path

import torch
import torch.nn.functional as F

from productsearch.encoders.loading import write_tower_kind
from productsearch.encoders.pretrained import (HEADS_FILE, HF_DIR, BertProjTextTower, HFDualEncoderTower, ProjectionHead,
                                              ResNetProjImageTower, resnet_backbone)
from productsearch.control.repository import ENCODERS

PRESETS = ("demo", "demo-minilm", "clip", "chinese-clip", "bert-resnet", "adapt")


def build_dual_encoder(kind: str, checkpoint: str, repository: Path, generation: int, log=print) -> None:
    """Copy a CLIP / Chinese-CLIP checkpoint into both encoders of generation N."""
    import transformers

    model_class = getattr(transformers, HFDualEncoderTower.MODEL_CLASSES[kind])
    model = model_class.from_pretrained(checkpoint)
    tokenizer = transformers.AutoTokenizer.from_pretrained(checkpoint)
    processor = transformers.AutoImageProcessor.from_pretrained(checkpoint)
    first = Path(repository) / ENCODERS[0] / str(generation) / HF_DIR
    shutil.rmtree(first, ignore_errors=True)
    model.save_pretrained(first)
    tokenizer.save_pretrained(first)
    processor.save_pretrained(first)
    for encoder in ENCODERS:
        target = Path(repository) / encoder / str(generation)
        if target / HF_DIR != first:
            shutil.rmtree(target / HF_DIR, ignore_errors=True)
            shutil.copytree(first, target / HF_DIR)
        write_tower_kind(target, {"kind": kind, "checkpoint": str(checkpoint)})
    log(f"{kind}: {checkpoint} -> generation {generation} "
        f"(embedding dim {model.config.projection_dim})")


def info_nce(a: torch.Tensor, b: torch.Tensor, temperature: float = 0.07) -> torch.Tensor:
    logits = a @ b.T / temperature
    labels = torch.arange(len(a))
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2


def build_bert_resnet(text_checkpoint: str, repository: Path, generation: int, catalog: list[dict],
                      catalog_dir: Path, image_checkpoint: str | None = None, arch: str = "resnet50",
                      dim: int = 256, resolution: int = 224, epochs: int = 30, seed: int = 0, log=print) -> None:
    """BERT + ResNet backbones (frozen) with projection heads trained on title/photo pairs."""
    from PIL import Image
    from transformers import AutoModel, AutoTokenizer

    from productsearch.demo.catalog import image_path

    torch.manual_seed(seed)
    text_dir = Path(repository) / "text_encoder" / str(generation)
    image_dir = Path(repository) / "image_encoder" / str(generation)
    AutoModel.from_pretrained(text_checkpoint).save_pretrained(text_dir / "text_model")
    AutoTokenizer.from_pretrained(text_checkpoint).save_pretrained(text_dir / "text_model")
    backbone = resnet_backbone(arch)
    if image_checkpoint:  # torchvision state dict (e.g. resnet50-*.pth); the classifier is dropped
        state = torch.load(image_checkpoint, map_location="cpu", weights_only=True)
        missing, _ = backbone.load_state_dict({k: v for k, v in state.items() if not k.startswith("fc.")}, strict=False)
        if missing:
            raise ValueError(f"{image_checkpoint} lacks {len(missing)} {arch} weights, e.g. {missing[:3]}")
    image_dir.mkdir(parents=True, exist_ok=True)
    torch.save(backbone.state_dict(), image_dir / "backbone.pt")
    text_spec = {"kind": "bert-proj", "dim": dim, "checkpoint": str(text_checkpoint)}
    image_spec = {"kind": "resnet-proj", "arch": arch, "dim": dim, "resolution": resolution,
                  "checkpoint": str(image_checkpoint) if image_checkpoint else None}
    # Heads start random; the towers themselves compute the frozen backbone features.
    hidden = AutoModel.from_pretrained(text_dir / "text_model").config.hidden_size
    torch.save(ProjectionHead(hidden, dim).state_dict(), text_dir / HEADS_FILE)
    feature_dim = backbone(torch.zeros(1, 3, 64, 64)).shape[1]
    torch.save(ProjectionHead(feature_dim, dim).state_dict(), image_dir / HEADS_FILE)
    write_tower_kind(text_dir, text_spec)
    write_tower_kind(image_dir, image_spec)
    text_tower = BertProjTextTower(text_dir, text_spec)
    image_tower = ResNetProjImageTower(image_dir, image_spec)

    train = [p for p in catalog if not p.get("heldout")]
    text_feats = torch.cat([text_tower.pooled([p["title"] for p in train[i:i + 64]]) for i in range(0, len(train), 64)])
    image_feats = torch.cat([image_tower.pooled([Image.open(image_path(catalog_dir, p)) for p in train[i:i + 64]])
                             for i in range(0, len(train), 64)])
    heads = (text_tower.head.train(), image_tower.head.train())
    optimizer = torch.optim.Adam([p for head in heads for p in head.parameters()], lr=1e-3)
    order = list(range(len(train)))
    rng = random.Random(seed)
    for epoch in range(epochs):
        rng.shuffle(order)
        total = 0.0
        for start in range(0, len(order), 256):
            batch = order[start:start + 256]
            loss = info_nce(heads[0](text_feats[batch]), heads[1](image_feats[batch]))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item() * len(batch)
        if epoch == 0 or epoch == epochs - 1 or (epoch + 1) % 10 == 0:
            log(f"bert-resnet heads: epoch {epoch + 1}/{epochs} loss {total / len(order):.3f}")
    torch.save(heads[0].state_dict(), text_dir / HEADS_FILE)
    torch.save(heads[1].state_dict(), image_dir / HEADS_FILE)
    log(f"bert-resnet: {text_checkpoint} + {arch} ({image_checkpoint or 'random init'}) -> generation {generation} (dim {dim})")
