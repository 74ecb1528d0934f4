"""The main job behind `make demo`: serve, index the demo catalog, run example searches.

Starts Triton in the background (or reuses the running one), brings back the generation that
served last; if the newest built generation is not serving yet, indexes the demo catalog through
its `encode_product` and swaps `search` to it; then runs a text, an image, a text+image and a
filtered query and a "more like this", and prints the top products. Triton keeps serving.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from clients.index import DEFAULT_REPOSITORY, index_and_serve
from clients.search import Filters, SearchClient, format_result
from productsearch.launcher import TritonServer, admin_headers, start_background
from productsearch.deploy import Deployer
from productsearch.repository import latest_generation

DEFAULT_CATALOG = Path(__file__).resolve().parent.parent / "data" / "demo_catalog" / "catalog.jsonl"


def pick_example_product(catalog_path: Path) -> dict:
    """A product of a held-out combination (never seen in training) for the photo queries."""
    products = [json.loads(line) for line in catalog_path.read_text().splitlines() if line]
    photo = next((p for p in products if p.get("heldout")), products[0])
    image = Path(photo["image"])
    photo["image"] = str(image if image.is_absolute() else catalog_path.parent / image)
    return photo


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m clients.demo", description=__doc__.split("\n")[0])
    parser.add_argument("--catalog", type=Path, default=DEFAULT_CATALOG)
    parser.add_argument("--model-repository", type=Path, default=DEFAULT_REPOSITORY)
    parser.add_argument("--top-k", type=int, default=5)
    args = parser.parse_args(argv)

    repo = args.model_repository
    state = start_background(TritonServer(model_repository=repo))
    url = f"{state['host']}:{state['grpc_port']}"
    print(f"Triton serving on {url} (pid {state['pid']}, log {state['log_file']})")
    generation = latest_generation(repo)
    with Deployer(url, repo, admin_headers()) as deployer:
        serving = deployer.serving_generation() or deployer.restore()
        if serving != generation:
            index_and_serve(args.catalog, url, repo, generation)
        else:
            print(f"generation {generation} is built, indexed and serving; reusing it")

    photo = pick_example_product(args.catalog)
    examples = [
        ("text", dict(text="red striped t-shirt")),
        (f"image of {photo['id']} ({photo['title']}, a held-out combination)", dict(image=photo["image"])),
        (f"image of {photo['id']} + the words '{photo['color']} {photo['pattern']} {photo['category']}'",
         dict(text=f"{photo['color']} {photo['pattern']} {photo['category']}", image=photo["image"])),
    ]
    examples.append(("text, only dresses up to 30.00", dict(text="striped summer outfit",
                                                           filters=Filters(categories=["dress"], price_max=30.0))))
    with SearchClient(url) as client:
        for label, query in examples:
            print(f"\n== {label}")
            print(format_result(client.search(top_k=args.top_k, **query)))
        print(f"\n== recommend: more like {photo['id']} ({photo['title']})")
        print(format_result(client.recommend([photo["id"]], top_k=args.top_k)))
    print(f"\nTriton keeps serving on {url}: try `.venv/bin/python -m clients.search \"blue mug\"`; "
          "stop it with `make stop`.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
