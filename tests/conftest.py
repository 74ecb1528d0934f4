"""Shared fixtures. Integration tests run against a real tritonserver started once per session
on free loopback ports, serving a private copy of the model repository (the built demo weights
are linked, not copied) so tests never disturb a server started by `make serve`."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from productsearch.launcher import TritonServer, free_ports  # noqa: E402
from productsearch.repository import built_generations, link_repository  # noqa: E402

MODEL_REPOSITORY = ROOT / "model_repository"
DEMO_CATALOG = ROOT / "data" / "demo_catalog" / "catalog.jsonl"


def require_built() -> None:
    if not built_generations(MODEL_REPOSITORY) or not DEMO_CATALOG.exists():
        pytest.fail("demo models are not built: run `make models` (make test does it first)")


def start_server(repository: Path, log_file: Path, load: list[str], extra_args: list[str] | None = None) -> TritonServer:
    http, grpc, metrics = free_ports(3)
    return TritonServer(model_repository=repository, http_port=http, grpc_port=grpc, metrics_port=metrics,
                        log_file=log_file, load_models=load, extra_args=extra_args or []).start()


@pytest.fixture(scope="session")
def triton(tmp_path_factory):
    """A real tritonserver serving the demo generation with the demo catalog indexed through it."""
    require_built()
    from clients.index import index_and_serve

    root = tmp_path_factory.mktemp("triton")
    repository = link_repository(MODEL_REPOSITORY, root / "model_repository", generations=[1])
    server = start_server(repository, root / "triton.log", [])
    try:
        index_and_serve(DEMO_CATALOG, server.grpc_url, repository, generation=1, headers=server.admin_headers,
                        log=lambda *a: None)
        yield server
    finally:
        server.stop()


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
