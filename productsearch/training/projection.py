"""Train the pretrained image tower's projection into the frozen text tower's space, on cached
backbone features ("LiT in reverse", as training/training.py does for the from-scratch tower).

Two sources, each with its own InfoNCE ("per-source"):
  * demo renders (+ their h-flips): logits over ONE target per TRAINING combination
    (`combo_targets`); held-out combinations are never seen, neither as images nor as targets;
  * Fashion-MNIST TRAIN photos: logits over the 10 class targets only (`class_targets`), so
    "dress" is never a false negative of the render combination "red plain dress".
The backbone is frozen, so its pooled features are computed once (lite_tower.pooled) and light
Gaussian feature noise stands in for pixel augmentation. The recipe (epochs, temperature,
captions) was chosen on validation splits: /work/scratch/towers/REPORT.md, "Session 2".
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class ProjectionConfig:
    epochs: int = 25
    batch_size: int = 256          # renders per step
    photo_batch: int = 128         # Fashion-MNIST photos per step (0: none)
    lr: float = 2e-3
    weight_decay: float = 0.05
    temperature: float = 0.05
    feature_noise: float = 0.05    # Gaussian noise, in units of the feature std
    seed: int = 0
    replay_batch: int = 0          # rows of the `replay` source per step (adapt: the demo renders)
    warm_start: bool = False       # keep the projection's weights (adapt) instead of a fresh init

    def asdict(self) -> dict:
        return asdict(self)


def unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def combo_targets(combos: list[tuple[str, str, str]], text_tower) -> np.ndarray:
    """One unit-norm target per combination: the mean of its English AND Chinese canonical
    phrases ("red striped t-shirt", "红色条纹T恤"). No title blend (title_weight 0): with the
    Chinese phrase in the target, blending in the titles measured no better on validation."""
    from productsearch.demo.catalog import canonical_query
    from productsearch.demo.chinese import canonical_query_zh

    en = text_tower.encode([canonical_query(*c) for c in combos])
    zh = text_tower.encode([canonical_query_zh(*c) for c in combos])
    return unit((en + zh) / 2)


def class_targets(text_tower) -> np.ndarray:
    """The 10 Fashion-MNIST class targets: mean of each class's English training captions and its
    Chinese name (productsearch/demo/fashion_mnist.py)."""
    from productsearch.demo import fashion_mnist as fm

    captions = [list(fm.TRAIN_CAPTIONS[c]) + [fm.TRAIN_CAPTIONS_ZH[c]] for c in range(len(fm.CLASSES))]
    return unit(np.stack([text_tower.encode(c).mean(0) for c in captions]))


def train_projection(tower, X: torch.Tensor, y: torch.Tensor, targets: np.ndarray,
                     photos: tuple[torch.Tensor, torch.Tensor, np.ndarray] | None = None,
                     cfg: ProjectionConfig = ProjectionConfig(), log=print,
                     replay: tuple[torch.Tensor, torch.Tensor, np.ndarray] | None = None, progress: bool = False) -> dict:
    """Train `tower.proj` in place. X: cached features of the training renders (all views), y:
    their combination's row in `targets` [C, D]; photos: (features, class labels, class targets);
    replay: a third source of the same form (cfg.replay_batch rows a step); progress: a tqdm bar
    with ETA over the steps. Trains on the device the tower is on (features stay on the CPU and
    each batch moves); reproducible per seed and thread count on the CPU. Returns a small log (loss
    per epoch, seconds)."""
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    device = next(tower.proj.parameters()).device  # features stay on the CPU; each batch moves to the tower
    T = torch.from_numpy(np.asarray(targets, np.float32)).to(device)
    if not cfg.warm_start:
        for m in tower.proj.modules():
            if isinstance(m, torch.nn.Linear):
                m.reset_parameters()
    opt = torch.optim.AdamW(tower.proj.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    total = cfg.epochs * math.ceil(len(X) / cfg.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=total, pct_start=0.1)
    std = float(X.std()) if cfg.feature_noise else 0.0
    use_photos = photos is not None and cfg.photo_batch > 0
    sources = [(photos[0], torch.as_tensor(photos[1]).long(), photos[2], cfg.photo_batch)] if use_photos else []
    if replay is not None and cfg.replay_batch > 0:
        sources.append((replay[0], torch.as_tensor(replay[1]).long(), replay[2], cfg.replay_batch))
    sources = [(sX, sy, torch.from_numpy(np.asarray(sT, np.float32)).to(device), n,
                float(sX.std()) if cfg.feature_noise else 0.0) for sX, sy, sT, n in sources]
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=total, desc="training", unit="step")
    tower.eval()
    tower.proj.train()
    started, history = time.perf_counter(), []
    for epoch in range(cfg.epochs):
        order = torch.randperm(len(X), generator=gen)
        summed = 0.0
        for s in range(0, len(X), cfg.batch_size):
            idx = order[s:s + cfg.batch_size]
            x = X[idx] + cfg.feature_noise * std * torch.randn(X[idx].shape, generator=gen)
            loss = F.cross_entropy(tower.embed(x.to(device)) @ T.T / cfg.temperature, y[idx].to(device))
            for sX, sy, sT, n, sstd in sources:
                j = torch.randint(0, len(sX), (n,), generator=gen)
                sx = sX[j] + cfg.feature_noise * sstd * torch.randn(sX[j].shape, generator=gen)
                loss = loss + F.cross_entropy(tower.embed(sx.to(device)) @ sT.T / cfg.temperature, sy[j].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            if bar is not None:
                bar.update(1)
            summed += loss.item() * len(idx)
        history.append(round(summed / len(X), 4))
        if epoch == 0 or (epoch + 1) % 5 == 0 or epoch + 1 == cfg.epochs:
            log(f"  epoch {epoch + 1}/{cfg.epochs}: loss {history[-1]:.4f} ({time.perf_counter() - started:.0f}s)")
    if bar is not None:
        bar.close()
    tower.eval()
    return {"loss": history, "seconds": round(time.perf_counter() - started, 1), "steps": total}
