"""Index a product catalog through the served `encode_product` ensemble.

    python -m clients.index data/demo_catalog/catalog.jsonl

Streams every product (title + image bytes) over gRPC with many requests in flight
(tritonclient's asyncio client) so Triton's dynamic batcher can fill batches, writes the fused
embeddings and metadata as the scorer's catalog for the generation (atomic, checksummed), then
swaps `search` to that generation (productsearch.deploy) unless --no-serve.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

import numpy as np
import tritonclient.grpc.aio as aioclient

from productsearch.catalog_store import EXACT_MAX_PRODUCTS, build_index, write_catalog
from productsearch.deploy import Deployer
from productsearch.generations import manifest_path, record_catalog
from productsearch.launcher import admin_headers
from productsearch.repository import latest_generation

DEFAULT_REPOSITORY = Path(__file__).resolve().parent.parent / "model_repository"


def read_products(catalog_path: Path) -> list[dict]:
    """Products from a catalog.jsonl; `image` paths are resolved against the file's folder."""
    products = []
    with open(catalog_path) as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            product = json.loads(line)
            missing = {"id", "title", "image"} - product.keys()
            if missing:
                raise ValueError(f"{catalog_path}:{number}: product lacks {sorted(missing)}")
            image = Path(product["image"])
            product["image"] = str(image if image.is_absolute() else catalog_path.parent / image)
            products.append(product)
    return products


def product_inputs(title: str, image: bytes, module=aioclient) -> list:
    inputs = []
    for name, value in (("TITLE", title.encode("utf-8")), ("IMAGE", image)):
        tensor = module.InferInput(name, [1, 1], "BYTES")
        tensor.set_data_from_numpy(np.array([[value]], dtype=object))
        inputs.append(tensor)
    return inputs


async def encode_products(url: str, products: list[dict], concurrency: int = 32, timeout_s: float = 60.0,
                          log=print) -> np.ndarray:
    """Fused embeddings for all products, in order, with `concurrency` requests in flight."""
    client = aioclient.InferenceServerClient(url)
    embeddings: list[np.ndarray | None] = [None] * len(products)
    queue: asyncio.Queue = asyncio.Queue()
    for index in range(len(products)):
        queue.put_nowait(index)
    done = 0
    started = time.monotonic()

    async def worker() -> None:
        nonlocal done
        while not queue.empty():
            index = queue.get_nowait()
            product = products[index]
            image = Path(product["image"]).read_bytes()
            result = await client.infer("encode_product", product_inputs(product["title"], image),
                                        client_timeout=timeout_s)
            embeddings[index] = result.as_numpy("EMBEDDING").reshape(-1)
            done += 1
            if done % 1000 == 0 or done == len(products):
                log(f"  encoded {done}/{len(products)} products ({done / (time.monotonic() - started):.0f}/s)")

    try:
        await asyncio.gather(*(worker() for _ in range(min(concurrency, len(products)))))
    finally:
        await client.close()
    return np.stack(embeddings).astype(np.float32)


def index_catalog(catalog_path: Path, url: str, model_repository: Path = DEFAULT_REPOSITORY,
                  generation: int | None = None, concurrency: int = 32, log=print) -> Path:
    """Encode `catalog_path` through `encode_product` and install it as scorer/<generation>'s
    catalog (recorded in the generation's manifest). The served `encode_product` must be pinned
    to that generation's encoders (Deployer.activate_encoders); serving it is a separate swap."""
    catalog_path = Path(catalog_path)
    generation = generation or latest_generation(model_repository)
    products = read_products(catalog_path)
    log(f"indexing {len(products)} products from {catalog_path} into generation {generation} via {url}")
    started = time.monotonic()
    embeddings = asyncio.run(encode_products(url, products, concurrency, log=log))
    info = {"generation": generation, "source": str(catalog_path), "indexed_via": "encode_product",
            "index_seconds": round(time.monotonic() - started, 1)}
    path = write_catalog(Path(model_repository) / "scorer" / str(generation), embeddings, products, info)
    log(f"wrote catalog {path} ({len(products)} x {embeddings.shape[1]}) in {info['index_seconds']} s")
    if len(products) >= EXACT_MAX_PRODUCTS:  # the scorer searches large catalogs through an IVF index
        build_index(path, np.load(path / "embeddings.npy", mmap_mode="r"), log=log)
    if manifest_path(model_repository, generation).exists():
        record_catalog(model_repository, generation)
    return path


def index_and_serve(catalog_path: Path, url: str, model_repository: Path = DEFAULT_REPOSITORY,
                    generation: int | None = None, headers: dict[str, str] | None = None,
                    serve: bool = True, concurrency: int = 32, log=print) -> Path:
    """Pin `encode_product` to the generation's encoders, index, then swap `search` to it."""
    generation = generation or latest_generation(model_repository)
    with Deployer(url, model_repository, headers or admin_headers(), log=log) as deployer:
        deployer.activate_encoders(generation)
        path = index_catalog(catalog_path, url, model_repository, generation, concurrency, log)
        if serve:
            deployer.swap(generation)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m clients.index", description=__doc__.split("\n")[1])
    parser.add_argument("catalog", type=Path, help="catalog.jsonl (id, title, image, ...)")
    parser.add_argument("--url", default="localhost:8001")
    parser.add_argument("--model-repository", type=Path, default=DEFAULT_REPOSITORY)
    parser.add_argument("--generation", type=int, default=None, help="default: latest built")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--no-serve", action="store_true", help="write the catalog but do not swap `search` to it")
    args = parser.parse_args(argv)
    index_and_serve(args.catalog, args.url, args.model_repository, args.generation,
                    serve=not args.no_serve, concurrency=args.concurrency)
    return 0


if __name__ == "__main__":
    sys.exit(main())
