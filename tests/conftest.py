"""Shared fixtures. Integration tests run against a real tritonserver started once per session
on free loopback ports, serving a private copy of the model repository (the built demo weights
are linked, not copied) so tests never disturb a server started by `make serve`."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from productsearch.control.server import TritonServer  # noqa: E402
from productsearch.control.processes import free_ports  # noqa: E402
from productsearch.control.repository import built_generations, link_repository  # noqa: E402

MODEL_REPOSITORY = ROOT / "model_repository"
DEMO_CATALOG = ROOT / "data" / "demo_catalog" / "catalog.jsonl"


def require_built() -> None:
    if not built_generations(MODEL_REPOSITORY) or not DEMO_CATALOG.exists():
        pytest.fail("demo models are not built: run `make models` (make test does it first)")


def start_server(repository: Path, log_file: Path, load: list[str], extra_args: list[str] | None = None,
                 tls=None) -> TritonServer:
    http, grpc, metrics = free_ports(3)
    return TritonServer(model_repository=repository, http_port=http, grpc_port=grpc, metrics_port=metrics,
                        log_file=log_file, load_models=load, extra_args=extra_args or [], tls=tls).start()


@pytest.fixture(scope="session")
def triton(tmp_path_factory):
    """A real tritonserver serving the demo generation with the demo catalog indexed through it."""
    require_built()
    from productsearch.control.indexer import index_and_serve

    root = tmp_path_factory.mktemp("triton")
    repository = link_repository(MODEL_REPOSITORY, root / "model_repository", generations=[1])
    server = start_server(repository, root / "triton.log", [])
    try:
        index_and_serve(DEMO_CATALOG, server.grpc_url, repository, generation=1, headers=server.admin_headers,
                        log=lambda *a: None)
        yield server
    finally:
        server.stop()


SMALL_CATALOG_SIZE = 300


@pytest.fixture(scope="session")
def small_catalog_repository(triton, tmp_path_factory) -> Path:
    """A model repository (the demo generation 1, linked) whose scorer/1 holds a catalog of the
    first SMALL_CATALOG_SIZE demo products, encoded through the session server. Tests that start
    their own tritonserver link it (`link_repository(..., with_catalogs=True)`): nothing to index,
    and a catalog smaller than TOP_K's limit."""
    import json

    from productsearch.control.indexer import index_catalog

    root = tmp_path_factory.mktemp("small_catalog")
    catalog = root / "catalog.jsonl"
    with open(catalog, "w") as out:
        for line in DEMO_CATALOG.read_text().splitlines()[:SMALL_CATALOG_SIZE]:
            product = json.loads(line)
            product["image"] = str(DEMO_CATALOG.parent / product["image"])
            out.write(json.dumps(product) + "\n")
    repository = link_repository(MODEL_REPOSITORY, root / "model_repository", generations=[1])
    index_catalog(catalog, triton.grpc_url, repository, generation=1, log=lambda *a: None)
    return repository


@pytest.fixture(scope="session")
def demo_catalog() -> list[dict]:
    import json

    require_built()
    products = [json.loads(line) for line in DEMO_CATALOG.read_text().splitlines() if line]
    for product in products:
        image = Path(product["image"])
        product["image"] = str(image if image.is_absolute() else DEMO_CATALOG.parent / image)
    return products


@pytest.fixture
def search_client(triton):
    from clients.search import SearchClient

    with SearchClient(triton.grpc_url, timeout_s=30) as client:
        yield client
