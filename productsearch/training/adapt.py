"""Adapt the serving image tower to one shop's catalog: a new generation, kept only if it passes the gate.

The gate and the report: training/adapt_quality.py.

    python -m productsearch.training.adapt --shop S [--model-repository R] [--heldout 0.2] [--seed 0]
    build_models.py --preset adapt --shop S          (the same)

Reads the shop's products with photos (title, photo, `category` and `color`/`pattern`/`material`
fields) from its live store, embedded or Milvus, splits them by
product id (seeded; the held-out share is recorded in the report), and trains the projection of
the serving EfficientNet-Lite0 tower (warm start, backbone frozen) contrastively against the
frozen served text tower: shop photos -> their title's text, mixed with the demo renders and
Fashion-MNIST TRAIN photos it was built on, so it does not forget them. torch runs on `--threads`
threads (1 by default) so the serving tritonserver keeps the other cores, and on the GPU when
torch sees one (`--train-device auto|cpu|cuda`).

Interrupted, it restarts cleanly (no resume): nothing is written to the repository before the
gate passes, a registration stopped half way removes what it wrote, and one killed -9 in those
seconds is removed by the next run (one run at a time per repository). The
generation is then written as generation N+1 beside the serving one (the
text tower and everything else shared with the serving generation through clone_encoders). The
swap (`python -m productsearch.control.deploy swap N`) re-encodes the shop's catalog from the
store and replays the writes made meanwhile, as for any new generation. Report:
generations/adapt-N.json and adapt-N.png, beside N's manifest.
"""
from __future__ import annotations

import argparse
import copy
import io
import random
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from productsearch.catalog.rows import UnknownShop
from productsearch.control.generations import manifest_path, read_serving
from productsearch.control.paths import DEFAULT_MODEL_REPOSITORY
from productsearch.control.repository import built_generations
from productsearch.training.adapt_quality import (MARGIN, GateRefused, demo_fused_ndcg, format_table, gate, shop_metrics,
                                                  split_ids, trust_line, write_report)
from productsearch.training.adapt_register import adapting, register
from productsearch.training.generation import pick_generation
from productsearch.training.projection import ProjectionConfig, class_targets, combo_targets, train_projection

MIN_HELDOUT = 12  # products: below this no held-out figure means anything
TRAIN_STEPS = 1200  # the default recipe's length: what 30 epochs were over the 3,000-product studio shop


def default_config(seed: int = 0) -> ProjectionConfig:
    """The recipe: per step 128 shop photos, 64 Fashion-MNIST photos and 256 demo renders (the
    demo preset's own batch), so the demo and photo figures stay within the gate's margin; at
    most 30 epochs and about TRAIN_STEPS steps (sized_to)."""
    return ProjectionConfig(epochs=30, batch_size=128, photo_batch=64, replay_batch=256, lr=3e-4, seed=seed)


