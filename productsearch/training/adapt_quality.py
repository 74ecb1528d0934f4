"""What decides an adapted generation: the split of a shop by product id, its held-out figures,
the gate (better on the shop, not worse than a margin elsewhere), and the report (printed table,
JSON, a small PNG chart).

Shop figures (numpy, in-process): the held-out products' photos embedded image-only; each
distinct held-out title is a text query; a photo is relevant when its product has the query
product's `category` field. text->photo P@10 and recall@10 (relevant found in the top 10 / all
relevant), photo->photo P@10 (the query photo excluded), and fused search nDCG@10: the held-out
products fused as the scorer stores them (title and photo at the generation's text weight), each
title query fused text-only, with graded gains (graded_gains). The demo held-out combinations get
the same fused nDCG@10 for their EN and ZH queries. The confidence half-width of a shop figure is
1.96 standard errors over the queries: below TRUSTED_QUERIES queries the report says the held-out
set is too small to trust, and by how much (each shop figure's half-width).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from productsearch.training.bilingual_quality import K, fuse_both, fuse_one, precision, topk
from productsearch.training.projection import unit

GATE_FIGURE = "shop text->photo P@10"
SHOP_NDCG = "shop fused nDCG@10"
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


def graded_gains(query_attrs: list[tuple], product_attrs: list[tuple]) -> np.ndarray:
    """(queries, products) gains: a product of another kind (first attribute) is worth 0; of the
    same kind, 1 plus one for each further attribute it shares (colour, pattern, ...)."""
    q, p = np.asarray(query_attrs, dtype=object), np.asarray(product_attrs, dtype=object)
    same = q[:, None, :] == p[None, :, :]
    return np.where(same[:, :, 0], 1 + same[:, :, 1:].sum(2), 0).astype(np.float64)


def ndcg_per_query(queries: np.ndarray, corpus: np.ndarray, gains: np.ndarray) -> np.ndarray:
    """nDCG@10 of each query over `corpus` (dot product ranking) with graded `gains`; the ideal is
    the query's best 10 gains in the whole corpus."""
    k = min(K, corpus.shape[0])
    discount = 1.0 / np.log2(np.arange(k) + 2)
    dcg = np.take_along_axis(gains, topk(queries, corpus, k), axis=1) @ discount
    ideal = -np.sort(-gains, axis=1)[:, :k] @ discount
    return np.divide(dcg, ideal, out=np.zeros_like(dcg), where=ideal > 0)


def half_width(per_query: np.ndarray) -> float:
    """1.96 standard errors of the mean over the queries (1.0 when one query says nothing)."""
    return 1.96 * float(per_query.std(ddof=1)) / np.sqrt(len(per_query)) if len(per_query) > 1 else 1.0


def shop_metrics(text_tower, photo_emb: np.ndarray, titles: list[str], title_emb: np.ndarray, attributes: list[tuple],
                 w: float) -> dict:
    """The shop rows (module doc) over the held-out products (rows of photo_emb and title_emb follow
    titles); attributes[i] is product i's (category, colour...) as the shop's fields give them."""
    labels = np.asarray([a[0] for a in attributes])
    first = {t: i for i, t in reversed(list(enumerate(titles)))}
    queries = sorted(first)
    want = labels[[first[t] for t in queries]]
    photos = unit(photo_emb)
    query_emb = text_tower.encode(queries)
    top = topk(unit(query_emb), photos, min(K, len(photos)))
    hits = labels[top] == want[:, None]
    per_query = hits.mean(1)
    relevant = np.array([(labels == c).sum() for c in want])
    gains = graded_gains([attributes[first[t]] for t in queries], attributes)
    ndcg = ndcg_per_query(fuse_one(query_emb, w), fuse_both(title_emb, photo_emb, w), gains)
    photo_top = topk(photos, photos, min(K, len(photos) - 1), exclude=np.arange(len(photos)))
    return {GATE_FIGURE: round(float(per_query.mean()), 4),
            "shop text->photo recall@10": round(float(np.mean(hits.sum(1) / relevant)), 4),
            SHOP_NDCG: round(float(ndcg.mean()), 4),
            "shop photo->photo P@10": round(precision(photo_top, labels, labels), 4),
            "_queries": len(queries), "_products": len(photos),
            "_ci": {GATE_FIGURE: round(half_width(per_query), 4), SHOP_NDCG: round(half_width(ndcg), 4)}}


def demo_fused_ndcg(catalog: list[dict], title_emb: np.ndarray, image_emb: np.ndarray, queries: dict, w: float) -> dict:
    """Fused nDCG@10 of the demo held-out combinations' EN and ZH queries (queries[lang]: their
    embeddings, in sorted-combination order) over the demo catalog, graded by (category, colour,
    pattern)."""
    from productsearch.demo.catalog import combo_of

    combos = sorted({combo_of(p) for p in catalog if p["heldout"]})
    gains = graded_gains(combos, [combo_of(p) for p in catalog])
    fused = fuse_both(title_emb, image_emb, w)
    return {f"{lang}_fused_ndcg@10": round(float(ndcg_per_query(fuse_one(emb, w), fused, gains).mean()), 4)
            for lang, emb in queries.items()}


def gate(before: dict, after: dict, margin: float = MARGIN) -> list[str]:
    """The failed figures, each as a sentence; [] when the adapted generation may be registered:
    the shop's text->photo P@10 must rise, its fused nDCG@10 and every figure of the other
    held-out sets must not fall by more than the margin (the shop's photo->photo and recall are
    reported only)."""
    failed = []
    if not after[GATE_FIGURE] > before[GATE_FIGURE]:
        failed.append(f"{GATE_FIGURE} did not rise ({before[GATE_FIGURE]:.3f} -> {after[GATE_FIGURE]:.3f})")
    for key, value in before.items():
        if (key.startswith(("shop ", "_")) and key != SHOP_NDCG) or key not in after:
            continue
        if after[key] < value - margin:
            failed.append(f"{key} fell by more than {margin:.2f} ({value:.3f} -> {after[key]:.3f})")
    return failed


def trust_line(shop: dict) -> str | None:
    """Below TRUSTED_QUERIES held-out queries: how small the set is and how far each shop figure
    may be off (its 95% half-width)."""
    if shop["_queries"] >= TRUSTED_QUERIES:
        return None
    widths = ", ".join(f"{name} ±{width:.3f}" for name, width in shop["_ci"].items())
    return (f"held-out set too small to trust (n={shop['_queries']} queries over {shop['_products']} products; "
            f"95% half-widths: {widths}; {TRUSTED_QUERIES} queries or more are trusted)")


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
