"""Held-out quality of the bilingual demo generation (numpy, in-process, no Triton): the issue's
target table, on the demo's held-out combinations and on the Fashion-MNIST TEST split.

Demo rows: the queries are the held-out combinations (never trained on, their products in the
catalog), phrased in English ("red striped t-shirt") and in Chinese ("红色条纹T恤"). As served,
products are fused from (served title: Chinese for a third of them, image) with the
generation's text weight w, a text query is fused text-only and a fresh render image-only.
P@10 averaged over the combinations:
  en_image_category / en_image_color   EN query -> image-only catalog
  en_fused_exact                       EN query -> fused catalog, same (category, colour, pattern)
  fresh_fused_exact                    a NEW render of the combination -> fused catalog
  zh_fused_category / zh_fused_color   ZH query -> fused catalog
  en->zh / zh->en_fused_category       EN query -> only the Chinese-titled products, and reverse
Photo rows (`photo_metrics`): Fashion-MNIST TEST photos embedded image-only; class-name queries
in English / Chinese (several phrasings each) and photo -> photo with the query photo excluded,
same-class P@10. productsearch/evaluation/photo_quality.py measures the same through the served `search`.
"""
from __future__ import annotations

import random

import numpy as np

from productsearch.training.projection import unit

K = 10
TARGETS = {
    "en_image_category": 0.90, "en_image_color": 0.80, "en_fused_exact": 0.90, "fresh_fused_exact": 0.90,
    "zh_fused_category": 0.90, "zh_fused_color": 0.80,
    "en->zh_fused_category": 0.85, "zh->en_fused_category": 0.85,
    "text_en->photo": 0.80, "text_zh->photo": 0.75, "photo->photo": 0.85,
}
LABELS = {
    "en_image_category": "demo held-out, EN text -> image-only: category",
    "en_image_color": "demo held-out, EN text -> image-only: colour",
    "en_fused_exact": "demo held-out, EN text -> fused: exact combination",
    "fresh_fused_exact": "demo held-out, fresh render -> fused: exact combination",
    "en_fused_category": "demo held-out, EN text -> fused: category",
    "en_fused_color": "demo held-out, EN text -> fused: colour",
    "zh_fused_category": "demo held-out, ZH text -> fused: category",
    "zh_fused_color": "demo held-out, ZH text -> fused: colour",
    "zh_fused_exact": "demo held-out, ZH text -> fused: exact combination",
    "en->zh_fused_category": "demo held-out, EN text -> Chinese-titled products: category",
    "zh->en_fused_category": "demo held-out, ZH text -> English-titled products: category",
    "text_en->photo": "Fashion-MNIST test, EN class queries -> photos: same class",
    "text_zh->photo": "Fashion-MNIST test, ZH class queries -> photos: same class",
    "photo->photo": "Fashion-MNIST test, photo -> other photos: same class",
}


def topk(queries: np.ndarray, corpus: np.ndarray, k: int = K, exclude: np.ndarray | None = None) -> np.ndarray:
    """Best-first indices of the k highest-scoring corpus rows; `exclude[i]` never returned for query i."""
    out = np.empty((len(queries), k), dtype=np.int64)
    for s in range(0, len(queries), 1024):
        scores = queries[s:s + 1024] @ corpus.T
        if exclude is not None:
            scores[np.arange(len(scores)), exclude[s:s + 1024]] = -np.inf
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        order = np.take_along_axis(scores, part, axis=1).argsort(axis=1)[:, ::-1]
        out[s:s + 1024] = np.take_along_axis(part, order, axis=1)
    return out


def precision(top: np.ndarray, labels: np.ndarray, wanted) -> float:
    return float(np.mean(labels[top] == np.asarray(wanted)[:, None]))


def fuse_both(title: np.ndarray, image: np.ndarray, w: float) -> np.ndarray:
    return np.concatenate([np.sqrt(w) * unit(title), np.sqrt(1 - w) * unit(image)], axis=1)


