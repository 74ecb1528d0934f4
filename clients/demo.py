"""Example searches against a running service: a text, an image, a text+image and a filtered
query, and a "more like this" recommendation (what `make demo` shows once the catalog serves).

    python -m clients.demo data/demo_catalog/catalog.jsonl --url localhost:8001
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from clients.connection import TlsOptions, add_connection_arguments, tls_from_args
from clients.contract import Filters
from clients.search import SearchClient, format_result


def pick_example_product(catalog_path: Path) -> dict:
    """A product of a held-out combination (never seen in training) for the photo queries."""
    products = [json.loads(line) for line in Path(catalog_path).read_text().splitlines() if line]
    photo = next((p for p in products if p.get("heldout")), products[0])
    image = Path(photo["image"])
    photo["image"] = str(image if image.is_absolute() else Path(catalog_path).parent / image)
    return photo


def run_examples(url: str, catalog_path: Path, top_k: int = 5, tls: TlsOptions | None = None, out=print) -> None:
    photo = pick_example_product(catalog_path)
    words = f"{photo['color']} {photo['pattern']} {photo['category']}"
    examples = [
        ("text", dict(text="red striped t-shirt")),
        (f"image of {photo['id']} ({photo['title']}, a held-out combination)", dict(image=photo["image"])),
        (f"image of {photo['id']} + the words '{words}'", dict(text=words, image=photo["image"])),
        ("text, only dresses up to 30.00", dict(text="striped summer outfit",
                                               filters=Filters(categories=["dress"], price_max=30.0))),
    ]
    with SearchClient(url, tls=tls) as client:
        for label, query in examples:
            out(f"\n== {label}")
            out(format_result(client.search(top_k=top_k, **query)))
        out(f"\n== recommend: more like {photo['id']} ({photo['title']})")
        out(format_result(client.recommend([photo["id"]], top_k=top_k)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m clients.demo", description=__doc__.split("\n")[0])
    parser.add_argument("catalog", type=Path, help="the demo catalog.jsonl (for the example photo)")
    parser.add_argument("--top-k", type=int, default=5)
    add_connection_arguments(parser)
    args = parser.parse_args(argv)
    run_examples(args.url, args.catalog, args.top_k, tls_from_args(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
