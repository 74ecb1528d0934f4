"""Demo product photos: PIL renders of a category's silhouette in a colour and a pattern.

`render_product` is deterministic for a given `random.Random` state; all variation (shade,
object size, position, rotation, pattern phase, background) comes from it.
"""
from __future__ import annotations

import random

from PIL import Image, ImageDraw, ImageFilter

IMAGE_SIZE = 96  # rendered size; the image tower resizes to its own training resolution

RGB = {
    "red": (208, 32, 38), "orange": (244, 128, 22), "yellow": (245, 212, 28),
    "green": (42, 150, 62), "blue": (36, 86, 200), "purple": (124, 50, 164),
    "pink": (244, 132, 186), "brown": (122, 74, 36), "black": (28, 28, 28),
    "white": (250, 250, 250), "grey": (128, 128, 128),
}


def _mix(a: tuple[int, ...], b: tuple[int, ...], t: float) -> tuple[int, int, int]:
    return tuple(int(round(x + (y - x) * t)) for x, y in zip(a, b))  # type: ignore[return-value]


def _contrast(color: str) -> tuple[int, int, int]:
    """Pattern tone: light on most colours, dark on the light ones, so patterns stay visible
    while the product's own colour keeps most of the area."""
    base = RGB[color]
    if color == "white":
        return (120, 120, 120)
    if color == "grey":
        return _mix(base, (255, 255, 255), 0.55)
    if color in ("yellow", "pink"):
        return _mix(base, (0, 0, 0), 0.55)
    return _mix(base, (255, 255, 255), 0.8)


def _silhouette(draw: ImageDraw.ImageDraw, category: str, s: int) -> None:
    """Draw the category's filled silhouette (255) into an s x s mask, coords in unit box."""
    def P(pts):
        draw.polygon([(x * s, y * s) for x, y in pts], fill=255)

    def E(x0, y0, x1, y1):
        draw.ellipse((x0 * s, y0 * s, x1 * s, y1 * s), fill=255)

    def R(x0, y0, x1, y1, r=0.0):
        draw.rounded_rectangle((x0 * s, y0 * s, x1 * s, y1 * s), radius=r * s, fill=255)

    def ring(x0, y0, x1, y1, w, start=0, end=360):
        draw.arc((x0 * s, y0 * s, x1 * s, y1 * s), start, end, fill=255, width=max(2, int(w * s)))

    if category == "t-shirt":
        P([(.30, .10), (.40, .10), (.45, .17), (.55, .17), (.60, .10), (.70, .10), (.96, .32),
           (.86, .46), (.76, .39), (.76, .92), (.24, .92), (.24, .39), (.14, .46), (.04, .32)])
    elif category == "dress":
        P([(.37, .04), (.42, .04), (.45, .20), (.55, .20), (.58, .04), (.63, .04), (.65, .30),
           (.58, .44), (.88, .96), (.12, .96), (.42, .44), (.35, .30)])
    elif category == "jeans":
        P([(.24, .04), (.76, .04), (.82, .96), (.57, .96), (.50, .36), (.43, .96), (.18, .96)])
    elif category == "sneakers":
        P([(.04, .56), (.08, .40), (.34, .38), (.52, .22), (.70, .22), (.73, .40), (.96, .54),
           (.96, .66), (.04, .66)])
        R(.02, .64, .98, .76, .04)
    elif category == "handbag":
        P([(.16, .40), (.84, .40), (.93, .90), (.07, .90)])
        ring(.28, .10, .72, .66, .07, 180, 360)
    elif category == "backpack":
        R(.20, .16, .80, .96, .16)
        ring(.38, .04, .62, .28, .06, 180, 360)
    elif category == "hat":
        E(.02, .56, .98, .82)
        R(.26, .22, .74, .70, .18)
    elif category == "sunglasses":
        E(.03, .34, .47, .72)
        E(.53, .34, .97, .72)
        R(.40, .38, .60, .46)
        R(.03, .36, .10, .42)
        R(.90, .36, .97, .42)
    elif category == "watch":
        R(.37, .00, .63, 1.0, .04)
        E(.20, .27, .80, .73)
    elif category == "mug":
        R(.12, .18, .72, .92, .06)
        ring(.56, .34, .92, .74, .09)
    elif category == "lipstick":
        R(.33, .52, .67, .97, .02)
        R(.37, .40, .63, .54)
        P([(.40, .41), (.40, .16), (.60, .05), (.60, .41)])
    elif category == "water bottle":
        R(.28, .26, .72, .97, .10)
        P([(.28, .34), (.40, .17), (.60, .17), (.72, .34)])
        R(.41, .09, .59, .19)
        R(.39, .01, .61, .11, .02)
    else:
        raise ValueError(f"unknown category {category!r}")


