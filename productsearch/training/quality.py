"""Held-out retrieval quality, computed in-process with numpy (no Triton).

Queries are the held-out attribute combinations: never trained on, yet their products are in
the catalog. Every metric is precision@10 averaged over those combinations. With 10 renders per
combination, "exact combination P@10 = 1" means all ten of its products rank first.
"""
from __future__ import annotations

import random

import numpy as np

from productsearch.demo.catalog import canonical_query, combo_of
from productsearch.demo.render import render_product
from productsearch.core.vectors import DEFAULT_TEXT_WEIGHT, fuse

K = 10
TARGETS = {
    "text_to_image_category": 0.90,
    "text_to_image_color": 0.80,
    "text_to_fused_exact": 0.90,
    "fresh_image_to_fused_exact": 0.90,
}
LABELS = {
    "text_to_image_category": "text query -> image-only catalog: category P@10",
    "text_to_image_color": "text query -> image-only catalog: colour P@10",
    "text_to_image_pattern": "text query -> image-only catalog: pattern P@10",
    "text_to_image_exact": "text query -> image-only catalog: exact combination P@10",
    "text_to_fused_exact": "text query -> fused catalog: exact combination P@10",
    "fresh_image_to_fused_exact": "fresh render -> fused catalog: same combination P@10",
    "fresh_image_to_image_exact": "fresh render -> image-only catalog: same combination P@10",
}


def _topk(queries: np.ndarray, catalog_emb: np.ndarray, k: int = K) -> np.ndarray:
    scores = queries @ catalog_emb.T
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.take_along_axis(scores, part, axis=1).argsort(axis=1)[:, ::-1]
    return np.take_along_axis(part, order, axis=1)


def _precision(top: np.ndarray, attr: np.ndarray, wanted: list) -> float:
    """Mean over queries of the fraction of the top-k whose attribute equals the wanted one."""
    return float(np.mean([np.mean(attr[row] == w) for row, w in zip(top, wanted)]))


def quality_table(catalog: list[dict], text_emb_titles: np.ndarray, image_emb: np.ndarray,
                  text_tower, image_tower, seed: int = 0,
                  text_weight: float = DEFAULT_TEXT_WEIGHT) -> dict:
    """Metrics on the held-out combinations. Rows of the two embedding arrays follow `catalog`.

    Products are fused from (title, image); text queries are fused as text-only and fresh
    renders as image-only, exactly as the served `search` ensemble does.
    """
    combos = sorted({combo_of(p) for p in catalog if p["heldout"]})
    if not combos:
        raise ValueError("catalog has no held-out products")
    n = len(catalog)
    cats = np.array([p["category"] for p in catalog])
    cols = np.array([p["color"] for p in catalog])
    pats = np.array([p["pattern"] for p in catalog])
    keys = np.array(["|".join(combo_of(p)) for p in catalog])
    want_key = ["|".join(c) for c in combos]
    ones = np.ones(n, dtype=bool)
    fused_catalog = fuse(text_emb_titles, image_emb, ones, ones, text_weight)

    q_text = text_tower.encode([canonical_query(*c) for c in combos])
    m = len(combos)
    top_img = _topk(q_text, image_emb)
    q_text_fused = fuse(q_text, q_text, np.ones(m, bool), np.zeros(m, bool), text_weight)
    top_fused = _topk(q_text_fused, fused_catalog)

    fresh = [render_product(*c, random.Random(f"fresh:{seed}:{'|'.join(c)}")) for c in combos]
    q_img = image_tower.encode(fresh)
    q_img_fused = fuse(q_img, q_img, np.zeros(m, bool), np.ones(m, bool), text_weight)
    top_fresh = _topk(q_img_fused, fused_catalog)
    top_fresh_img = _topk(q_img, image_emb)

    values = {
        "text_to_image_category": _precision(top_img, cats, [c[0] for c in combos]),
        "text_to_image_color": _precision(top_img, cols, [c[1] for c in combos]),
        "text_to_image_pattern": _precision(top_img, pats, [c[2] for c in combos]),
        "text_to_image_exact": _precision(top_img, keys, want_key),
        "text_to_fused_exact": _precision(top_fused, keys, want_key),
        "fresh_image_to_fused_exact": _precision(top_fresh, keys, want_key),
        "fresh_image_to_image_exact": _precision(top_fresh_img, keys, want_key),
    }
    return {
        "k": K, "queries": m, "catalog_size": n, "text_weight": float(text_weight),
        "metrics": {key: {"label": LABELS[key], "value": v, "target": TARGETS.get(key)}
                    for key, v in values.items()},
    }


def passed(table: dict) -> bool:
    """True when every metric that has a target meets it."""
    return all(m["value"] >= m["target"] for m in table["metrics"].values()
               if m["target"] is not None)


def format_table(table: dict) -> str:
    """Markdown table: metric, value, target, pass/fail (informative rows have no target)."""
    lines = [
        f"Held-out quality: {table['queries']} unseen combinations as queries, "
        f"catalog of {table['catalog_size']}, P@{table['k']}, text weight {table['text_weight']:g}",
        "",
        "| metric | value | target | result |",
        "|---|---|---|---|",
    ]
    for m in table["metrics"].values():
        if m["target"] is None:
            target, result = "-", "info"
        else:
            target = f">= {m['target']:.2f}"
            result = "pass" if m["value"] >= m["target"] else "FAIL"
        lines.append(f"| {m['label']} | {m['value']:.3f} | {target} | {result} |")
    return "\n".join(lines)
