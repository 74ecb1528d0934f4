"""Deterministic demo catalog: products with known attributes, titles written from them, photos
rendered from them (demo/render.py); the vocabulary is demo/attributes.py.

Every product is one (category, colour, pattern) combination plus random size, position,
rotation, background and shade. Because the attributes are known, retrieval quality can be
measured exactly; a held-out set of combinations (never trained on, still in the catalog) makes
that measurement honest about generalisation to unseen combinations.

Layout written by `generate_catalog(out_dir)`:
  <out_dir>/catalog.jsonl       one product per line; `image` is RELATIVE to out_dir
  <out_dir>/catalog_meta.json   generation parameters, so a rerun with the same ones is skipped
  <out_dir>/images/<id>.png     IMAGE_SIZE x IMAGE_SIZE RGB PNG
"""
from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Iterable

from productsearch.demo.attributes import (  # noqa: F401 - the generator's public vocabulary
    CATEGORIES, COLORS, PATTERNS, PRICE_RANGE, MATERIAL, USE, BRANDS, PATTERN_ADJ, PATTERN_WITH, HELDOUT_FRACTION, combos, heldout_combos, canonical_query)
from productsearch.demo.chinese import mixed_language_catalog
from productsearch.demo.business import BUSINESS_VERSION, with_business_fields
from productsearch.demo.render import IMAGE_SIZE, render_product

CATALOG_VERSION = 2  # bump when rendering or text generation changes, to force regeneration

TITLE_TEMPLATES = (
    "{Color} {adj} {cat}",
    "{Adj} {material} {cat} in {color}",
    "Classic {color} {cat}{with}",
    "{brand} {color} {adj} {cat}",
    "{Color} {cat}{with}",
    "Everyday {adj} {cat} in {color}",
)
DESCRIPTION_TEMPLATES = (
    "A {color} {cat}{with}. {Material} finish, with {use}.",
    "This {adj} {cat} comes in {color}. It offers {use}.",
    "{Use}: our {color} {cat}{with}, from the {brand} range.",
    "{Color} {material} {cat}{with}. Features {use}.",
)


# ---------------------------------------------------------------------------------------------
# Text
# ---------------------------------------------------------------------------------------------

def _fill(template: str, category: str, color: str, pattern: str, rng: random.Random) -> str:
    adj = rng.choice(PATTERN_ADJ[pattern])
    values = {
        "color": color, "cat": category, "adj": adj, "with": rng.choice(PATTERN_WITH[pattern]),
        "material": rng.choice(MATERIAL[category]), "brand": rng.choice(BRANDS),
        "use": USE[category],
    }
    text = template.format(
        Color=color.capitalize(), Adj=adj.capitalize(), Use=values["use"].capitalize(),
        Material=values["material"].capitalize(), **values
    )
    text = " ".join(text.split()).replace(" .", ".")  # empty slots leave no double spaces
    return text[0].upper() + text[1:]


def make_title(category: str, color: str, pattern: str, rng: random.Random) -> str:
    """A varied product title that always contains the category and colour words."""
    return _fill(rng.choice(TITLE_TEMPLATES), category, color, pattern, rng)


def make_description(category: str, color: str, pattern: str, rng: random.Random) -> str:
    """A one-to-two sentence description, also written from the attributes."""
    return _fill(rng.choice(DESCRIPTION_TEMPLATES), category, color, pattern, rng)


def make_price(category: str, rng: random.Random) -> float:
    low, high = PRICE_RANGE[category]
    return round(rng.randint(low + 1, high) - 0.01, 2)


# ---------------------------------------------------------------------------------------------
# Catalog
# ---------------------------------------------------------------------------------------------

def _meta(renders_per_combo: int, seed: int, categories: Iterable[str], zh_fraction: float = 0.0) -> dict:
    meta = {"version": CATALOG_VERSION, "renders_per_combo": renders_per_combo, "seed": seed,
            "categories": list(categories), "image_size": IMAGE_SIZE, "business": BUSINESS_VERSION}
    return {**meta, "zh_fraction": round(zh_fraction, 6)} if zh_fraction else meta


