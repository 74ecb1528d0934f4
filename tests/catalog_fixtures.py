"""A catalog store written directly (no server), for unit tests of the scorer and the store: the
products of a list, with random text and image vectors, through the writer's own upsert path."""
from __future__ import annotations

import json
import os
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from productsearch.catalog.rows import ProductWrite
from productsearch.catalog.store import CATALOG_ENV, catalog_url, open_store, register_generation
from productsearch.core.vectors import fuse, normalize


def random_vectors(count: int, dim: int, seed: int, clusters: int | None = None) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if clusters:
        return normalize(rng.standard_normal((clusters, dim))[rng.integers(0, clusters, count)]
                         + 0.05 * rng.standard_normal((count, dim)))
    return normalize(rng.standard_normal((count, dim)))


def write_store(repository: Path, products: list[dict], text: np.ndarray, image: np.ndarray | None,
                generation: int = 1, shop: str = "default") -> np.ndarray:
    """Products (dicts with id, title and fields) with these vectors for `generation`, into the
    store beside `repository` (<repository>/catalog_store); returns the fused matrix the scorer
    will hold, rows in product order."""
    store = open_store(catalog_url(Path(repository)), shop)
    register_generation(catalog_url(Path(repository)), generation, 0.5)
    now = time.time()
    with store.transaction() as db:
        store.prefetch(db, generation, [p["id"] for p in products])
        for i, product in enumerate(products):
            fields = {k: v for k, v in product.items() if k not in ("id", "title")}
            store.upsert_one(db, generation, ProductWrite(product["id"], product.get("title") or product["id"], fields,
                                                          None if image is None else b"image",
                                                          text[i], None if image is None else image[i]), now)
    store.close()
    ones = np.ones(len(products), bool)
    return fuse(text, text if image is None else image, ones, ones if image is not None else ~ones)


def scorer_args(repository: Path, generation: int, parameters: dict | None = None, model: str = "scorer") -> dict:
    """The `initialize` arguments Triton gives a scorer (or `model`) of `repository` (version = generation)."""
    params = {k: {"string_value": str(v)} for k, v in (parameters or {}).items()}
    (Path(repository) / model / str(generation)).mkdir(parents=True, exist_ok=True)
    return {"model_config": json.dumps({"parameters": params}), "model_version": str(generation), "model_name": model,
            "model_repository": str(Path(repository) / model), "model_instance_kind": "CPU"}


STORE_KINDS = ("sqlite", "milvus")


@contextmanager
def catalog_store(kind: str, root: Path):
    """The catalog store the scorer and write_store use while the block runs: the embedded SQLite
    default (beside the repository), or an embedded milvus-lite database under `root`."""
    previous = os.environ.get(CATALOG_ENV)
    if kind == "milvus":
        os.environ[CATALOG_ENV] = f"milvus+lite://{Path(root) / 'milvus'}?images={Path(root) / 'images'}"
    else:
        os.environ.pop(CATALOG_ENV, None)
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(CATALOG_ENV, None)
        else:
            os.environ[CATALOG_ENV] = previous
