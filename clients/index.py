"""Encode a product catalog through the served `encode_product` ensemble (the client side of
indexing: gRPC only).

    python -m clients.index data/demo_catalog/catalog.jsonl --out embeddings.npy

Streams every product (title + image bytes) over gRPC with many requests in flight
(tritonclient's asyncio client) so Triton's dynamic batcher can fill batches, and returns the
fused embeddings in catalog order. Installing them as a generation's catalog is a server-side
step (productsearch.control.indexer, `make index`).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

import numpy as np

from clients.connection import TlsOptions, add_connection_arguments, grpc_client, tls_from_args
from clients.contract import ENCODE_PRODUCT, encode_inputs


def read_products(catalog_path: Path) -> list[dict]:
    """Products from a catalog.jsonl; `image` paths are resolved against the file's folder."""
    catalog_path = Path(catalog_path)
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


def product_inputs(title: str, image: bytes, module=None) -> list:
    """The inputs of one `encode_product` call (`module` is accepted for older callers)."""
    return encode_inputs(title, image)


async def encode_products(url: str, products: list[dict], concurrency: int = 32, timeout_s: float = 60.0,
                          log=print, tls: TlsOptions | None = None) -> np.ndarray:
    """Fused embeddings for all products, in order, with `concurrency` requests in flight."""
    client = grpc_client(url, tls, aio=True)
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
            result = await client.infer(ENCODE_PRODUCT, encode_inputs(product["title"], image), client_timeout=timeout_s)
            embeddings[index] = result.as_numpy("EMBEDDING").reshape(-1)
            done += 1
            if done % 1000 == 0 or done == len(products):
                log(f"  encoded {done}/{len(products)} products ({done / (time.monotonic() - started):.0f}/s)")

    try:
        await asyncio.gather(*(worker() for _ in range(min(concurrency, len(products)))))
    finally:
        await client.close()
    return np.stack(embeddings).astype(np.float32)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m clients.index", description=__doc__.split("\n")[0])
    parser.add_argument("catalog", type=Path, help="catalog.jsonl (id, title, image, ...)")
    parser.add_argument("--out", type=Path, required=True, help="where to write the embeddings (.npy)")
    parser.add_argument("--concurrency", type=int, default=32)
    add_connection_arguments(parser)
    args = parser.parse_args(argv)
    embeddings = asyncio.run(encode_products(args.url, read_products(args.catalog), args.concurrency,
                                             tls=tls_from_args(args)))
    np.save(args.out, embeddings)
    print(f"wrote {args.out} ({embeddings.shape[0]} x {embeddings.shape[1]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
