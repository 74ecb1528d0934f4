"""The demo catalog's business fields: brand, SKU, variant group, rating, popularity and stock,
what a real catalog carries beside titles and photos (and what boosts, facets, the group cap and
product-code search work on). Each product's values come from its own seeded rng, so they never
change when the rest of the catalog does.
"""
from __future__ import annotations

import math
import random

from productsearch.demo.attributes import BRANDS

BUSINESS_VERSION = 1  # bump when these fields change, to rewrite catalog.jsonl
CATEGORY_CODES = {"t-shirt": "TS", "dress": "DR", "jeans": "JN", "sneakers": "SN", "handbag": "HB", "backpack": "BP",
                  "hat": "HT", "sunglasses": "SG", "watch": "WT", "mug": "MG", "lipstick": "LS", "water bottle": "WB"}
COLOR_CODES = {"red": "RD", "orange": "OR", "yellow": "YL", "green": "GN", "blue": "BL", "purple": "PU", "pink": "PK",
               "brown": "BR", "black": "BK", "white": "WH", "grey": "GY"}


def business_fields(product: dict, seed: int = 0) -> dict:
    """brand (the one its title or description names, else one of the generator's), sku
    ("TS-00042-RD": category, product number, colour), group (the variant group: every render of
    one category x colour x pattern), rating 1-5, popularity, stock (0 for ~15%)."""
    rng = random.Random(f"business:{seed}:{product['id']}")
    texts = [str(product.get(key, "")) for key in ("title", "description", "title_en", "description_en")]
    named = next((brand for text in texts for brand in BRANDS if brand in text), None)  # the served title first
    number = int("".join(c for c in product["id"] if c.isdigit()) or 0)
    category, color = product["category"], product["color"]
    return {
        "brand": named or rng.choice(BRANDS),
        "sku": f"{CATEGORY_CODES.get(category, 'XX')}-{number:05d}-{COLOR_CODES.get(color, 'XX')}",
        "group": f"{category}/{color}/{product['pattern']}",
        "rating": round(min(5.0, max(1.0, rng.gauss(4.0, 0.7))), 1),
        "popularity": int(math.exp(rng.gauss(4.0, 1.2))),
        "stock": 0 if rng.random() < 0.15 else rng.randint(1, 50),
    }


def with_business_fields(catalog: list[dict], seed: int = 0) -> list[dict]:
    return [{**product, **business_fields(product, seed)} for product in catalog]
