"""The text tower's served runtime, chosen by the build: export USE multilingual to ONNX (checked
equal to torch within 1e-4), quantize it to int8 (dynamic), and keep int8 only when the quality
gate passes: every figure of the held-out target table (demo held-out combinations, Fashion-MNIST
TEST) within GATE of the torch fp32 tower's (the fastest int8 variant that passes; else ONNX
Runtime fp32), the image side fixed (the served image tower's
embeddings). The figures, and the smallest cosine to torch on the held-out queries, go to
text_model/runtime.json and the generation's manifest (its encoder checksums cover the new files).
Re-run only this step on a built generation:

    python -m productsearch.training.text_runtime [--generation N] [--force]     # ~1-2 minutes
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from productsearch.training.bilingual_quality import LABELS, demo_metrics, fresh_renders, photo_metrics
from productsearch.encoders.use_onnx import (INT8_FILE, INT8_PROJ_FP32_FILE, INT8_VARIANTS, ONNX_FILE, RUNTIME_FILE, OrtUseTextTower, export_onnx,
                                             max_difference, min_cosine, quantize_int8, served_file, write_runtime)

GATE = 0.01
CANDIDATES = {"torch fp32": None, "ONNX Runtime fp32": ONNX_FILE, "ONNX Runtime int8 (dynamic)": INT8_FILE,
              "ONNX Runtime int8, input projection fp32": INT8_PROJ_FP32_FILE}
INT8_CANDIDATES = ("ONNX Runtime int8 (dynamic)", "ONNX Runtime int8, input projection fp32")  # the fastest first


def image_side(image_version_dir: Path, catalog: list[dict], catalog_dir: Path, seed: int) -> dict:
    """The served image tower's embeddings the gate holds fixed: catalog renders, one fresh render
    per held-out combination, the Fashion-MNIST TEST photos (absent when the dataset is)."""
    from PIL import Image

    from productsearch.demo import fashion_mnist as fm
    from productsearch.demo import catalog as cat
    from productsearch.encoders.loading import load_image_tower

    tower = load_image_tower(image_version_dir)
    renders = np.concatenate([tower.encode([Image.open(cat.image_path(catalog_dir, p)).convert("RGB")
                                            for p in catalog[s:s + 256]]) for s in range(0, len(catalog), 256)])
    combos = sorted({cat.combo_of(p) for p in catalog if p["heldout"]})
    side = {"renders": renders, "fresh": tower.encode(fresh_renders(combos, seed))}
    try:
        images, labels = fm.load_split("test")
    except fm.MissingDataset as err:
        print(f"text runtime gate: Fashion-MNIST rows skipped: {err}")
    else:
        side["photos"] = np.concatenate([tower.encode(fm.to_photos(images[s:s + 512])) for s in range(0, len(images), 512)])
        side["labels"] = labels.astype(np.int64)
    return side


def quality(text_tower, catalog: list[dict], side: dict, text_weight: float) -> dict:
    titles = text_tower.encode([p["title"] for p in catalog])
    metrics = demo_metrics(catalog, titles, side["renders"], text_tower, side["fresh"], text_weight)
    if "photos" in side:
        metrics.update(photo_metrics(text_tower, side["photos"], side["labels"]))
    return metrics


def heldout_queries(catalog: list[dict]) -> list[str]:
    from productsearch.demo import fashion_mnist as fm
    from productsearch.demo.catalog import canonical_query, combo_of
    from productsearch.demo.chinese import canonical_query_zh

    combos = sorted({combo_of(p) for p in catalog if p["heldout"]})
    return ([canonical_query(*c) for c in combos] + [canonical_query_zh(*c) for c in combos]
            + [t for sets in (fm.EVAL_QUERIES_EN, fm.EVAL_QUERIES_ZH) for phrasings in sets for t in phrasings])


def choose_text_runtime(model_dir: Path, torch_tower, catalog: list[dict], side_of, text_weight: float,
                        force: bool = False) -> dict:
    """Export + quantize + gate once per text_model/ (runtime.json kept unless `force`); returns
    runtime.json's content. `side_of()` computes the image side only when the gate has to run."""
    import json

    model_dir = Path(model_dir)
    if served_file(model_dir) and not force:
        return json.loads((model_dir / RUNTIME_FILE).read_text())
    export_onnx(torch_tower, model_dir)
    for file in INT8_VARIANTS:
        quantize_int8(model_dir, file)
    side, queries = side_of(), heldout_queries(catalog)
    reference = torch_tower.encode(queries)
    gate = {"tolerance": GATE, "metrics": {}, "min_cosine_heldout_queries": {}, "max_abs_difference_check_texts": {}}
    for name, file in CANDIDATES.items():
        tower = torch_tower if file is None else OrtUseTextTower(model_dir, file, threads=1)
        gate["metrics"][name] = quality(tower, catalog, side, text_weight)
        gate["min_cosine_heldout_queries"][name] = round(min_cosine(tower.encode(queries), reference), 5)
        gate["max_abs_difference_check_texts"][name] = float(f"{max_difference(torch_tower, tower):.2e}")
    base = gate["metrics"]["torch fp32"]
    gate["max_change"] = {name: round(max(abs(m[k] - base[k]) for k in base), 4) for name, m in gate["metrics"].items()}
    passing = [name for name in INT8_CANDIDATES if gate["max_change"][name] <= GATE]
    rejected = [f"{name}: a figure moved {gate['max_change'][name]:.3f} (> {GATE})" for name in INT8_CANDIDATES
                if name not in passing]
    serve = CANDIDATES[passing[0]] if passing else ONNX_FILE
    gate["decision"] = "; ".join(rejected + [f"serving {passing[0] if passing else 'ONNX Runtime fp32'}"
                                             + (f" (every figure within {GATE} of torch fp32)" if passing else "")])
    for file in INT8_VARIANTS:  # keep the fp32 export and the served file only
        if file != serve:
            (model_dir / file).unlink(missing_ok=True)
    write_runtime(model_dir, serve, gate)
    return {"serve": serve, "gate": gate}


