"""The main job behind `make demo`: serve, index the demo catalog, run example searches.

Starts Triton in the background (or reuses the running one), brings back the generation that
served last; if the newest built generation is not serving yet, indexes the demo catalog through
its `encode_product` and swaps `search` to it; then runs the example searches of clients.demo.
Triton keeps serving.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from clients.demo import run_examples
from productsearch.control.admin import admin_headers
from productsearch.control.deploy import Deployer
from productsearch.control.indexer import index_and_serve
from productsearch.control.paths import DEFAULT_MODEL_REPOSITORY, DEMO_CATALOG
from productsearch.control.repository import latest_generation
from productsearch.control.server import TritonServer
from productsearch.control.service import start_background


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
    generation = latest_generation(repo)
    with Deployer(url, repo, admin_headers()) as deployer:
        serving = deployer.serving_generation() or deployer.restore()
        if serving != generation:
            index_and_serve(args.catalog, url, repo, generation)
        else:
            print(f"generation {generation} is built, indexed and serving; reusing it")
    run_examples(url, args.catalog, args.top_k)
    print(f"\nTriton keeps serving on {url}: try `.venv/bin/python -m clients.search \"blue mug\"`; "
          "stop it with `make stop`.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
