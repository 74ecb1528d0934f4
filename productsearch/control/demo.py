"""The main job behind `make demo`: serve, load the demo catalog, run example searches.

Starts Triton in the background (or reuses the running one) and brings back the generation that
served last (its catalog re-encoded from the catalog store where needed); loads the demo catalog
through `upsert_products` when the store does not hold it yet (or holds other titles, e.g. the
English-only catalog of before); then runs the example searches of
productsearch.control.demo_searches, including a live write: a new product upserted and found at once (MIN_SEQUENCE),
and a price change moving a product in and out of a price filter. Triton keeps serving.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from productsearch.control.demo_searches import run_examples, run_live_examples
from clients.index import load_catalog_file, read_products
from productsearch.catalog.store import catalog_url, open_store
from productsearch.control.admin import admin_headers, admin_key
from productsearch.control.deploy.swap import Deployer
from productsearch.control.paths import DEFAULT_MODEL_REPOSITORY, DEMO_CATALOG
from productsearch.control.server import TritonServer
from productsearch.control.service import start_background


def load_demo_catalog(url: str, repository: Path, catalog: Path, key: str, log=print) -> int:
    """Upsert the demo catalog unless the store already holds all of it; the last sequence."""
    store = open_store(catalog_url(repository))
    wanted = {p.id: p.title for p in read_products(catalog)}
    have = sum(1 for pid, title in wanted.items() if (stored := store.product(pid)) is not None and stored["title"] == title)
    head = store.head()
    store.close()
    if have == len(wanted):
        log(f"the catalog store holds the {have} demo products (sequence {head}); not loading them again")
        return head
    log(f"loading {len(wanted) - have} of {len(wanted)} demo products through upsert_products")
    report = load_catalog_file(catalog, url, key=key)
    log(report.summary())
    if report.failed:
        raise SystemExit("the demo catalog did not load completely")
    return report.sequence


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m productsearch.control.demo", description=__doc__.split("\n")[0])
    parser.add_argument("--catalog", type=Path, default=DEMO_CATALOG)
    parser.add_argument("--model-repository", type=Path, default=DEFAULT_MODEL_REPOSITORY)
    parser.add_argument("--top-k", type=int, default=5)
    args = parser.parse_args(argv)

    repo = args.model_repository
    state = start_background(TritonServer(model_repository=repo))
    url = f"{state['host']}:{state['grpc_port']}"
    print(f"Triton serving on {url} (pid {state['pid']}, log {state['log_file']})")
    with Deployer(url, repo, admin_headers()) as deployer:
        generation = deployer.serving_generation() or deployer.restore()
    print(f"generation {generation} serving")
    sequence = load_demo_catalog(url, repo, args.catalog, admin_key())
    run_examples(url, args.catalog, args.top_k, min_sequence=sequence)
    run_live_examples(url, args.catalog, key=admin_key())
    print(f"\nTriton keeps serving on {url}: try `.venv/bin/python -m clients.search \"blue mug\"`; "
          "stop it with `make stop`.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
