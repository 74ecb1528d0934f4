"""Synthetic large catalogs for the scale benchmarks, and recall against exact search.

A synthetic product mixes two real demo products' text and image vectors and adds noise:
``normalize(l * a + (1 - l) * b + sigma * g / sqrt(D))`` (text and image alike, the same l, a, b)
with ``l`` uniform in [0.5, 1] and ``g`` standard normal. A million products so keep the
structure of the real catalog (categories, colours, near-duplicates) that real queries match
against -- uniform random vectors have no neighbours -- while filling the space between products,
so that a query's top 10 come from many sources and straddle IVF cells. Ids are ``S0000000``...;
title, category and price are its main source's (for the filter benchmark). Each catalog is a
catalog store (one SQLite shop, catalog/sqlite/store.py) cached in run/bench/catalogs with the
fused matrix beside it (fused.npy, for exact answers), so only the first run pays for generation.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from productsearch.catalog.rows import DEFAULT_SHOP, ChangeSet
from productsearch.catalog.sqlite.bulk import bulk_insert
from productsearch.catalog.sqlite.store import SqliteCatalog
from productsearch.core.vectors import fuse

CHUNK = 50_000


def synthetic_dir(cache: Path, count: int, base_head: int, seed: int, sigma: float) -> Path:
    return Path(cache) / f"n{count}-base{base_head}-s{seed}-mix-sigma{sigma:g}-store"


def mix(rng, vectors: np.ndarray, origin: np.ndarray, other: np.ndarray, weight: np.ndarray, sigma: float) -> np.ndarray:
    dim = vectors.shape[1]
    noisy = (weight * vectors[origin] + (1 - weight) * vectors[other]
             + (sigma / np.sqrt(dim)) * rng.standard_normal((len(origin), dim), dtype=np.float32))
    return (noisy / np.linalg.norm(noisy, axis=1, keepdims=True)).astype(np.float32)


def synthetic_catalog(cache: Path, base: ChangeSet, generation: int, count: int, seed: int = 0, sigma: float = 1.0,
                      log=print) -> Path:
    """The store folder of a cached synthetic catalog of `count` products made from `base` (a
    store snapshot with image vectors), generated if absent. Its shop is the default shop."""
    root = synthetic_dir(cache, count, base.head, seed, sigma)
    if (root / "fused.npy").exists():
        return root
    shutil.rmtree(root, ignore_errors=True)
    rows = [r for r in base.rows if r.image is not None]
    text = np.stack([r.text for r in rows])
    image = np.stack([r.image for r in rows])
    rng = np.random.default_rng(seed)
    store = SqliteCatalog(root, DEFAULT_SHOP)
    fused = np.lib.format.open_memmap(root / ".fused.npy", mode="w+", dtype=np.float32,
                                      shape=(count, text.shape[1] + image.shape[1]))
    for start in range(0, count, CHUNK):
        size = min(CHUNK, count - start)
        origin, other = rng.integers(0, len(rows), size), rng.integers(0, len(rows), size)
        weight = rng.uniform(0.5, 1.0, size=(size, 1)).astype(np.float32)
        t, i = mix(rng, text, origin, other, weight, sigma), mix(rng, image, origin, other, weight, sigma)
        fields = [{k: rows[o].fields[k] for k in ("category", "price") if k in rows[o].fields} for o in origin]
        bulk_insert(store, generation, [(f"S{start + j:07d}", rows[o].title, f, t[j], i[j])
                                       for j, (o, f) in enumerate(zip(origin, fields))])
        ones = np.ones(size, bool)
        fused[start:start + size] = fuse(t, i, ones, ones)
    fused.flush()
    del fused
    (root / ".fused.npy").rename(root / "fused.npy")
    store.close()
    log(f"synthetic catalog: {count} products in {root}")
    return root


def exact_top_k(embeddings: np.ndarray, queries: np.ndarray, k: int = 10) -> np.ndarray:
    """Row numbers of the exact fp32 top-k for each query (chunked over a memory-mapped matrix)."""
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    best_scores = np.full((len(queries), 0), -np.inf, dtype=np.float32)
    best_rows = np.zeros((len(queries), 0), dtype=np.int64)
    for start in range(0, len(embeddings), 262144):
        scores = queries @ np.asarray(embeddings[start:start + 262144], dtype=np.float32).T
        top = np.argpartition(-scores, min(k, scores.shape[1] - 1), axis=1)[:, :k]
        best_scores = np.concatenate([best_scores, np.take_along_axis(scores, top, axis=1)], axis=1)
        best_rows = np.concatenate([best_rows, top + start], axis=1)
        keep = np.argsort(-best_scores, axis=1, kind="stable")[:, :k]
        best_scores = np.take_along_axis(best_scores, keep, axis=1)
        best_rows = np.take_along_axis(best_rows, keep, axis=1)
    return best_rows


def synthetic_ids(rows: np.ndarray) -> list[list[bytes]]:
    """The ids of synthetic catalog rows."""
    return [[f"S{int(r):07d}".encode() for r in row] for row in rows]


def recall_at_k(found: list[list[bytes]], exact_ids: list[list[bytes]]) -> float:
    """Mean fraction of the exact top-k ids that the served answer contains."""
    hits = [len(set(f) & set(e)) / len(e) for f, e in zip(found, exact_ids) if e]
    return float(np.mean(hits)) if hits else float("nan")