def sized_to(cfg: ProjectionConfig, rows: int, steps: int = TRAIN_STEPS) -> ProjectionConfig:
    """The recipe's length in steps, not epochs: about `steps` optimiser steps whatever the shop's
    size (never more than cfg.epochs), so a large shop moves the projection no further from the
    serving one than a small one. 30 epochs of a 10,000-product shop were 3x the steps of the
    3,000-product run, and the gate refused them (the demo exact combinations fell 0.04)."""
    per_epoch = -(-rows // cfg.batch_size)
    return replace(cfg, epochs=max(1, min(cfg.epochs, round(steps / per_epoch))))


ATTRIBUTE_FIELDS = ("color", "colour", "pattern", "material")  # graded nDCG: what a product may share beyond its kind


def shop_products(store_url: str, shop: str) -> list[dict]:
    """Every product of the shop that has a photo, from its live store (either kind):
    {id, title, image (bytes), category, attributes}; `category` is the field (else the title),
    attributes (category, colour, pattern, material) for the graded nDCG, a missing field never
    matching another product's."""
    from productsearch.catalog.store import open_store

    store = open_store(store_url, shop, create=False)
    try:
        products = store.products_with_photos()
    finally:
        store.close()
    out = []
    for p in products:
        fields = p["fields"]
        category = str(fields.get("category", p["title"]))
        rest = tuple(str(fields[f]) if f in fields else f"\0{p['id']}" for f in ATTRIBUTE_FIELDS)
        out.append({"id": p["id"], "title": p["title"], "image": p["image"], "category": category,
                    "attributes": (category, *rest)})
    return out


def _photos(products: list[dict], flip: bool = False) -> list:
    from PIL import Image

    images = [Image.open(io.BytesIO(p["image"])).convert("RGB") for p in products]
    return [im.transpose(Image.FLIP_LEFT_RIGHT) for im in images] if flip else images


def _embed(tower, feats) -> np.ndarray:
    from productsearch.training.demo_preset import embed

    return embed(tower, feats)


class HeldOutSets:
    """Backbone features of every held-out set, computed once (the backbone is frozen), so the
    serving and the adapted projection are measured on the same photos."""

    def __init__(self, tower, text_tower, shop_heldout: list[dict], demo_eval: int | None, fm_test: int | None,
                 text_weight: float, seed: int, log=print):
        from productsearch.demo import catalog as cat
        from productsearch.demo import fashion_mnist as fm
        from productsearch.demo.chinese import canonical_query_zh
        from productsearch.demo.paths import DEMO_CATALOG_DIR
        from productsearch.training.bilingual_quality import fresh_renders
        from productsearch.training.demo_preset import photo_features, render_features

        self.text_tower, self.w, self.shop = text_tower, text_weight, shop_heldout
        self.shop_feats = tower.pooled(_photos(shop_heldout))
        self.shop_titles = text_tower.encode([p["title"] for p in shop_heldout])
        catalog = cat.load_catalog(DEMO_CATALOG_DIR)
        rest = [p for p in catalog if not p["heldout"]]
        random.Random(seed).shuffle(rest)
        keep = {p["id"] for p in rest[:max(0, (demo_eval or len(catalog)) - (len(catalog) - len(rest)))]}
        self.demo = [p for p in catalog if p["heldout"] or p["id"] in keep]
        self.demo_titles = text_tower.encode([p["title"] for p in self.demo])
        self.demo_feats = render_features(tower, self.demo, DEMO_CATALOG_DIR)
        combos = sorted({cat.combo_of(p) for p in self.demo if p["heldout"]})
        self.demo_queries = {"en": text_tower.encode([cat.canonical_query(*c) for c in combos]),
                             "zh": text_tower.encode([canonical_query_zh(*c) for c in combos])}
        self.fresh_feats = tower.pooled(fresh_renders(combos, seed))
        self.fm = None
        try:
            images, labels = fm.load_split("test")
        except fm.MissingDataset as err:
            log(f"Fashion-MNIST rows skipped: {err}")
        else:
            rows = np.arange(len(images)) if not fm_test else np.random.default_rng(seed).permutation(len(images))[:fm_test]
            self.fm = (photo_features(tower, images[rows]), labels[rows].astype(np.int64))

    def measure(self, tower) -> dict:
        from productsearch.training.bilingual_quality import demo_metrics, photo_metrics

        out = shop_metrics(self.text_tower, _embed(tower, self.shop_feats), [p["title"] for p in self.shop],
                           self.shop_titles, [p["attributes"] for p in self.shop], self.w)
        demo_images = _embed(tower, self.demo_feats)
        out.update(demo_metrics(self.demo, self.demo_titles, demo_images, self.text_tower,
                                _embed(tower, self.fresh_feats), self.w))
        out.update(demo_fused_ndcg(self.demo, self.demo_titles, demo_images, self.demo_queries, self.w))
        if self.fm is not None:
            out.update(photo_metrics(self.text_tower, _embed(tower, self.fm[0]), self.fm[1]))
        return out


def replay_sources(tower, text_tower, renders: int | None, photos_per_class: int, seed: int):
    """What the serving tower was trained on, sampled: demo TRAINING renders (never a held-out
    combination) and Fashion-MNIST TRAIN photos, as (features, target rows, targets)."""
    import torch

    from productsearch.demo import catalog as cat
    from productsearch.demo import fashion_mnist as fm
    from productsearch.demo.paths import DEMO_CATALOG_DIR
    from productsearch.training.demo_preset import photo_features, render_features, train_photo_indices

    train = [p for p in cat.load_catalog(DEMO_CATALOG_DIR) if not p["heldout"]]
    random.Random(seed).shuffle(train)
    train = train[:renders or len(train)]
    combos = sorted({cat.combo_of(p) for p in train})
    index = {c: j for j, c in enumerate(combos)}
    replay = (render_features(tower, train, DEMO_CATALOG_DIR),
              torch.tensor([index[cat.combo_of(p)] for p in train]), combo_targets(combos, text_tower))
    images, labels = fm.load_split("train")
    rows = train_photo_indices(labels, photos_per_class, seed)
    photos = (photo_features(tower, images[rows]), torch.from_numpy(labels[rows].astype(np.int64)), class_targets(text_tower))
    return replay, photos


def training_device(requested: str) -> str:
    """auto: CUDA when torch sees a GPU, else the CPU; cuda without one is refused."""
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--train-device cuda: torch sees no GPU here (use auto or cpu)")
    return requested


def adapt(repository: Path, shop: str, store_url: str | None = None, heldout_share: float = 0.2, seed: int = 0,
          cfg: ProjectionConfig | None = None, replay_renders: int | None = None, photos_per_class: int = 200,
          demo_eval: int | None = None, fm_test: int | None = None, margin: float = MARGIN, threads: int = 1,
          device: str = "auto", steps: int | None = TRAIN_STEPS, progress: bool = True, log=print) -> dict:
    """Train, measure, gate, register. Returns the report; raises GateRefused (nothing written).
    `device`: where the backbone features and the training run (auto: the GPU when there is one);
    `steps`: the recipe's length (sized_to; None: cfg's epochs as they are)."""
    import torch

    from productsearch.catalog.store import catalog_url
    from productsearch.encoders.lite_tower import LiteImageTower
    from productsearch.encoders.loading import load_text_tower, tower_kind
    from productsearch.runtime.generation_settings import generation_text_weight

    torch.set_num_threads(threads)
    device = training_device(device)
    repository = Path(repository)
    if not built_generations(repository):
        raise SystemExit(f"{repository}: no built generation to adapt (build one first: build_models.py)")
    with adapting(repository, log):  # one run at a time; a stopped run's leftover removed
        started = time.perf_counter()
        serving = read_serving(repository).get("generation") or built_generations(repository)[-1]
        generation = pick_generation(repository, None, new=True)
        if tower_kind(repository / "image_encoder" / str(serving), "resnet")["kind"] != "lite0":
            raise SystemExit(f"generation {serving}'s image tower is not the lite0 tower: adapt trains its projection only")
        products = shop_products(store_url or catalog_url(repository), shop)
        train_ids, held_ids = split_ids([p["id"] for p in products], heldout_share, seed)
        if len(held_ids) < MIN_HELDOUT or not train_ids:
            raise SystemExit(f"shop {shop!r}: {len(products)} products with photos, {len(held_ids)} held out: "
                             f"too few to adapt (at least {MIN_HELDOUT} held out)")
        by_id = {p["id"]: p for p in products}
        train, held = [by_id[i] for i in train_ids], [by_id[i] for i in held_ids]
        log(f"shop {shop!r}: {len(products)} products with photos; {len(train)} train, {len(held)} held out "
            f"(share {heldout_share}, seed {seed}); serving generation {serving} -> candidate {generation}; on {device}")

        text_tower = load_text_tower(repository / "text_encoder" / str(serving), threads=threads)
        before_tower = LiteImageTower.load(repository / "image_encoder" / str(serving) / "image_tower", device=device)
        text_weight = generation_text_weight(repository, serving)
        sets = HeldOutSets(before_tower, text_tower, held, demo_eval, fm_test, text_weight, seed, log)
        replay, photos = replay_sources(before_tower, text_tower, replay_renders, photos_per_class, seed)
        titles = sorted({p["title"] for p in train})
        row = {t: j for j, t in enumerate(titles)}
        X = torch.cat([before_tower.pooled(_photos(train)), before_tower.pooled(_photos(train, flip=True))])
        y = torch.tensor([row[p["title"]] for p in train] * 2)
        log(f"features: {len(X)} shop photos (+ flips), {len(replay[0])} demo renders, {len(photos[0])} Fashion-MNIST "
            f"train photos ({time.perf_counter() - started:.0f}s)")

        cfg = cfg or default_config(seed)
        cfg = replace(sized_to(cfg, len(X), steps) if steps else cfg, warm_start=True)
        tower = copy.deepcopy(before_tower)
        history = train_projection(tower, X, y, text_tower.encode(titles), photos, cfg, log, replay=replay, progress=progress)
        before, after = sets.measure(before_tower), sets.measure(tower)
        report = {"shop": shop, "serving_generation": serving, "candidate_generation": generation,
                  "split": {"heldout_share": heldout_share, "seed": seed, "train": len(train), "heldout": len(held),
                            "heldout_ids": held_ids},
                  "train": {**cfg.asdict(), "threads": threads, "device": device, "replay_renders": len(replay[0]),
                            "fashion_mnist_photos": len(photos[0]), "loss": history["loss"], "seconds": history["seconds"]},
                  "evaluated": {"demo_products": len(sets.demo), "fashion_mnist_test": 0 if sets.fm is None else len(sets.fm[1])},
                  "margin": margin, "before": before, "after": after, "trust": trust_line(before)}
        log(format_table(before, after))
        if report["trust"]:
            log(report["trust"])
        failed = gate(before, after, margin)
        report["gate"] = {"passed": not failed, "failed": failed}
        if failed:
            log("gate REFUSED, nothing kept: " + "; ".join(failed))
            raise GateRefused("; ".join(failed))
        built_by = {"preset": "adapt", "shop": shop, "from_generation": serving, "seed": seed,
                    "heldout_share": heldout_share, "train": report["train"]}
        register(repository, generation, serving, tower.to("cpu"), built_by, text_weight)
        json_path = manifest_path(repository, generation).with_name(f"adapt-{generation}.json")
        report["seconds"] = round(time.perf_counter() - started, 1)
        write_report(report, json_path, json_path.with_suffix(".png"))
        log(f"gate passed: generation {generation} registered; report {json_path}; "
            f"next: python -m productsearch.control.deploy swap {generation}")
        return report


def add_arguments(parser, required: bool = True) -> None:
    parser.add_argument("--shop", required=required)
    parser.add_argument("--heldout", type=float, default=0.2, help="share of the shop's products held out")
    parser.add_argument("--adapt-epochs", type=int, default=None,
                        help=f"training epochs (default: about {TRAIN_STEPS} steps, at most 30 epochs)")
    parser.add_argument("--lr", type=float, default=default_config().lr)
    parser.add_argument("--replay-renders", type=int, default=None, help="demo training renders mixed in (default all)")
    parser.add_argument("--photos-per-class", type=int, default=200, help="Fashion-MNIST train photos mixed in")
    parser.add_argument("--demo-eval", type=int, default=None, help="demo products measured (default all)")
    parser.add_argument("--fm-test", type=int, default=None, help="Fashion-MNIST test photos measured (default all)")
    parser.add_argument("--margin", type=float, default=MARGIN)
    parser.add_argument("--train-device", default="auto", choices=["auto", "cpu", "cuda"],
                        help="where adapt computes features and trains (auto: the GPU when torch sees one)")


def run(args: argparse.Namespace, repository: Path) -> int:
    cfg = replace(default_config(args.seed), lr=args.lr)
    if args.adapt_epochs:
        cfg = replace(cfg, epochs=args.adapt_epochs)
    try:
        adapt(repository, args.shop, heldout_share=args.heldout, seed=args.seed, cfg=cfg,
              steps=None if args.adapt_epochs else TRAIN_STEPS,
              replay_renders=args.replay_renders, photos_per_class=args.photos_per_class, demo_eval=args.demo_eval,
              fm_test=args.fm_test, margin=args.margin, threads=args.threads, device=args.train_device)
    except GateRefused:
        return 1
    except UnknownShop as err:
        print(f"adapt refused: {err}", file=sys.stderr)
        return 2
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m productsearch.training.adapt", description=__doc__.split("\n")[0])
    add_arguments(parser)
    parser.add_argument("--model-repository", default=str(DEFAULT_MODEL_REPOSITORY))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (serving keeps the others)")
    args = parser.parse_args(argv)
    return run(args, Path(args.model_repository))


if __name__ == "__main__":
    sys.exit(main())
