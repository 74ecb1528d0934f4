"""Synthetic large catalogs for the scale benchmark, and recall against exact search.

A synthetic product mixes two real demo products' fused embeddings and adds noise:
``normalize(l * a + (1 - l) * b + sigma * g / sqrt(D))`` with ``l`` uniform in [0.5, 1] and ``g``
standard normal. A million products so keep the structure of the real catalog (categories,
colours, near-duplicates) that real queries match against -- uniform random vectors have no
neighbours -- while filling the space between products, so that a query's top 10 come from many
sources and straddle IVF cells (noisy copies of single products alone made recall trivially
high: a query's neighbours were all copies of one product, in one cell). Ids are
``S0000000``...; title, category and price are its main source's (for the filter benchmark).
Catalogs are cached (catalog/files.py layout, checksummed) in run/bench/catalogs, with any index
the scorer or the bench builds beside them, so only the first run pays for generation.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from productsearch.catalog.files import CatalogError, CatalogView, open_catalog, write_catalog

CHUNK = 65536


def synthetic_dir(cache: Path, count: int, base_sha: str, seed: int, sigma: float) -> Path:
    return Path(cache) / f"n{count}-base{base_sha[:12]}-s{seed}-mix-sigma{sigma:g}-meta"


def synthetic_catalog(cache: Path, base: CatalogView, count: int, seed: int = 0, sigma: float = 1.0,
                      log=print) -> Path:
    """The version directory of a cached synthetic catalog of `count` products (made if absent)."""
    base_sha = base.manifest["embeddings_sha256"]
    version_dir = synthetic_dir(cache, count, base_sha, seed, sigma)
    try:
        open_catalog(version_dir, verify=False)
        return version_dir
    except CatalogError:
        shutil.rmtree(version_dir, ignore_errors=True)
    version_dir.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    base_embeddings = np.asarray(base.embeddings, dtype=np.float32)
    dim = base_embeddings.shape[1]
    scratch = version_dir / ".scratch.npy"
    out = np.lib.format.open_memmap(scratch, mode="w+", dtype=np.float32, shape=(count, dim))
    origin = rng.integers(0, len(base_embeddings), size=count)
    for start in range(0, count, CHUNK):
        rows = origin[start:start + CHUNK]
        other = rng.integers(0, len(base_embeddings), size=len(rows))
        weight = rng.uniform(0.5, 1.0, size=(len(rows), 1)).astype(np.float32)
        noisy = (weight * base_embeddings[rows] + (1 - weight) * base_embeddings[other]
                 + (sigma / np.sqrt(dim)) * rng.standard_normal((len(rows), dim), dtype=np.float32))
        out[start:start + len(rows)] = noisy / np.linalg.norm(noisy, axis=1, keepdims=True)
    out.flush()
    names = base.category_names
    products = [{"id": f"S{i:07d}", "title": base.titles[int(b)].decode(),
                 "category": names[base.categories[b]] if base.categories[b] >= 0 else None,
                 "price": None if np.isnan(base.prices[b]) else round(float(base.prices[b]), 2)}
                for i, b in enumerate(origin)]
    info = {"synthetic": {"base_embeddings_sha256": base_sha, "seed": seed, "sigma": sigma}}
    write_catalog(version_dir, out, products, info)
    del out
    scratch.unlink()
    log(f"synthetic catalog: {count} products in {version_dir}")
    return version_dir


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


def recall_at_k(found: list[list[bytes]], exact_ids: list[list[bytes]]) -> float:
    """Mean fraction of the exact top-k ids that the served answer contains."""
    hits = [len(set(f) & set(e)) / len(e) for f, e in zip(found, exact_ids) if e]
    return float(np.mean(hits)) if hits else float("nan")

