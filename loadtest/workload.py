"""Queries drawn from the demo catalog: shared by the benchmark harness and the Locust file.

Only numpy and the standard library, so Locust's gevent workers can import it.
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
    def from_catalog(cls, catalog_path: Path = DEMO_CATALOG, images: int = 200, seed: int = 0) -> "Workload":
        products = [json.loads(line) for line in Path(catalog_path).read_text().splitlines() if line]
        rng = random.Random(seed)
        texts = sorted({
            f"{p['color']} {p['category']}" if p["pattern"] == "plain" else f"{p['color']} {p['pattern']} {p['category']}"
            for p in products
        } | {f"{p['color']} {p['category']}" for p in products} | {p["category"] for p in products})
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