def format_gate(runtime: dict) -> str:
    gate = runtime["gate"]
    names = list(gate["metrics"])
    lines = ["| query set (P@10) | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for key in gate["metrics"][names[0]]:
        lines.append(f"| {LABELS.get(key, key)} | " + " | ".join(f"{gate['metrics'][n][key]:.3f}" for n in names) + " |")
    lines.append("| largest change vs torch fp32 | " + " | ".join(f"{gate['max_change'][n]:.3f}" for n in names) + " |")
    lines.append("| min cosine to torch, held-out queries | "
                 + " | ".join(f"{gate['min_cosine_heldout_queries'][n]:.4f}" for n in names) + " |")
    return "\n".join(lines) + f"\n\nserved: {runtime['serve']} ({gate['decision']})"


def main(argv: list[str] | None = None) -> int:
    """Re-run the export and gate on a built demo generation (its catalog and image tower as built)."""
    from productsearch.training.minilm_preset import RENDERS_PER_COMBO
    from productsearch.demo import catalog as cat
    from productsearch.demo.chinese import ZH_FRACTION
    from productsearch.control.paths import DEFAULT_MODEL_REPOSITORY, DEMO_CATALOG_DIR
    from productsearch.encoders.use_multilingual import UseTextTower
    from productsearch.control.generations import read_manifest, record_encoders
    from productsearch.control.repository import latest_generation
    from productsearch.runtime.generation_settings import generation_text_weight

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=str(DEFAULT_MODEL_REPOSITORY))
    parser.add_argument("--catalog-dir", default=str(DEMO_CATALOG_DIR))
    parser.add_argument("--generation", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--force", action="store_true", help="export and gate again even when runtime.json exists")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    out = Path(args.out)
    generation = args.generation or latest_generation(out)
    catalog = cat.generate_catalog(Path(args.catalog_dir), RENDERS_PER_COMBO, args.seed, zh_fraction=ZH_FRACTION)
    model_dir = out / "text_encoder" / str(generation) / "text_model"
    w = generation_text_weight(out, generation)
    runtime = choose_text_runtime(model_dir, UseTextTower(model_dir), catalog,
                                  lambda: image_side(out / "image_encoder" / str(generation), catalog,
                                                     Path(args.catalog_dir), args.seed), w, force=args.force)
    manifest = read_manifest(out, generation)  # the new files are part of the generation's encoders
    record_encoders(out, generation, {**manifest.get("built_by", {}), "text_runtime": runtime["serve"],
                                      "text_runtime_gate": runtime["gate"]["max_change"]}, manifest.get("fusion"))
    print(format_gate(runtime))
    return 0


if __name__ == "__main__":
    sys.exit(main())
