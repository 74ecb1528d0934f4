"""Re-encode a catalog for generation N from the store: the products whose vectors for N are
missing or stale (new encoders, writes since) are read from the store (title + the stored image
bytes), encoded through the served text_encoder/N and image_encoder/N (their version named in the
request, so it works beside the serving generation), and written back as N's vectors. Writes
that arrive meanwhile make their product stale again; a pass repeats until none is missing.

    python -m productsearch.control.rebuild N [--shop S]   # what a swap does before it switches
"""
from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

import numpy as np

from clients.connection import TlsOptions, add_connection_arguments, grpc_client, tls_from_args
from clients.contract import bytes_rows
from productsearch.catalog.sqlite.store import SqliteCatalog
from productsearch.catalog.store import catalog_url, list_shops, open_store, register_generation
from productsearch.runtime.generation_settings import generation_text_weight
from productsearch.control.paths import DEFAULT_MODEL_REPOSITORY

ROWS_PER_REQUEST = 32  # within the encoders' max_batch_size
IN_FLIGHT = 8


class Rebuilder:
    """Encodes store products through one generation's served encoders."""

    def __init__(self, url: str, tls: TlsOptions | None = None, log=print, timeout_s: float = 120.0):
        self.url, self.tls, self.log, self.timeout_s = url, tls, log, timeout_s

    async def _encode(self, client, model: str, generation: int, name: str, values: list[bytes]) -> np.ndarray:
        result = await client.infer(model, [bytes_rows(name, values)], model_version=str(generation),
                                    client_timeout=self.timeout_s)
        return result.as_numpy("EMBEDDING")

    async def _batch(self, client, generation: int, rows: list) -> list[tuple]:
        titles = [title.encode() for _, _, title, _ in rows]
        with_image = [i for i, row in enumerate(rows) if row[3]]
        calls = [self._encode(client, "text_encoder", generation, "TEXT", titles)]
        if with_image:
            calls.append(self._encode(client, "image_encoder", generation, "IMAGE", [rows[i][3] for i in with_image]))
        text_vectors, *rest = await asyncio.gather(*calls)
        image_vectors = rest[0] if rest else None
        images: list = [None] * len(rows)
        for j, i in enumerate(with_image):
            images[i] = image_vectors[j]
        return [(pid, seq, text_vectors[i], images[i]) for i, (pid, seq, _, _) in enumerate(rows)]

    async def _fill(self, store: SqliteCatalog, generation: int, leave: int) -> int:
        client = grpc_client(self.url, self.tls, aio=True)
        done, started, idle, last = 0, time.monotonic(), 0, None
        try:
            while True:
                todo = store.needing_vectors(generation, limit=ROWS_PER_REQUEST * IN_FLIGHT * 4)
                if not todo or (done and len(todo) <= leave):
                    return done
                before = done
                chunks = [todo[i:i + ROWS_PER_REQUEST] for i in range(0, len(todo), ROWS_PER_REQUEST)]
                for start in range(0, len(chunks), IN_FLIGHT):
                    encoded = await asyncio.gather(*(self._batch(client, generation, c) for c in chunks[start:start + IN_FLIGHT]))
                    done += store.put_vectors(generation, [v for batch in encoded for v in batch])
                # a product changed while it was encoded is skipped and comes back next pass (changed:
                # another content_seq, so not idle); a store that throws away the vectors of unchanged
                # products would loop here forever
                wanted = [(row[0], row[1]) for row in todo]
                idle = idle + 1 if done == before and wanted == last else 0
                last = wanted
                if idle >= 3:
                    raise RuntimeError(f"shop {store.shop!r}: generation {generation}'s vectors are not kept "
                                       f"({len(todo)} products still need them, e.g. {todo[0][0]!r})")
                self.log(f"  shop {store.shop!r}: {done} products encoded for generation {generation} "
                         f"({done / max(time.monotonic() - started, 1e-9):.0f}/s)")
        finally:
            await client.close()

    def fill(self, store: SqliteCatalog, generation: int, leave: int = 0) -> int:
        """Encode every product of the shop that lacks current vectors for the generation. With
        `leave` > 0 (a swap's pass while writes go on, which would otherwise chase them forever) it
        stops once a pass finds no more than `leave` to do: the pass after the write fence does the rest."""
        return asyncio.run(self._fill(store, generation, leave))


def register_generation_weight(store_url: str, repository: Path, generation: int) -> None:
    """Record N's fusion weight in the store: a store of fused vectors (Milvus) needs it before N's
    scorer or writer loads, and before the catalog is encoded for N."""
    register_generation(store_url, generation, generation_text_weight(Path(repository), generation))


def prepare_generation(store: SqliteCatalog, generation: int, encoders: dict, log=print) -> None:
    """Vectors of generation N made by other encoders (N rebuilt in place) are dropped first."""
    recorded = store.meta(f"encoders:{generation}")
    if recorded is not None and recorded != encoders:
        log(f"  shop {store.shop!r}: generation {generation}'s encoders changed since its vectors were made; re-encoding")
        store.drop_generation(generation)
    store.set_meta(f"encoders:{generation}", encoders)


def main(argv: list[str] | None = None) -> int:
    from productsearch.control.generations import read_manifest

    parser = argparse.ArgumentParser(prog="python -m productsearch.control.rebuild", description=__doc__.split("\n")[0])
    parser.add_argument("generation", type=int)
    parser.add_argument("--shop", action="append", help="default: every shop")
    parser.add_argument("--model-repository", default=str(DEFAULT_MODEL_REPOSITORY))
    add_connection_arguments(parser)
    args = parser.parse_args(argv)
    store_url = catalog_url(args.model_repository)
    rebuilder = Rebuilder(args.url, tls_from_args(args))
    encoders = read_manifest(args.model_repository, args.generation).get("encoders", {})
    register_generation_weight(store_url, args.model_repository, args.generation)
    for shop in args.shop or list_shops(store_url):
        store = open_store(store_url, shop, create=False)
        prepare_generation(store, args.generation, encoders)
        print(f"shop {shop!r}: {rebuilder.fill(store, args.generation)} products encoded")
    return 0


if __name__ == "__main__":
    sys.exit(main())