def fuse_one(emb: np.ndarray, w: float) -> np.ndarray:
    """A one-modality query: the present embedding fills both halves (fusion's rule)."""
    return fuse_both(emb, emb, w)


def fresh_renders(combos, seed: int = 0) -> list:
    """One new render per combination, the same rng as training/quality.py."""
    from productsearch.demo.render import render_product

    return [render_product(*c, random.Random(f"fresh:{seed}:{'|'.join(c)}")) for c in combos]


def demo_metrics(catalog: list[dict], title_emb: np.ndarray, image_emb: np.ndarray, text_tower,
                 fresh_emb: np.ndarray, w: float) -> dict:
    """The demo rows (module doc). Rows of title_emb / image_emb follow `catalog`; fresh_emb are
    the image embeddings of fresh_renders(held-out combinations)."""
    from productsearch.demo.catalog import canonical_query, combo_of
    from productsearch.demo.chinese import canonical_query_zh

    combos = sorted({combo_of(p) for p in catalog if p["heldout"]})
    attr = {"category": np.array([p["category"] for p in catalog]), "color": np.array([p["color"] for p in catalog]),
            "exact": np.array(["|".join(combo_of(p)) for p in catalog])}
    want = {"category": [c[0] for c in combos], "color": [c[1] for c in combos], "exact": ["|".join(c) for c in combos]}
    lang = np.array([p.get("lang", "en") for p in catalog])
    fused, image = fuse_both(title_emb, image_emb, w), unit(image_emb)
    query = {"en": text_tower.encode([canonical_query(*c) for c in combos]),
             "zh": text_tower.encode([canonical_query_zh(*c) for c in combos])}
    out = {}
    for what in ("category", "color"):
        out[f"en_image_{what}"] = precision(topk(unit(query["en"]), image), attr[what], want[what])
    for L in ("en", "zh"):
        top = topk(fuse_one(query[L], w), fused)
        for what in ("exact", "category", "color"):
            out[f"{L}_fused_{what}"] = precision(top, attr[what], want[what])
    for a, b in (("en", "zh"), ("zh", "en")):
        rows = np.flatnonzero(lang == b)
        if len(rows) >= K:
            out[f"{a}->{b}_fused_category"] = precision(topk(fuse_one(query[a], w), fused[rows]),
                                                        attr["category"][rows], want["category"])
    out["fresh_fused_exact"] = precision(topk(fuse_one(fresh_emb, w), fused), attr["exact"], want["exact"])
    return {k: round(v, 4) for k, v in out.items()}


def photo_metrics(text_tower, photo_emb: np.ndarray, labels: np.ndarray) -> dict:
    """The Fashion-MNIST rows over image-only photo embeddings (module doc)."""
    from productsearch.demo import fashion_mnist as fm

    e = unit(photo_emb)
    out = {}
    for L, sets in (("en", fm.EVAL_QUERIES_EN), ("zh", fm.EVAL_QUERIES_ZH)):
        texts = [t for c in range(len(sets)) for t in sets[c]]
        want = [c for c in range(len(sets)) for _ in sets[c]]
        out[f"text_{L}->photo"] = precision(topk(unit(text_tower.encode(texts)), e), labels, want)
    out["photo->photo"] = precision(topk(e, e, exclude=np.arange(len(e))), labels, labels)
    return {k: round(v, 4) for k, v in out.items()}


def passed(metrics: dict) -> bool:
    return all(metrics[k] >= t for k, t in TARGETS.items() if k in metrics)


def format_targets(metrics: dict, heading: str) -> str:
    lines = [heading, "", "| query set (P@10) | value | target | result |", "|---|---:|---|---|"]
    for key, value in metrics.items():
        target = TARGETS.get(key)
        result = "info" if target is None else ("pass" if value >= target else "FAIL")
        lines.append(f"| {LABELS.get(key, key)} | {value:.3f} | {'-' if target is None else f'>= {target:.2f}'} | {result} |")
    return "\n".join(lines)
