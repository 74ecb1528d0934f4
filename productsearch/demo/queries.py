"""The demo held-out query set for the evaluation harness (productsearch/evaluation/search_quality.py reads the file).

    python -m productsearch.demo.queries data/demo_queries.jsonl [--catalog ...]

Written from the demo catalog's held-out combinations (never trained on); the query file format
is the harness's (productsearch/evaluation/search_quality.py docstring).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import sys
from pathlib import Path

from productsearch.demo.catalog import canonical_query, combo_of
from productsearch.demo.paths import DEMO_CATALOG

MODIFIER_TEXT_WEIGHT = 0.9  # demo "like this, but in <colour>" queries: best of 0.5-1.0 (BENCHMARKS.md)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def make_demo_queries(catalog_path: Path, out_path: Path, seed: int = 0) -> list[dict]:
    """The demo held-out set: for each held-out (category, colour, pattern) combination,
    - text: the canonical phrase; relevant = every catalog product of the combination;
    - image: the photo of one product of the combination; relevant = the other products of the
      combination, and the query product itself is excluded from the ranking (finding its own
      photo proves nothing);
    - text+image: "colour category" words plus that same photo; relevant = every product of the
      combination (the query product included: the words alone do not name the pattern);
    - modifier: the photo of a product of the same category and pattern in ANOTHER colour plus
      "like this, but in <colour>", with TEXT_WEIGHT MODIFIER_TEXT_WEIGHT; relevant = every
      product of the combination (the photo's product excluded).
    Image paths are written relative to the query file's folder."""
    catalog_path, out_path = Path(catalog_path), Path(out_path)
    products = read_jsonl(catalog_path)
    by_combo: dict[tuple, list[dict]] = {}
    for product in products:
        if product.get("heldout"):
            by_combo.setdefault(combo_of(product), []).append(product)
    if not by_combo:
        raise ValueError(f"{catalog_path} has no held-out products")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    queries = []
    for combo in sorted(by_combo):
        category, color, pattern = combo
        members = sorted(by_combo[combo], key=lambda p: p["id"])
        ids = [p["id"] for p in members]
        pick = random.Random(f"evaluate:{seed}:{'|'.join(combo)}").choice(members)
        image = catalog_path.parent / pick["image"]
        image_rel = os.path.relpath(image.resolve(), out_path.parent.resolve())
        slug = "-".join(combo).replace(" ", "_")
        queries.append({"id": f"text:{slug}", "text": canonical_query(*combo), "relevant": ids})
        queries.append({"id": f"image:{slug}", "image": image_rel, "query_product": pick["id"],
                        "relevant": [i for i in ids if i != pick["id"]], "exclude": [pick["id"]]})
        queries.append({"id": f"text+image:{slug}", "text": f"{color} {category}", "image": image_rel,
                        "query_product": pick["id"], "relevant": ids})
        # the photo of the same kind of product in another colour, and words asking for this colour
        others = sorted((p for p in products if combo_of(p)[0] == category and combo_of(p)[2] == pattern
                         and combo_of(p)[1] != color), key=lambda p: p["id"])
        if others:
            other = random.Random(f"evaluate-modifier:{seed}:{'|'.join(combo)}").choice(others)
            other_rel = os.path.relpath((catalog_path.parent / other["image"]).resolve(), out_path.parent.resolve())
            queries.append({"id": f"modifier:{slug}", "kind": "modifier", "text": f"like this, but in {color}",
                            "image": other_rel, "text_weight": MODIFIER_TEXT_WEIGHT, "query_product": other["id"],
                            "relevant": ids, "exclude": [other["id"]]})
    out_path.write_text("".join(json.dumps(q) + "\n" for q in queries))
    return queries


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m productsearch.demo.queries", description=__doc__.split("\n")[0])
    parser.add_argument("out", type=Path, help="query set to write (JSONL)")
    parser.add_argument("--catalog", type=Path, default=DEMO_CATALOG)
    parser.add_argument("--seed", type=int, default=0, help="which product's photo is the query")
    args = parser.parse_args(argv)
    queries = make_demo_queries(args.catalog, args.out, args.seed)
    print(f"wrote {len(queries)} queries (held-out combinations x text, image, text+image, modifier) to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
