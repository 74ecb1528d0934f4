"""The demo world's vocabulary: categories, colours, patterns, brands, materials, prices, and
which (category, colour, pattern) combinations are held out. The generator, the Chinese text and
the business fields all read it (so none of them imports another).
"""
from __future__ import annotations

import math
import random
from itertools import product as cartesian
from typing import Iterable

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
