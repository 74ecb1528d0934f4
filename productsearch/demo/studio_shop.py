"""A test shop of studio photos (home goods on dark backdrops, studio_render.py): the kind of
catalog the towers never saw, for adapting them to a shop. Each product has a title and a
description in English or Chinese (a third Chinese, like the demo), its kind as `category`, its
colour, and a PNG photo. Deterministic per seed; nothing is written to disk.
"""
from __future__ import annotations

import io
import random

from productsearch.demo.chinese import COLOR_ZH
from productsearch.demo.render import RGB
from productsearch.demo.studio_render import STUDIO_KINDS, render_studio

ZH_SHARE = 1 / 3
STYLES_EN = ("Handmade", "Modern", "Classic", "Minimal", "Studio")
STYLES_ZH = ("手工", "现代", "经典", "简约", "北欧")


def studio_title(kind: str, color: str, lang: str, style: int = 0) -> str:
    """'Modern blue vase' / '现代蓝色花瓶'."""
    if lang == "zh":
        return f"{STYLES_ZH[style]}{COLOR_ZH[color][0]}{STUDIO_KINDS[kind][1]}"
    return f"{STYLES_EN[style]} {color} {STUDIO_KINDS[kind][0]}"


def studio_query(kind: str, color: str, lang: str) -> str:
    """What a shopper types for it: 'blue vase' / '蓝色花瓶'."""
    if lang == "zh":
        return f"{COLOR_ZH[color][0]}{STUDIO_KINDS[kind][1]}"
    return f"{color} {STUDIO_KINDS[kind][0]}"


def _png(image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def studio_products(count: int = 400, seed: int = 0) -> list[dict]:
    """`count` products {"id", "title", "image" (PNG bytes), "fields": {category, color,
    description, lang}}; ids S00001..; kinds and colours cycle so every kind has every colour."""
    rng = random.Random(f"studio-shop:{seed}")
    kinds, colors = sorted(STUDIO_KINDS), sorted(RGB)
    products = []
    for n in range(count):
        kind, color = kinds[n % len(kinds)], colors[(n // len(kinds)) % len(colors)]
        lang = "zh" if rng.random() < ZH_SHARE else "en"
        style = rng.randrange(len(STYLES_EN))
        description = (f"一款{COLOR_ZH[color][0]}的{STUDIO_KINDS[kind][1]}，适合客厅和卧室。" if lang == "zh"
                       else f"A {color} {STUDIO_KINDS[kind][0]} for the living room or the bedroom.")
        products.append({"id": f"S{n + 1:05d}", "title": studio_title(kind, color, lang, style),
                         "image": _png(render_studio(kind, color, rng)),
                         "fields": {"category": kind, "color": color, "description": description, "lang": lang}})
    return products
