"""Index a catalog into generation N (server side): encode it through the served
`encode_product` (clients.index), install the embeddings and metadata as scorer/N's catalog
(atomic, checksummed, recorded in the generation's manifest), then swap `search` to N.

    python -m productsearch.control.indexer data/demo_catalog/catalog.jsonl [--generation N]
"""
from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

import numpy as np

from clients.connection import TlsOptions, add_connection_arguments, tls_from_args
from clients.index import encode_products, read_products
from productsearch.catalog.ann import EXACT_MAX_PRODUCTS, build_index
from productsearch.catalog.files import write_catalog
from productsearch.control.admin import admin_headers
from productsearch.control.deploy import Deployer
from productsearch.control.generations import manifest_path, record_catalog
from productsearch.control.paths import DEFAULT_MODEL_REPOSITORY
from productsearch.control.repository import latest_generation


def index_catalog(catalog_path: Path, url: str, model_repository: Path = DEFAULT_MODEL_REPOSITORY,
                  generation: int | None = None, concurrency: int = 32, log=print, tls: TlsOptions | None = None) -> Path:
    """Encode `catalog_path` through `encode_product` and install it as scorer/<generation>'s
    catalog (recorded in the generation's manifest). The served `encode_product` must be pinned
    to that generation's encoders (Deployer.activate_encoders); serving it is a separate swap."""
    catalog_path = Path(catalog_path)
    generation = generation or latest_generation(model_repository)
    products = read_products(catalog_path)
    log(f"indexing {len(products)} products from {catalog_path} into generation {generation} via {url}")
    started = time.monotonic()
    embeddings = asyncio.run(encode_products(url, products, concurrency, log=log, tls=tls))
    info = {"generation": generation, "source": str(catalog_path), "indexed_via": "encode_product",
            "index_seconds": round(time.monotonic() - started, 1)}
    path = write_catalog(Path(model_repository) / "scorer" / str(generation), embeddings, products, info)
    log(f"wrote catalog {path} ({len(products)} x {embeddings.shape[1]}) in {info['index_seconds']} s")
    if len(products) >= EXACT_MAX_PRODUCTS:  # the scorer searches large catalogs through an IVF index
        build_index(path, np.load(path / "embeddings.npy", mmap_mode="r"), log=log)
    if manifest_path(model_repository, generation).exists():
        record_catalog(model_repository, generation)
    return path


def index_and_serve(catalog_path: Path, url: str, model_repository: Path = DEFAULT_MODEL_REPOSITORY,
                    generation: int | None = None, headers: dict[str, str] | None = None,
                    serve: bool = True, concurrency: int = 32, log=print, tls: TlsOptions | None = None) -> Path:
    """Pin `encode_product` to the generation's encoders, index, then swap `search` to it."""
    generation = generation or latest_generation(model_repository)
    with Deployer(url, model_repository, headers or admin_headers(), log=log, tls=tls) as deployer:
        deployer.activate_encoders(generation)
        path = index_catalog(catalog_path, url, model_repository, generation, concurrency, log, tls)
        if serve:
            deployer.swap(generation)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m productsearch.control.indexer", description=__doc__.split("\n")[0])
    parser.add_argument("catalog", type=Path, help="catalog.jsonl (id, title, image, ...)")
    parser.add_argument("--model-repository", type=Path, default=DEFAULT_MODEL_REPOSITORY)
    parser.add_argument("--generation", type=int, default=None, help="default: latest built")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--no-serve", action="store_true", help="write the catalog but do not swap `search` to it")
    add_connection_arguments(parser)
    args = parser.parse_args(argv)
    index_and_serve(args.catalog, args.url, args.model_repository, args.generation,
                    serve=not args.no_serve, concurrency=args.concurrency, tls=tls_from_args(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
