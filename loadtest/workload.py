"""Queries drawn from the demo catalog: shared by the benchmark harness and the Locust file.

The text queries are the full set a shopper of the demo shop could type about its kinds of
product: every category, colour + category and colour + pattern + category phrase the catalog
holds, in English and in Chinese (the demo's own Chinese phrases), each alone and after each of
the shop's brands - 7,560 distinct texts in a fixed shuffled order. That is more than the scorer's
lexical cache holds (4,096 texts), so a benchmark pays for new texts as a shop's long tail does:
a client cycling through the set never hits the cache; random picks hit it about half the time.
Only the standard library and the demo's vocabulary, so Locust's gevent workers can import it.
"""
from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEMO_CATALOG = ROOT / "data" / "demo_catalog" / "catalog.jsonl"
QUERY_KINDS = ("text", "image", "text+image")


@dataclass
class Workload:
    """Text queries from the catalog's vocabulary and photos from its renders."""

    texts: list[str]
    images: list[bytes]
    titles: list[str]
    seed: int = 0
    ids: list[str] = field(default_factory=list)  # of the products whose photos are in `images`
    categories: list[str] = field(default_factory=list)

    @classmethod
    def texts_only(cls, catalog_path: Path = DEMO_CATALOG) -> list[str]:
        """The full text query set, without reading any photo."""
        return text_queries([json.loads(line) for line in Path(catalog_path).read_text().splitlines() if line])

    @classmethod
    def from_catalog(cls, catalog_path: Path = DEMO_CATALOG, images: int = 200, seed: int = 0) -> "Workload":
        products = [json.loads(line) for line in Path(catalog_path).read_text().splitlines() if line]
        rng = random.Random(seed)
        texts = text_queries(products)
        picked = rng.sample(products, min(images, len(products)))
        photos = []
        for product in picked:
            path = Path(product["image"])
            photos.append((path if path.is_absolute() else Path(catalog_path).parent / path).read_bytes())
        return cls(texts=texts, images=photos, titles=[p["title"] for p in picked], seed=seed,
                   ids=[p["id"] for p in picked], categories=sorted({p["category"] for p in products}))

    def query(self, kind: str, rng: random.Random) -> tuple[str, bytes]:
        """(text, image bytes) for one query of `kind`; the absent modality is empty."""
        if kind == "text":
            return rng.choice(self.texts), b""
        if kind == "image":
            return "", rng.choice(self.images)
        if kind == "text+image":
            return rng.choice(self.texts).split()[0], rng.choice(self.images)
        if kind == "encode":
            index = rng.randrange(len(self.images))
            return self.titles[index], self.images[index]
        raise ValueError(f"unknown query kind {kind!r}")


def text_queries(products: list[dict]) -> list[str]:
    """Every phrase of the catalog's combinations, in English and Chinese, alone and after each
    brand, in a fixed shuffled order (deterministic, languages and kinds mixed)."""
    from productsearch.demo.chinese import CATEGORY_ZH, canonical_query_zh

    combos = {(p["category"], p["color"], p["pattern"]) for p in products}
    shapes = {(k, c, "plain") for k, c, _ in combos} | combos  # colour + category, and with the pattern
    english = {k for k, _, _ in combos} | {f"{c} {k}" if p == "plain" else f"{c} {p} {k}" for k, c, p in shapes}
    chinese = {CATEGORY_ZH[k][0] for k, _, _ in combos} | {canonical_query_zh(k, c, p) for k, c, p in shapes}
    brands = sorted({p["brand"] for p in products if p.get("brand")})
    phrases = sorted(english | chinese)
    texts = phrases + [f"{brand} {phrase}" for brand in brands for phrase in phrases]
    random.Random(0).shuffle(texts)
    return texts
