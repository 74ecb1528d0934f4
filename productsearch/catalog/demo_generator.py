"""Deterministic demo catalog: products with known attributes, titles written from them, photos
rendered from them (demo_render).

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
import math
import os
import random
from itertools import product as cartesian
from pathlib import Path
from typing import Iterable

from productsearch.catalog.demo_business import BUSINESS_VERSION, with_business_fields
from productsearch.catalog.demo_render import IMAGE_SIZE, render_product

CATEGORIES = (
    "t-shirt", "dress", "jeans", "sneakers", "handbag", "backpack",
    "hat", "sunglasses", "watch", "mug", "lipstick", "water bottle",
)
COLORS = (
    "red", "orange", "yellow", "green", "blue", "purple",
    "pink", "brown", "black", "white", "grey",
)
PATTERNS = ("plain", "striped", "polka-dot", "checked")

HELDOUT_FRACTION = 0.10
CATALOG_VERSION = 2  # bump when rendering or text generation changes, to force regeneration

PRICE_RANGE = {  # (low, high) in currency units, per category
    "t-shirt": (9, 35), "dress": (25, 120), "jeans": (30, 110), "sneakers": (40, 160),
    "handbag": (35, 250), "backpack": (25, 140), "hat": (12, 60), "sunglasses": (15, 180),
    "watch": (40, 400), "mug": (6, 25), "lipstick": (8, 40), "water bottle": (10, 45),
}

MATERIAL = {
    "t-shirt": ("cotton", "organic cotton", "jersey"), "dress": ("linen", "chiffon", "cotton"),
    "jeans": ("denim", "stretch denim"), "sneakers": ("canvas", "leather", "mesh"),
    "handbag": ("leather", "vegan leather", "suede"), "backpack": ("nylon", "canvas"),
    "hat": ("wool", "felt", "straw"), "sunglasses": ("acetate", "recycled acetate"),
    "watch": ("stainless steel", "titanium"), "mug": ("ceramic", "stoneware", "porcelain"),
    "lipstick": ("matte", "satin", "creamy"), "water bottle": ("stainless steel", "insulated"),
}
USE = {  # noun phrases: "with ...", "it offers ...", "features ..."
    "t-shirt": "a relaxed everyday fit", "dress": "a light, airy cut for warm days",
    "jeans": "a comfortable five-pocket fit", "sneakers": "cushioned soles for all-day walking",
    "handbag": "room for the daily essentials", "backpack": "a padded laptop sleeve",
    "hat": "a classic brim that shades the eyes", "sunglasses": "UV400 protective lenses",
    "watch": "a clear dial and a comfortable strap", "mug": "a generous 350 ml capacity",
    "lipstick": "long-lasting colour", "water bottle": "double walls that keep drinks cold",
}
BRANDS = ("Nordia", "Calloway", "Brightline", "Mossgrove", "Urbanite", "Kestrel")

# How each pattern is written: adjective forms, and "with ..." noun forms.
PATTERN_ADJ = {
    "plain": ("plain", "solid", ""), "striped": ("striped",),
    "polka-dot": ("polka-dot",), "checked": ("checked",),
}
PATTERN_WITH = {
    "plain": ("", " in a solid colour"), "striped": (" with stripes",),
    "polka-dot": (" with polka dots",), "checked": (" with a checked pattern",),
}
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


def combos(categories: Iterable[str] = CATEGORIES) -> list[tuple[str, str, str]]:
    """All (category, colour, pattern) combinations, in a fixed order."""
    return list(cartesian(categories, COLORS, PATTERNS))


def heldout_combos(seed: int = 0) -> set[tuple[str, str, str]]:
    """About 10% of all combinations, never trained on.

    Picked greedily from a seeded shuffle so that no (category, colour) pair is held out twice
    and no category, colour or pattern is over-represented: every attribute value and every
    (category, colour) pair still occurs in training, so held-out combos are new compositions
    of seen parts.
    """
    candidates = combos()
    random.Random(f"heldout:{seed}").shuffle(candidates)
    target = round(HELDOUT_FRACTION * len(candidates))
    per_cat = math.ceil(target / len(CATEGORIES))
    per_col = math.ceil(target / len(COLORS))
    per_pat = math.ceil(target / len(PATTERNS))
    chosen: set[tuple[str, str, str]] = set()
    count: dict[object, int] = {}
    for cat, col, pat in candidates:
        keys = [("cat", cat), ("col", col), ("pat", pat), ("cat-col", cat, col),
                ("cat-pat", cat, pat), ("col-pat", col, pat)]
        limits = [per_cat, per_col, per_pat, 1, 2, 2]
        if all(count.get(k, 0) < lim for k, lim in zip(keys, limits)):
            chosen.add((cat, col, pat))
            for k in keys:
                count[k] = count.get(k, 0) + 1
        if len(chosen) == target:
            break
    return chosen


def canonical_query(category: str, color: str, pattern: str) -> str:
    """The plain phrase a shopper would type: 'red striped t-shirt', 'plain red t-shirt'."""
    if pattern == "plain":
        return f"plain {color} {category}"
    return f"{color} {pattern} {category}"


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
    """English catalog -> about `zh_fraction` of it served in Chinese (demo_zh); 0: English only."""
    if not zh_fraction:
        return [{k: v for k, v in {**p, "title": p.get("title_en", p["title"]),
                                   "description": p.get("description_en", p["description"])}.items()
                 if k not in ("title_en", "description_en", "title_zh", "description_zh", "lang")} for p in catalog]
    from productsearch.catalog.demo_zh import mixed_language_catalog

    return mixed_language_catalog(catalog, seed, zh_fraction)


def generate_catalog(out_dir: str | os.PathLike, renders_per_combo: int = 10, seed: int = 0,
                     categories: Iterable[str] = CATEGORIES, zh_fraction: float | None = 0.0) -> list[dict]:
    """Write (or reuse) the demo catalog in `out_dir` and return its products.

    Reuses an existing catalog when catalog_meta.json matches the parameters; when only
    `zh_fraction` (the share of products served in Chinese, demo_zh) or the business fields'
    version (demo_business: brand, sku, group, rating, popularity, stock) differ, the renders
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
