"""What decides an adapted generation: the split of a shop by product id, its held-out figures,
the gate (better on the shop, not worse than a margin elsewhere), and the report (printed table,
JSON, a small PNG chart).

Shop figures (numpy, in-process): the held-out products' photos embedded image-only; each
distinct held-out title is a text query; a photo is relevant when its product has the query
product's `category` field. text->photo P@10 and recall@10 (relevant found in the top 10 / all
relevant), photo->photo P@10 (the query photo excluded). The confidence half-width is 1.96
standard errors over the queries: below TRUSTED_QUERIES queries the report says the held-out set
is too small to trust.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from productsearch.training.bilingual_quality import K, precision, topk
from productsearch.training.projection import unit

GATE_FIGURE = "shop text->photo P@10"
MARGIN = 0.02          # how far a figure of the other held-out sets may fall
TRUSTED_QUERIES = 100  # held-out queries below which a figure is flagged as too small to trust


class GateRefused(RuntimeError):
    """The adapted generation failed the gate; the message names the figure."""


def split_ids(ids: list[str], heldout_share: float, seed: int) -> tuple[list[str], list[str]]:
    """(train, held-out) product ids: a product is held out when the hash of (seed, id) falls in
    the share, so the split of a product never depends on the rest of the catalog."""
    if not 0 < heldout_share < 1:
        raise ValueError(f"held-out share must be between 0 and 1, not {heldout_share}")
    held = {pid for pid in ids
            if int.from_bytes(hashlib.sha256(f"{seed}:{pid}".encode()).digest()[:8], "big") / 2 ** 64 < heldout_share}
    return sorted(set(ids) - held), sorted(held)


def shop_metrics(text_tower, photo_emb: np.ndarray, titles: list[str], categories: list[str]) -> dict:
    """The shop rows (module doc) over the held-out products (rows of photo_emb follow titles)."""
    labels = np.asarray(categories)
    first = {t: i for i, t in reversed(list(enumerate(titles)))}
    queries = sorted(first)
    want = labels[[first[t] for t in queries]]
    photos = unit(photo_emb)
    k = min(K, len(photos))
    top = topk(unit(text_tower.encode(queries)), photos, k)
    hits = labels[top] == want[:, None]
    per_query = hits.mean(1)
    relevant = np.array([(labels == w).sum() for w in want])
    ci = 1.96 * float(per_query.std(ddof=1)) / np.sqrt(len(queries)) if len(queries) > 1 else 1.0
    photo_top = topk(photos, photos, min(K, len(photos) - 1), exclude=np.arange(len(photos)))
    return {GATE_FIGURE: round(float(per_query.mean()), 4),
            "shop text->photo recall@10": round(float(np.mean(hits.sum(1) / relevant)), 4),
            "shop photo->photo P@10": round(precision(photo_top, labels, labels), 4),
            "_queries": len(queries), "_products": len(photos), "_ci": round(ci, 4)}


def gate(before: dict, after: dict, margin: float = MARGIN) -> list[str]:
    """The failed figures, each as a sentence; [] when the adapted generation may be registered."""
    failed = []
    if not after[GATE_FIGURE] > before[GATE_FIGURE]:
        failed.append(f"{GATE_FIGURE} did not rise ({before[GATE_FIGURE]:.3f} -> {after[GATE_FIGURE]:.3f})")
    for key, value in before.items():
        if key.startswith(("shop ", "_")) or key not in after:
            continue
        if after[key] < value - margin:
            failed.append(f"{key} fell by more than {margin:.2f} ({value:.3f} -> {after[key]:.3f})")
    return failed


def trust_line(shop: dict) -> str | None:
    if shop["_queries"] >= TRUSTED_QUERIES:
        return None
    return (f"held-out set too small to trust (n={shop['_queries']} queries over {shop['_products']} products, "
            f"CI ±{shop['_ci']:.3f})")


def format_table(before: dict, after: dict) -> str:
    lines = ["| held-out figure | before | after | change |", "|---|---:|---:|---:|"]
    for key, value in before.items():
        if not key.startswith("_") and key in after:
            lines.append(f"| {key} | {value:.3f} | {after[key]:.3f} | {after[key] - value:+.3f} |")
    return "\n".join(lines)


def chart(before: dict, after: dict, path: Path) -> Path:
    """A bar pair per figure (grey before, blue after), PIL only."""
    from PIL import Image, ImageDraw

    from productsearch.evaluation.report import font

    keys = [k for k in before if not k.startswith("_") and k in after]
    row, left, width = 30, 300, 360
    image = Image.new("RGB", (left + width + 70, 20 + row * len(keys)), "white")
    draw, fnt = ImageDraw.Draw(image), font(12)
    for i, key in enumerate(keys):
        y = 10 + i * row
        draw.text((6, y + 6), key, fill="black", font=fnt)
        draw.rectangle((left, y, left + width * before[key], y + 11), fill=(170, 170, 170))
        draw.rectangle((left, y + 13, left + width * after[key], y + 24), fill=(31, 119, 180))
        draw.text((left + width + 6, y + 6), f"{before[key]:.2f}->{after[key]:.2f}", fill="black", font=fnt)
    image.save(path)
    return path


def write_report(report: dict, json_path: Path, png_path: Path) -> None:
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(report, indent=1, ensure_ascii=False))
    chart(report["before"], report["after"], png_path)
