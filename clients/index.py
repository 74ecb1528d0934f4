"""Bulk loader: a product catalog into the live service through `upsert_products`, from any
machine that reaches the gRPC port.

    python -m clients.index data/demo_catalog/catalog.jsonl --url host:8001 [--shop S]

A catalog file is JSONL, one product a line: `id`, `title`, `image` (a path relative to the
file, optional), and any other scalar keys as its fields (category, price, brand, sku, stock,
...). Products go `batch` to a request (default 16; fewer calls, the same encoder batches) with
many requests in flight (tritonclient's asyncio client), so Triton's dynamic batcher fills the
encoders' batches. A request is atomic, so when one is refused (INVALID_ARGUMENT, NOT_FOUND) its
products are sent again one by one: a bad record fails alone, reported with the server's
message, and the load goes on. Retries follow the client policy
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
from clients.contract import UPSERT, Product, key_headers, upsert_inputs

RECORD_KEYS = ("id", "title", "image")
DEFAULT_BATCH = 16
# A refused request is sent again product by product (the bad record fails alone); other
# failures (the server gone past the retries) fail its products as they are.
REFUSALS = ("StatusCode.INVALID_ARGUMENT", "StatusCode.NOT_FOUND")


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
                              timeout_s: float = 60.0, batch: int = DEFAULT_BATCH) -> LoadReport:
    client = grpc_client(url, tls, aio=True)
    headers = key_headers(key)
    policy = RetryPolicy(timeout_s=timeout_s, retries=5)
    report = LoadReport()
    queue = [products[i:i + batch] for i in range(0, len(products), max(1, batch))][::-1]
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(products), unit="product", desc="upsert_products", file=sys.stderr)
    started = time.monotonic()

    async def send(group: list[Product]) -> None:
        try:
            result = await infer_async(client, UPSERT, upsert_inputs(group, shop), ["SEQUENCE"], policy, headers)
        except (ServiceError, OSError) as err:  # OSError: an unreadable image file
            if len(group) > 1 and not (isinstance(err, ServiceError) and err.status not in REFUSALS):
                for product in group:  # find the bad record(s): the others go in
                    await send([product])
                return
            why = f"{err.status}: {err.message}" if isinstance(err, ServiceError) else f"image: {err}"
            report.failed += [(product.id, why) for product in group]
        else:
            report.written += len(group)
            report.sequence = max(report.sequence, int(result.as_numpy("SEQUENCE").max()))
        if bar is not None:
            bar.update(len(group))

    async def worker() -> None:
        while queue:
            await send(queue.pop())

    try:
        await asyncio.gather(*(worker() for _ in range(max(1, min(concurrency, len(products))))))
    finally:
        await client.close()
        if bar is not None:
            bar.close()
    report.seconds = time.monotonic() - started
    return report


def load_products(url: str, products: list[Product], concurrency: int = 32, key: str | None = None,
                  shop: str | None = None, tls: TlsOptions | None = None, progress: bool = True,
                  batch: int = DEFAULT_BATCH) -> LoadReport:
    """Upsert every product, `batch` a request, `concurrency` requests in flight."""
    return asyncio.run(load_products_async(url, products, concurrency, key, shop, tls, progress, batch=batch))


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
