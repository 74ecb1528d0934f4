"""Example searches against a running service: an English and two Chinese text queries, an image,
a text+image and a filtered query, a "more like this" recommendation, and live catalog writes (what `make demo` shows once
the catalog serves).

    python -m productsearch.control.demo_searches data/demo_catalog/catalog.jsonl --url localhost:8001 [--key KEY]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from clients.catalog import CatalogClient
from clients.connection import TlsOptions, add_connection_arguments, tls_from_args
from clients.contract import Filters, Product, ReadOptions
from clients.search import SearchClient, format_result


def pick_example_product(catalog_path: Path) -> dict:
    """A product of a held-out combination (never seen in training) for the photo queries."""
    products = [json.loads(line) for line in Path(catalog_path).read_text().splitlines() if line]
    photo = next((p for p in products if p.get("heldout")), products[0])
    image = Path(photo["image"])
    photo["image"] = str(image if image.is_absolute() else Path(catalog_path).parent / image)
    return photo


def run_examples(url: str, catalog_path: Path, top_k: int = 5, tls: TlsOptions | None = None, out=print,
                 min_sequence: int = 0) -> None:
    photo = pick_example_product(catalog_path)
    words = f"{photo['color']} {photo['pattern']} {photo['category']}"
    examples = [
        ("text", dict(text="red striped t-shirt")),
        ("text in Chinese: 红色口红 (red lipstick)", dict(text="红色口红")),
        ("text in Chinese: 连衣裙 (dress)", dict(text="连衣裙")),
        (f"image of {photo['id']} ({photo['title']}, a held-out combination)", dict(image=photo["image"])),
        (f"image of {photo['id']} + the words '{words}'", dict(text=words, image=photo["image"])),
        ("text, only dresses up to 30.00", dict(text="striped summer outfit",
                                               filters=Filters(categories=["dress"], price_max=30.0))),
    ]
    with SearchClient(url, tls=tls) as client:
        for label, query in examples:
            out(f"\n== {label}")
            out(format_result(client.search(top_k=top_k, read=ReadOptions(min_sequence=min_sequence), **query)))
        out(f"\n== recommend: more like {photo['id']} ({photo['title']})")
        out(format_result(client.recommend([photo["id"]], top_k=top_k)))


LIVE_ID = "DEMO-LIVE-1"


def run_live_examples(url: str, catalog_path: Path, key: str | None = None, tls: TlsOptions | None = None,
                      out=print) -> None:
    """A product upserted and found at once (read-your-writes through MIN_SEQUENCE), its price
    changed so it moves in and out of a price filter, then deleted (so the demo can run again)."""
    photo = pick_example_product(catalog_path)
    title = f"Limited edition {photo['color']} {photo['pattern']} {photo['category']}, demo upsert"
    with CatalogClient(url, tls=tls, key=key) as catalog, SearchClient(url, tls=tls) as search:
        sequence = catalog.upsert([Product(LIVE_ID, title, photo["image"],
                                           {"category": photo["category"], "price": 19.99, "brand": "Demo"})])[0]
        out(f"\n== live: upserted {LIVE_ID} ({title!r}), durable at sequence {sequence}")
        # TEXT_WEIGHT 1: ranked by the titles' words alone (the photo is an existing product's)
        found = search.search("limited edition demo upsert", top_k=3, text_weight=1.0,
                              read=ReadOptions(min_sequence=sequence))
        out(format_result(found))
        cheap = Filters(categories=[photo["category"]], price_max=20.0)
        for price in (19.99, 99.0):
            sequence = catalog.update_fields({LIVE_ID: {"price": price}})[0]
            hit = LIVE_ID in search.search(title, top_k=5, text_weight=1.0, filters=cheap,
                                           read=ReadOptions(min_sequence=sequence)).ids
            out(f"== live: price {price:.2f} (sequence {sequence}): {LIVE_ID} "
                f"{'is' if hit else 'is not'} among the {photo['category']} products up to 20.00")
        sequence = catalog.delete([LIVE_ID])[0]
        gone = LIVE_ID not in search.search(title, top_k=10, text_weight=1.0, read=ReadOptions(min_sequence=sequence)).ids
        out(f"== live: deleted {LIVE_ID} (sequence {sequence}); {'never returned again' if gone else 'STILL RETURNED'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m productsearch.control.demo_searches", description=__doc__.split("\n")[0])
    parser.add_argument("catalog", type=Path, help="the demo catalog.jsonl (for the example photo)")
    parser.add_argument("--top-k", type=int, default=5)
    parser.add_argument("--key", default=None, help="admin key for the live writes (default: PRODUCTSEARCH_ADMIN_KEY "
                        "or run/admin_key); without one the writes are skipped")
    add_connection_arguments(parser)
    args = parser.parse_args(argv)
    run_examples(args.url, args.catalog, args.top_k, tls_from_args(args))
    run_live_examples(args.url, args.catalog, args.key, tls_from_args(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
