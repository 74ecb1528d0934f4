"""Bulk loader: a product catalog into the live service through `upsert_products`, from any
machine that reaches the gRPC port.

    python -m clients.index data/demo_catalog/catalog.jsonl --url host:8001 [--shop S]

A catalog file is JSONL, one product a line: `id`, `title`, `image` (a path relative to the
file, optional), and any other scalar keys as its fields (category, price, brand, sku, stock,
...). Products go one per request with many requests in flight (tritonclient's asyncio client),
so Triton's dynamic batcher fills the encoders' batches and a bad record fails alone: it is
reported with the server's message and the load goes on. Retries follow the client policy
(clients.connection). A progress bar shows the rate and the time left (tqdm). The report's
`sequence` is the highest SEQUENCE acknowledged: a search with that MIN_SEQUENCE sees them all.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from clients.connection import (RetryPolicy, ServiceError, TlsOptions, add_connection_arguments, admin_key, grpc_client,
                                infer_async, tls_from_args)
from clients.contract import UPSERT, WRITE_KEY_HEADER, Product, upsert_inputs

RECORD_KEYS = ("id", "title", "image")


def read_products(catalog_path: Path) -> list[Product]:
    """Products of a catalog.jsonl; `image` paths are resolved against the file's folder, every
    other key is a field (the demo's `heldout` bookkeeping flag is not one)."""
    catalog_path = Path(catalog_path)
    products = []
    with open(catalog_path, encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            record = json.loads(line)
            if not isinstance(record, dict) or not record.get("id"):
                raise ValueError(f"{catalog_path}:{number}: a product needs an id")
            image = record.get("image")
            if image:
                image = Path(image) if Path(image).is_absolute() else catalog_path.parent / image
            fields = {k: v for k, v in record.items() if k not in RECORD_KEYS and k != "heldout"}
            products.append(Product(str(record["id"]), str(record.get("title", "")), image, fields))
    return products


@dataclass
class LoadReport:
    written: int = 0
    sequence: int = 0
    seconds: float = 0.0
    failed: list[tuple[str, str]] = field(default_factory=list)  # (product id, why)

    @property
    def rate(self) -> float:
        return self.written / self.seconds if self.seconds else 0.0

    def summary(self) -> str:
        lines = [f"{self.written} products written in {self.seconds:.1f} s ({self.rate:.0f}/s), "
                 f"last sequence {self.sequence}, {len(self.failed)} failed"]
        lines += [f"  {pid}: {why}" for pid, why in self.failed[:20]]
        if len(self.failed) > 20:
            lines.append(f"  ... and {len(self.failed) - 20} more")
        return "\n".join(lines)


async def load_products_async(url: str, products: list[Product], concurrency: int = 32, key: str | None = None,
                              shop: str | None = None, tls: TlsOptions | None = None, progress: bool = True,
                              timeout_s: float = 60.0) -> LoadReport:
    client = grpc_client(url, tls, aio=True)
    headers = {WRITE_KEY_HEADER: key} if key else {}
    policy = RetryPolicy(timeout_s=timeout_s, retries=5)
    report, queue = LoadReport(), list(range(len(products)))[::-1]
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(products), unit="product", desc="upsert_products", file=sys.stderr)
    started = time.monotonic()

    async def worker() -> None:
        while queue:
            product = products[queue.pop()]
            try:
                result = await infer_async(client, UPSERT, upsert_inputs([product], shop), ["SEQUENCE"], policy, headers)
                report.written += 1
                report.sequence = max(report.sequence, int(result.as_numpy("SEQUENCE").reshape(-1)[0]))
            except ServiceError as err:
                report.failed.append((product.id, f"{err.status}: {err.message}"))
            except OSError as err:  # an unreadable image file
                report.failed.append((product.id, f"image: {err}"))
            if bar is not None:
                bar.update(1)

    try:
        await asyncio.gather(*(worker() for _ in range(max(1, min(concurrency, len(products))))))
    finally:
        await client.close()
        if bar is not None:
            bar.close()
    report.seconds = time.monotonic() - started
    return report


def load_products(url: str, products: list[Product], concurrency: int = 32, key: str | None = None,
                  shop: str | None = None, tls: TlsOptions | None = None, progress: bool = True) -> LoadReport:
    """Upsert every product, `concurrency` requests in flight."""
    return asyncio.run(load_products_async(url, products, concurrency, key, shop, tls, progress))


def load_catalog_file(path: Path, url: str, concurrency: int = 32, key: str | None = None,
                      key_file: str | Path | None = None, shop: str | None = None, tls: TlsOptions | None = None,
                      progress: bool = True) -> LoadReport:
    return load_products(url, read_products(path), concurrency, key or admin_key(key_file), shop, tls, progress)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m clients.index", description=__doc__.split("\n")[0])
    parser.add_argument("catalog", type=Path, help="catalog.jsonl (id, title, image, fields...)")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--shop", default=None)
    parser.add_argument("--key", default=None, help="the admin key (default: PRODUCTSEARCH_ADMIN_KEY or --key-file)")
    parser.add_argument("--key-file", default="run/admin_key")
    parser.add_argument("--no-progress", action="store_true")
    add_connection_arguments(parser)
    args = parser.parse_args(argv)
    report = load_catalog_file(args.catalog, args.url, args.concurrency, args.key, args.key_file, args.shop,
                               tls_from_args(args), progress=not args.no_progress)
    print(report.summary())
    return 0 if not report.failed else 1


if __name__ == "__main__":
    sys.exit(main())