def _write_jsonl(out: Path, catalog: list[dict], meta: dict) -> None:
    jsonl_path = out / "catalog.jsonl"
    tmp = jsonl_path.with_suffix(".jsonl.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for p in catalog:
            f.write(json.dumps(p, ensure_ascii=False) + "\n")
    os.replace(tmp, jsonl_path)
    (out / "catalog_meta.json").write_text(json.dumps(meta, indent=1))


def _with_languages(catalog: list[dict], seed: int, zh_fraction: float) -> list[dict]:
    """English catalog -> about `zh_fraction` of it served in Chinese (demo/chinese.py); 0: English only."""
    if not zh_fraction:
        return [{k: v for k, v in {**p, "title": p.get("title_en", p["title"]),
                                   "description": p.get("description_en", p["description"])}.items()
                 if k not in ("title_en", "description_en", "title_zh", "description_zh", "lang")} for p in catalog]
    return mixed_language_catalog(catalog, seed, zh_fraction)


def generate_catalog(out_dir: str | os.PathLike, renders_per_combo: int = 10, seed: int = 0,
                     categories: Iterable[str] = CATEGORIES, zh_fraction: float | None = 0.0) -> list[dict]:
    """Write (or reuse) the demo catalog in `out_dir` and return its products.

    Reuses an existing catalog when catalog_meta.json matches the parameters; when only
    `zh_fraction` (the share of products served in Chinese, demo/chinese.py) or the business fields'
    version (demo/business.py: brand, sku, group, rating, popularity, stock) differ, the renders
    are kept and only catalog.jsonl is rewritten. `zh_fraction=None` keeps whatever share an existing
    catalog has (a new one is English): for builds that share the demo catalog without choosing
    its language (bert-resnet). `categories` allows small catalogs for tests. Each
    product's rng is seeded from (seed, combo, render), so a product does not change when other
    parts of the catalog do.
    """
    out = Path(out_dir)
    categories = list(categories)
    if zh_fraction is None:
        try:
            zh_fraction = float(json.loads((out / "catalog_meta.json").read_text()).get("zh_fraction", 0.0))
        except (FileNotFoundError, ValueError):
            zh_fraction = 0.0
    meta = _meta(renders_per_combo, seed, categories, zh_fraction)
    meta_path, jsonl_path = out / "catalog_meta.json", out / "catalog.jsonl"
    if meta_path.exists() and jsonl_path.exists():
        try:
            old = json.loads(meta_path.read_text())
        except json.JSONDecodeError:
            old = {}
        text_only = ("zh_fraction", "business")  # a change here rewrites the JSONL, not the renders
        base = {k: v for k, v in meta.items() if k not in text_only}
        if {k: v for k, v in old.items() if k not in text_only} == base:
            catalog = load_catalog(jsonl_path)
            if all((out / p["image"]).exists() for p in catalog):
                if old != meta:
                    catalog = with_business_fields(_with_languages(catalog, seed, zh_fraction), seed)
                    _write_jsonl(out, catalog, meta)
                return catalog

    (out / "images").mkdir(parents=True, exist_ok=True)
    heldout = heldout_combos(seed)
    catalog = []
    for cat, col, pat in combos(categories):
        for r in range(renders_per_combo):
            rng = random.Random(f"{seed}:{cat}:{col}:{pat}:{r}")
            pid = f"P{len(catalog) + 1:05d}"
            rel = f"images/{pid}.png"
            render_product(cat, col, pat, rng).save(out / rel, optimize=False, compress_level=1)
            catalog.append({
                "id": pid,
                "title": make_title(cat, col, pat, rng),
                "description": make_description(cat, col, pat, rng),
                "category": cat, "color": col, "pattern": pat,
                "price": make_price(cat, rng),
                "image": rel,
                "heldout": (cat, col, pat) in heldout,
            })
    catalog = with_business_fields(_with_languages(catalog, seed, zh_fraction), seed)
    _write_jsonl(out, catalog, meta)
    return catalog


def load_catalog(path: str | os.PathLike) -> list[dict]:
    """Read catalog.jsonl (a path to the file or to its directory)."""
    path = Path(path)
    if path.is_dir():
        path = path / "catalog.jsonl"
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def image_path(catalog_dir: str | os.PathLike, product: dict) -> Path:
    """Absolute image path of a product (`image` is stored relative to the catalog dir)."""
    return Path(catalog_dir) / product["image"]


def combo_of(product: dict) -> tuple[str, str, str]:
    return (product["category"], product["color"], product["pattern"])
