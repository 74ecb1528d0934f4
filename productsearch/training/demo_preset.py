"""The `demo` preset: real pretrained towers for a bilingual demo. USE multilingual v3 (torch
port) as the frozen text tower, ImageNet EfficientNet-Lite0 at 96 px (frozen) with an MLP
projection trained into its space on the demo renders plus 1,000 Fashion-MNIST TRAIN photos per
class, a catalog with about a third of its products in Chinese, fusion text weight 0.1, and the
issue's target table on held-out data (demo held-out combinations, Fashion-MNIST TEST). Writes
    <out>/text_encoder/N/text_model/   weights.npz + sp.model (tower.json kind use-multilingual) + the ONNX
                                       export, its int8 quantization and runtime.json (training/text_runtime.py)
    <out>/image_encoder/N/image_tower/ LiteImageTower.save + build_info.json (kind lite0)
Reruns reuse the trained tower unless --force (or the catalog, seed or epochs changed).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np

from productsearch.training.bilingual_quality import demo_metrics, format_targets, fresh_renders, passed, photo_metrics
from productsearch.training.minilm_preset import BUILD_INFO, RENDERS_PER_COMBO, Timer, reusable
from productsearch.training.generation import finish_generation, pick_generation
from productsearch.training.text_runtime import choose_text_runtime, format_gate, image_side
from productsearch.training.projection import ProjectionConfig, class_targets, combo_targets, train_projection
from productsearch.demo import catalog as cat
from productsearch.demo.chinese import ZH_FRACTION
from productsearch.encoders.lite_tower import ONNX_FILE, LiteImageTower, lite0_checkpoint
from productsearch.encoders.loading import write_tower_kind
from productsearch.encoders.use_multilingual import UseTextTower, copy_use_model

TEXT_WEIGHT = 0.1      # fusion weight of this generation's queries AND catalog (validation: REPORT.md)
RESOLUTION = 96        # Lite0 input size: 6.4 ms/image at batch 16 on one thread
PHOTOS_PER_CLASS = 1000
VALIDATION_PER_CLASS = 500  # the train photos the recipe was chosen on; not trained on


def train_photo_indices(labels: np.ndarray, per_class: int = PHOTOS_PER_CLASS, seed: int = 0) -> np.ndarray:
    """Fashion-MNIST TRAIN-split rows to train on: per class a seeded permutation, skipping the
    first VALIDATION_PER_CLASS (the photos the recipe was validated on), then `per_class`."""
    rng = np.random.default_rng(seed)
    rows = [rng.permutation(np.flatnonzero(labels == c))[VALIDATION_PER_CLASS:VALIDATION_PER_CLASS + per_class]
            for c in range(10)]
    return np.concatenate(rows)


def render_features(tower: LiteImageTower, catalog: list[dict], catalog_dir: Path, flip: bool = False):
    import torch
    from PIL import Image

    out = []
    for s in range(0, len(catalog), 256):
        images = [Image.open(cat.image_path(catalog_dir, p)).convert("RGB") for p in catalog[s:s + 256]]
        if flip:
            images = [im.transpose(Image.FLIP_LEFT_RIGHT) for im in images]
        out.append(tower.pooled(images))
    return torch.cat(out)


def photo_features(tower: LiteImageTower, images: np.ndarray):
    import torch

    from productsearch.demo.fashion_mnist import to_photos

    return torch.cat([tower.pooled(to_photos(images[s:s + 512])) for s in range(0, len(images), 512)])


def embed(tower: LiteImageTower, feats) -> np.ndarray:
    import torch

    with torch.inference_mode():
        return torch.cat([tower.embed(feats[s:s + 1024].to(tower.device)).cpu() for s in range(0, len(feats), 1024)]).numpy()


def evaluate(tower, text_tower, catalog, catalog_dir, titles, render_feats, photo_eval: bool, seed: int) -> dict:
    """The target table: demo held-out rows, and (photo_eval) the Fashion-MNIST TEST rows."""
    from productsearch.demo import fashion_mnist as fm

    combos = sorted({cat.combo_of(p) for p in catalog if p["heldout"]})
    fresh = tower.encode(fresh_renders(combos, seed))
    metrics = demo_metrics(catalog, titles, embed(tower, render_feats), text_tower, fresh, TEXT_WEIGHT)
    if photo_eval:
        try:
            images, labels = fm.load_split("test")
        except fm.MissingDataset as err:
            print(f"Fashion-MNIST rows skipped: {err}")
        else:
            metrics.update(photo_metrics(text_tower, embed(tower, photo_features(tower, images)), labels.astype(np.int64)))
    return metrics


def build_multilingual_demo(args: argparse.Namespace) -> int:
    import torch

    from productsearch.demo import fashion_mnist as fm

    torch.set_num_threads(args.threads)
    timer = Timer()
    out, catalog_dir = Path(args.out), Path(args.catalog_dir)
    generation = pick_generation(out, args.generation, args.new_generation)
    print(f"generation {generation} (model version directories <model>/{generation}/)")
    text_dir = out / "text_encoder" / str(generation)
    tower_dir = out / "image_encoder" / str(generation) / "image_tower"

    t0 = time.perf_counter()
    catalog = cat.generate_catalog(catalog_dir, RENDERS_PER_COMBO, args.seed, zh_fraction=ZH_FRACTION)
    print(f"catalog: {len(catalog)} products in {catalog_dir}, {sum(p.get('lang') == 'zh' for p in catalog)} "
          f"in Chinese, {sum(p['heldout'] for p in catalog)} held out")
    timer("catalog", t0)

    t0 = time.perf_counter()
    changed = copy_use_model(text_dir / "text_model")
    write_tower_kind(text_dir, {"kind": "use-multilingual"})
    text_tower = UseTextTower(text_dir / "text_model")
    titles = text_tower.encode([p["title"] for p in catalog])
    print(f"text tower: USE multilingual v3 -> {text_dir / 'text_model'} ({'copied' if changed else 'up to date'})")
    timer("text tower + titles", t0)

    cfg = ProjectionConfig(epochs=args.epochs or ProjectionConfig.epochs, seed=args.seed)
    wanted = {"preset": "demo", "seed": args.seed, "catalog": json.loads((catalog_dir / "catalog_meta.json").read_text()),
              "epochs": cfg.epochs, "photos_per_class": PHOTOS_PER_CLASS, "resolution": RESOLUTION}
    ok, why = reusable(tower_dir, wanted)
    if ok and not args.force:
        print(f"image tower: {why} {tower_dir} (--force retrains; --eval re-measures)")
        metrics = json.loads((tower_dir / BUILD_INFO).read_text())["quality"]
        if args.eval:
            t0 = time.perf_counter()
            tower = LiteImageTower.load(tower_dir)
            metrics = evaluate(tower, text_tower, catalog, catalog_dir, titles,
                               render_features(tower, catalog, catalog_dir), True, args.seed)
            timer("evaluate", t0)
    else:
        print(f"image tower: training ({'--force' if ok else why})")
        torch.manual_seed(args.seed)
        tower = LiteImageTower(RESOLUTION, text_tower.dim, checkpoint=lite0_checkpoint())
        t0 = time.perf_counter()
        keep = [i for i, p in enumerate(catalog) if not p["heldout"]]
        feats = render_features(tower, catalog, catalog_dir)
        flips = render_features(tower, [catalog[i] for i in keep], catalog_dir, flip=True)
        timer("render features (+ h-flips of the training renders)", t0)
        t0 = time.perf_counter()
        images, labels = fm.load_split("train")
        rows = train_photo_indices(labels, PHOTOS_PER_CLASS, args.seed)
        photos = (photo_features(tower, images[rows]), torch.from_numpy(labels[rows].astype(np.int64)),
                  class_targets(text_tower))
        timer(f"Fashion-MNIST train features ({len(rows)})", t0)
        t0 = time.perf_counter()
        combos = sorted({cat.combo_of(catalog[i]) for i in keep})
        index = {c: j for j, c in enumerate(combos)}
        X = torch.cat([feats[keep], flips])
        y = torch.tensor([index[cat.combo_of(catalog[i])] for i in keep] * 2)
        log = train_projection(tower, X, y, combo_targets(combos, text_tower), photos, cfg)
        timer("train projection", t0)
        t0 = time.perf_counter()
        metrics = evaluate(tower, text_tower, catalog, catalog_dir, titles, feats, True, args.seed)
        timer("evaluate", t0)
        tmp = tower_dir.with_name(tower_dir.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tower.save(tmp)
        info = {**wanted, "train": cfg.asdict(), "text_weight": TEXT_WEIGHT, "threads": args.threads,
                "train_seconds": log["seconds"], "loss": log["loss"], "quality": metrics}
        (tmp / BUILD_INFO).write_text(json.dumps(info, indent=1))
        shutil.rmtree(tower_dir, ignore_errors=True)
        os.replace(tmp, tower_dir)
        print(f"image tower: saved to {tower_dir}")
    if not (tower_dir / ONNX_FILE).exists():
        LiteImageTower.load(tower_dir).export_onnx(tower_dir)
        print(f"image tower: ONNX Runtime export {tower_dir / ONNX_FILE} (equal to torch within 1e-4)")
    write_tower_kind(tower_dir.parent, {"kind": "lite0", "runtime": "onnxruntime on the CPU, torch on a GPU"})
    t0 = time.perf_counter()
    text_runtime = choose_text_runtime(text_dir / "text_model", text_tower, catalog, lambda: image_side(
        tower_dir.parent, catalog, catalog_dir, args.seed), TEXT_WEIGHT, force=changed)
    print(f"text tower: ONNX Runtime serves {text_runtime['serve']} on the CPU ({text_runtime['gate']['decision']})")
    timer("text tower export + gate", t0)

    finish_generation(out, generation, {"preset": "demo", "seed": args.seed, "epochs": cfg.epochs,
                                        "towers": "use-multilingual + lite0", "text_runtime": text_runtime["serve"],
                                        "text_runtime_gate": text_runtime["gate"]["max_change"]},
                      args.device, text_weight=TEXT_WEIGHT, evaluation=metrics)
    print()
    print(format_targets(metrics, f"Held-out quality (P@10, fusion text weight {TEXT_WEIGHT}): demo held-out "
                                  "combinations and Fashion-MNIST TEST photos, never trained on"))
    print()
    ok = passed(metrics)
    print("quality targets: " + ("all met" if ok else "NOT MET"))
    print()
    print("Text tower runtimes, same table (image side: the served image tower):")
    print(format_gate(text_runtime))
    print(timer.summary())
    return 0 if ok or not args.strict else 1
