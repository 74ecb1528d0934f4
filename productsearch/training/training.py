"""Train the image tower into the frozen text tower's space ("LiT in reverse").

Each training product's image is pulled towards the text embedding of its attribute
combination and away from every other TRAINING combination (InfoNCE over a fixed set of
targets: one row per combination, so duplicates in a batch are never false negatives).
Auxiliary category / colour / pattern heads on the backbone features make those attributes
separately readable, which is what lets unseen combinations (the held-out split) land near
their own text: MiniLM's embedding of "red striped t-shirt" is close to additive in its parts.
Held-out combinations are never seen here, neither as images nor as targets.
"""
from __future__ import annotations

import math
import time
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from productsearch.demo.catalog import CATEGORIES, COLORS, PATTERNS, canonical_query, combo_of, image_path
from productsearch.encoders.minilm import TextTower
from productsearch.encoders.resnet_tower import ImageTower

DEFAULTS = dict(
    arch="resnet10", stem="imagenet", resolution=64,
    epochs=10, batch_size=128, lr=3e-3, weight_decay=0.05, warmup_epochs=1,
    temperature=0.05, aux_weight=0.5, shift=6, title_weight=0.5,
)


def combo_targets(combos: list[tuple[str, str, str]], catalog: list[dict], text_tower: TextTower,
                  title_weight: float, text_emb_titles: np.ndarray | None = None) -> np.ndarray:
    """One unit-norm target per combination: its canonical caption blended with the mean of its
    products' title embeddings (the product text the fused index will hold).

    `text_emb_titles` (rows follow `catalog`) saves re-encoding the titles when the caller has them.
    """
    captions = text_tower.encode([canonical_query(*c) for c in combos])
    if title_weight <= 0:
        return captions
    if text_emb_titles is None:
        text_emb_titles = text_tower.encode([p["title"] for p in catalog])
    rows: dict[tuple, list[int]] = {c: [] for c in combos}
    for i, p in enumerate(catalog):
        if combo_of(p) in rows:
            rows[combo_of(p)].append(i)
    means = np.stack([text_emb_titles[rows[c]].mean(0) for c in combos])
    mix = (1 - title_weight) * captions + title_weight * means
    return (mix / np.linalg.norm(mix, axis=1, keepdims=True)).astype(np.float32)


def _augment(pixels: torch.Tensor, shift: int, gen: torch.Generator) -> torch.Tensor:
    """Random horizontal flip and translation (edge-replicated, the backgrounds are flat).
    Colours are left alone: they are what the colour word means."""
    n, _, h, w = pixels.shape
    flip = torch.rand(n, generator=gen) < 0.5
    pixels = torch.where(flip[:, None, None, None], pixels.flip(-1), pixels)
    if shift <= 0:
        return pixels
    padded = F.pad(pixels.float(), (shift,) * 4, mode="replicate")
    offs = torch.randint(0, 2 * shift + 1, (n, 2), generator=gen).tolist()
    return torch.stack([padded[i, :, dy:dy + h, dx:dx + w] for i, (dy, dx) in enumerate(offs)])


def train_image_tower(catalog: list[dict], catalog_dir, text_tower: TextTower, seed: int = 0,
                      epochs: int | None = None, log: Callable[[str], None] = print,
                      text_emb_titles: np.ndarray | None = None, **overrides) -> ImageTower:
    """Train a fresh ImageTower on the catalog's NON-held-out products; returns it in eval mode.

    Reproducible for a given seed (seeded init, data order and augmentation; CPU kernels with
    the same thread count). `text_emb_titles` (optional, rows follow `catalog`) avoids encoding
    the titles twice. `overrides` replace entries of DEFAULTS (architecture, resolution, lr, ...).
    """
    hp = {**DEFAULTS, **overrides}
    if epochs is not None:
        hp["epochs"] = epochs
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)

    keep = [i for i, p in enumerate(catalog) if not p["heldout"]]
    train = [catalog[i] for i in keep]
    if text_emb_titles is not None:
        text_emb_titles = np.asarray(text_emb_titles)[keep]
    combos = sorted({combo_of(p) for p in train})
    combo_index = {c: i for i, c in enumerate(combos)}
    t0 = time.perf_counter()
    targets = torch.from_numpy(combo_targets(
        combos, train, text_tower, hp["title_weight"], text_emb_titles))
    log(f"  targets: {len(combos)} training combinations embedded "
        f"({time.perf_counter() - t0:.1f}s)")

    tower = ImageTower(hp["arch"], hp["resolution"], stem=hp["stem"])
    t0 = time.perf_counter()
    pixels = torch.cat([
        tower.to_uint8([Image.open(image_path(catalog_dir, p)) for p in train[i:i + 512]])
        for i in range(0, len(train), 512)])
    labels = torch.tensor([
        [combo_index[combo_of(p)], CATEGORIES.index(p["category"]), COLORS.index(p["color"]),
         PATTERNS.index(p["pattern"])] for p in train])
    log(f"  images: {len(train)} training products loaded at {hp['resolution']} px "
        f"({time.perf_counter() - t0:.1f}s)")

    heads = torch.nn.ModuleList(
        [torch.nn.Linear(tower.feature_dim, n) for n in (len(CATEGORIES), len(COLORS), len(PATTERNS))])
    params = list(tower.parameters()) + list(heads.parameters())
    decay = [p for p in params if p.ndim > 1]
    no_decay = [p for p in params if p.ndim <= 1]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": hp["weight_decay"]},
                             {"params": no_decay, "weight_decay": 0.0}], lr=hp["lr"])
    steps_per_epoch = math.ceil(len(train) / hp["batch_size"])
    total = hp["epochs"] * steps_per_epoch
    warmup = hp["warmup_epochs"] * steps_per_epoch

    def lr_at(step: int) -> float:  # linear warm-up, cosine decay to zero
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    tower.to(memory_format=torch.channels_last)  # ~20% faster convolutions on CPU
    tower.train()
    heads.train()
    for epoch in range(hp["epochs"]):
        t0 = time.perf_counter()
        order = torch.randperm(len(train), generator=gen)
        sums = np.zeros(3)
        correct = 0
        for start in range(0, len(train), hp["batch_size"]):
            idx = order[start:start + hp["batch_size"]]
            x = tower.normalize(_augment(pixels[idx], hp["shift"], gen))
            x = x.contiguous(memory_format=torch.channels_last)
            y = labels[idx]
            feats = tower.features(x)
            logits = tower.embed(feats) @ targets.T / hp["temperature"]
            nce = F.cross_entropy(logits, y[:, 0])
            aux = sum(F.cross_entropy(h(feats), y[:, k + 1]) for k, h in enumerate(heads)) / 3
            loss = nce + hp["aux_weight"] * aux
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            sums += np.array([loss.item(), nce.item(), aux.item()]) * len(idx)
            correct += (logits.argmax(1) == y[:, 0]).sum().item()
        sums /= len(train)
        log(f"  epoch {epoch + 1:2d}/{hp['epochs']}: loss {sums[0]:.4f} (infonce {sums[1]:.4f}, "
            f"aux {sums[2]:.4f}), train top-1 combo {correct / len(train):.3f}, "
            f"{time.perf_counter() - t0:.1f}s")
    return tower.to(memory_format=torch.contiguous_format).eval()