def _details(draw: ImageDraw.ImageDraw, category: str, s: int, ink: tuple[int, ...]) -> None:
    """Thin category details (seams, dial, pocket) in the outline ink, drawn over the pattern."""
    w = max(1, s // 40)
    def L(*pts):
        draw.line([(x * s, y * s) for x, y in pts], fill=ink, width=w)

    if category == "watch":
        draw.ellipse((.28 * s, .35 * s, .72 * s, .65 * s), outline=ink, width=w)
        L((.5, .5), (.5, .39))
        L((.5, .5), (.6, .53))
    elif category == "backpack":
        draw.rounded_rectangle((.30 * s, .56 * s, .70 * s, .86 * s), radius=.06 * s,
                               outline=ink, width=w)
    elif category == "jeans":
        L((.24, .12), (.76, .12))
    elif category == "sneakers":
        L((.02, .65), (.98, .65))
        L((.48, .30), (.58, .40))
    elif category == "hat":
        L((.27, .58), (.73, .58))
    elif category == "lipstick":
        L((.33, .53), (.67, .53))


def _pattern(draw: ImageDraw.ImageDraw, pattern: str, s: int, tone, rng: random.Random) -> None:
    """Draw the pattern over the whole object box; the silhouette mask crops it later."""
    period = s / rng.uniform(4.5, 5.5)  # coarse enough to survive downscaling to ~64 px
    off = rng.uniform(0, period)
    if pattern == "striped":
        for y in _steps(-off, s, period):
            draw.rectangle((0, y, s, y + period * 0.35), fill=tone)
    elif pattern == "polka-dot":
        r = period * 0.24
        for row, y in enumerate(_steps(-off, s, period * 0.9)):
            shift = period / 2 if row % 2 else 0.0
            for x in _steps(-off + shift, s, period):
                draw.ellipse((x - r, y - r, x + r, y + r), fill=tone)
    elif pattern == "checked":  # a grid of bars both ways: the base colour keeps ~60% of the area
        bar = period * 0.22
        for v in _steps(-off, s, period * 0.8):
            draw.rectangle((0, v, s, v + bar), fill=tone)
            draw.rectangle((v, 0, v + bar, s), fill=tone)
    elif pattern != "plain":
        raise ValueError(f"unknown pattern {pattern!r}")


def _steps(start: float, stop: float, step: float) -> list[float]:
    out, v = [], start
    while v < stop + step:
        out.append(v)
        v += step
    return out


def render_product(category: str, color: str, pattern: str, rng: random.Random,
                   size: int = IMAGE_SIZE) -> Image.Image:
    """Render one product photo (RGB, size x size) from its attributes.

    `rng` (a `random.Random`) drives all variation — shade, object size, position, rotation,
    pattern phase, background — so the same rng state gives the same pixels.
    """
    # shade jitter: mostly brightness, little hue, so the colour name stays right
    shade = rng.randint(-12, 12)
    base = tuple(min(255, max(0, c + shade + rng.randint(-4, 4))) for c in RGB[color])
    tone = _contrast(color)
    ink = (110, 110, 110) if color == "white" else _mix(base, (0, 0, 0), 0.5)

    s = int(size * rng.uniform(0.55, 0.85))
    mask = Image.new("L", (s, s), 0)
    _silhouette(ImageDraw.Draw(mask), category, s)
    body = Image.new("RGB", (s, s), base)
    body_draw = ImageDraw.Draw(body)
    _pattern(body_draw, pattern, s, tone, rng)
    _details(body_draw, category, s, ink)
    # Outline: the ring just outside the silhouette, so white products show on light backgrounds.
    grown = mask.filter(ImageFilter.MaxFilter(3))
    obj = Image.new("RGBA", (s, s), ink + (0,))
    obj.putalpha(grown)
    obj.paste(body, (0, 0), mask)

    obj = obj.rotate(rng.uniform(-18, 18), resample=Image.BILINEAR, expand=True)
    bg_level = rng.randint(222, 250)
    bg = tuple(min(255, bg_level + rng.randint(-6, 6)) for _ in range(3))
    canvas = Image.new("RGB", (size, size), bg)
    w, h = obj.size
    x = rng.randint(min(0, size - w), max(0, size - w))
    y = rng.randint(min(0, size - h), max(0, size - h))
    canvas.paste(obj, (x, y), obj)
    return canvas
