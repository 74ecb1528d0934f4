#!/usr/bin/env python3
"""Build the model weights the Triton model repository serves, one generation at a time.

  --preset demo (default, offline): USE multilingual + EfficientNet-Lite0, bilingual catalog
    (productsearch/training/demo_preset.py)
  --preset demo-minilm (offline): MiniLM + a from-scratch ResNet, English (productsearch/training/minilm_preset.py)
  --preset clip | chinese-clip | bert-resnet: real checkpoints (productsearch/training/presets.py)
  --preset adapt --shop S: the serving image tower adapted to shop S's live catalog, registered as a
    new generation only if its gate passes (productsearch/training/adapt.py; torch on 1 thread)
`--new-generation` writes generation N+1 (`<model>/N+1/`) beside the serving one; each
generation gets a manifest (generations/N.json: what built it, encoder checksums). The catalog
is indexed through the running server (clients/index.py); config.pbtxt files belong to the
repository.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))  # the shared package sits beside this script

from productsearch.training.minilm_preset import RENDERS_PER_COMBO, build_demo  # noqa: E402
from productsearch.training.demo_preset import build_multilingual_demo  # noqa: E402
from productsearch.training.generation import finish_generation, pick_generation, resolve_device  # noqa: E402
from productsearch.training.presets import PRESETS  # noqa: E402
from productsearch.training.adapt import add_arguments as adapt_arguments, run as run_adapt  # noqa: E402
from productsearch.demo.catalog import generate_catalog  # noqa: E402
from productsearch.control.paths import DEFAULT_MODEL_REPOSITORY, DEMO_CATALOG_DIR  # noqa: E402


def build_checkpoint_preset(args: argparse.Namespace) -> int:
    """clip / chinese-clip / bert-resnet from real checkpoints, as a new generation by default."""
    from productsearch.training import presets

    if not args.checkpoint:
        raise SystemExit(f"--preset {args.preset} needs --checkpoint (a local directory or a hub name)")
    out = Path(args.out)
    generation = pick_generation(out, args.generation, args.new_generation, default_new=True)
    print(f"generation {generation}: preset {args.preset} from {args.checkpoint}")
    if args.preset in ("clip", "chinese-clip"):
        presets.build_dual_encoder(args.preset, args.checkpoint, out, generation)
    else:
        # the demo catalog as it is (bilingual after --preset demo): this preset does not choose its language
        products = generate_catalog(args.catalog_dir, renders_per_combo=RENDERS_PER_COMBO, seed=args.seed, zh_fraction=None)
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
    parser.add_argument("--out", default=str(DEFAULT_MODEL_REPOSITORY),
                        help="model repository root (only <model>/1/<weights dir> is written)")
    parser.add_argument("--catalog-dir", default=str(DEMO_CATALOG_DIR))
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
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (results are reproducible per thread count); "
                             "default: every core, 1 for --preset adapt (serving keeps the others)")
    parser.add_argument("--strict", action="store_true",
                        help="exit 1 when a quality target is not met")
    adapt_arguments(parser.add_argument_group("--preset adapt"), required=False)
    args = parser.parse_args(argv)
    if args.threads is None:
        args.threads = 1 if args.preset == "adapt" else len(os.sched_getaffinity(0))
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    args.device = resolve_device(args.device)
    if args.preset == "demo":
        return build_multilingual_demo(args)
    if args.preset == "demo-minilm":
        return build_demo(args)
    if args.preset == "adapt":
        if not args.shop:
            raise SystemExit("--preset adapt needs --shop")
        return run_adapt(args, Path(args.out))
    return build_checkpoint_preset(args)


if __name__ == "__main__":
    sys.exit(main())
