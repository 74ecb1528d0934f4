"""A second photo style for adaptation tests: home goods on dark gradient studio backdrops with a
side light, kinds and scenes the towers never saw in training (the demo renders are fashion items
on near-white). Deterministic: all variation comes from the `random.Random` given.
"""
from __future__ import annotations

import random

from PIL import Image, ImageDraw

from productsearch.demo.render import RGB

STUDIO_KINDS = {  # kind -> (English, Chinese) names
    "lamp": ("table lamp", "台灯"), "vase": ("vase", "花瓶"), "chair": ("chair", "椅子"),
    "cushion": ("cushion", "靠垫"), "bowl": ("bowl", "碗"), "clock": ("wall clock", "挂钟"),
}


def _shape(draw: ImageDraw.ImageDraw, kind: str, s: int, fill) -> None:
    def P(pts):
        draw.polygon([(x * s, y * s) for x, y in pts], fill=fill)
    if kind == "lamp":
        P([(.25, .10), (.75, .10), (.85, .45), (.15, .45)])
        draw.rectangle((.46 * s, .45 * s, .54 * s, .85 * s), fill=fill)
        draw.ellipse((.28 * s, .82 * s, .72 * s, .94 * s), fill=fill)
    elif kind == "vase":
        P([(.40, .05), (.60, .05), (.58, .25), (.80, .55), (.66, .95), (.34, .95), (.20, .55), (.42, .25)])
    elif kind == "chair":
        draw.rectangle((.25 * s, .05 * s, .75 * s, .50 * s), fill=fill)
        draw.rectangle((.20 * s, .50 * s, .80 * s, .62 * s), fill=fill)
        for x in (.22, .72):
            draw.rectangle((x * s, .62 * s, (x + .06) * s, .95 * s), fill=fill)
    elif kind == "cushion":
        draw.rounded_rectangle((.10 * s, .20 * s, .90 * s, .80 * s), radius=.18 * s, fill=fill)
    elif kind == "bowl":
        draw.chord((.05 * s, .05 * s, .95 * s, .90 * s), 0, 180, fill=fill)
    elif kind == "clock":
        draw.ellipse((.08 * s, .08 * s, .92 * s, .92 * s), fill=fill)
    else:
        raise ValueError(f"unknown studio kind {kind!r}")


def render_studio(kind: str, color: str, rng: random.Random, size: int = 96) -> Image.Image:
    """One studio photo: dark vertical gradient backdrop, object lit from one side, floor shadow."""
    top = tuple(rng.randint(10, 70) for _ in range(3))
    bottom = tuple(min(255, c + rng.randint(20, 60)) for c in top)
    canvas = Image.new("RGB", (size, size))
    d = ImageDraw.Draw(canvas)
    for y in range(size):
        t = y / (size - 1)
        d.line((0, y, size, y), fill=tuple(int(a + (b - a) * t) for a, b in zip(top, bottom)))
    s = int(size * rng.uniform(0.5, 0.8))
    mask = Image.new("L", (s, s), 0)
    _shape(ImageDraw.Draw(mask), kind, s, 255)
    base = RGB[color]
    lit = Image.new("RGB", (s, s))
    ld = ImageDraw.Draw(lit)
    left_light = rng.random() < 0.5
    for x in range(s):
        t = x / (s - 1) if left_light else 1 - x / (s - 1)
        k = 1.15 - 0.5 * t  # bright on the lit side, darker away from it
        ld.line((x, 0, x, s), fill=tuple(min(255, int(c * k)) for c in base))
    x0 = rng.randint(0, size - s)
    y0 = rng.randint(max(0, size - s - 8), size - s)
    d.ellipse((x0 + s * .1, y0 + s * .9, x0 + s * .9, min(size - 1, y0 + s * 1.02)), fill=(5, 5, 5))
    canvas.paste(lit, (x0, y0), mask)
    return canvas
