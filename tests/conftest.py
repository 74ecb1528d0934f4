"""Shared fixtures. Integration tests run against a real tritonserver started once per session
on free loopback ports, serving a private copy of the model repository (the built demo weights
are linked, not copied) so tests never disturb a server started by `make serve`."""
from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from productsearch.catalog.index.tail_pause import HOOKS_ENV  # noqa: E402
from productsearch.control.server import TritonServer  # noqa: E402
from productsearch.control.processes import free_ports  # noqa: E402
from productsearch.control.repository import built_generations, link_repository  # noqa: E402

MODEL_REPOSITORY = ROOT / "model_repository"
DEMO_CATALOG = ROOT / "data" / "demo_catalog" / "catalog.jsonl"


def require_built() -> None:
    if not built_generations(MODEL_REPOSITORY) or not DEMO_CATALOG.exists():
        pytest.fail("demo models are not built: run `make models` (make test does it first)")


def start_server(repository: Path, log_file: Path, load: list[str], extra_args: list[str] | None = None,
                 tls=None, catalog_url: str | None = None) -> TritonServer:
    http, grpc, metrics = free_ports(3)
    return TritonServer(model_repository=repository, http_port=http, grpc_port=grpc, metrics_port=metrics,
                        log_file=log_file, load_models=load, extra_args=extra_args or [], tls=tls,
                        catalog_url=catalog_url).start()


def serve_generation(server: TritonServer, repository: Path) -> int:
    """The generation a fresh server brings back (the catalog re-encoded where it lacks vectors);
    the deploy tools read the server's catalog store (its catalog_url, else beside the repository)."""
    from loadtest.private_server import restore

    return restore(server, repository)


def load_catalog(server: TritonServer, products) -> int:
    """Upsert these products (clients.contract.Product) through the server; the last sequence."""
    from clients.index import load_products

    report = load_products(server.grpc_url, products, key=server.key, progress=False)
    assert not report.failed, report.summary()
    return report.sequence


@pytest.fixture(scope="session")
def triton(tmp_path_factory):
    """A real tritonserver serving the demo generation, the demo catalog loaded through
    upsert_products (its store: <repository>/catalog_store, private to this server)."""
    require_built()
    from clients.index import read_products

    from productsearch.control.processes import pid_alive

    root = tmp_path_factory.mktemp("triton")
    repository = link_repository(MODEL_REPOSITORY, root / "model_repository", generations=[1])
    # test hooks on for the servers tests start (catalog/index/tail_pause.py); never set in production
    hooks = root / "test_hooks"
    hooks.mkdir()
    os.environ[HOOKS_ENV] = str(hooks)
    for attempt in range(2):
        server = start_server(repository, root / f"triton-{attempt}.log" if attempt else root / "triton.log", [])
        try:
            serve_generation(server, repository)
            server.repository, server.test_hooks = repository, hooks
            server.demo_sequence = load_catalog(server, read_products(DEMO_CATALOG))  # upserts: safe to repeat
            break
        except Exception:
            died = not pid_alive(server.pid)
            server.stop()
            if attempt or not died:
                raise
            # Triton 2.51 sometimes segfaults in the python backend's ResponseSend under load
            # (server issue #7368; the supervisor restarts it in service): start it once more, and
            # say so in the summary (a crash is never hidden)
            warnings.warn(pytest.PytestWarning(
                f"the session tritonserver died while starting (log: {root / 'triton.log'}); started it once more"))
    try:
        yield server
    finally:
        crashed = server.pid is not None and not pid_alive(server.pid)
        server.stop()
        if crashed:  # reported as an error of the last test that used it, with the log's tail
            pytest.fail(f"the session tritonserver died during the suite; its log ends:\n{server.log_tail(40)}")


SMALL_CATALOG_SIZE = 300


@pytest.fixture(scope="session")
def small_catalog_repository(triton, tmp_path_factory) -> Path:
    """A model repository (the demo generation 1, linked) whose catalog store holds the first
    SMALL_CATALOG_SIZE demo products with their generation-1 vectors, copied from the session
    server's store. Tests that start their own tritonserver link it (`link_repository(...,
    with_catalogs=True)` copies the store): nothing to encode, and a catalog smaller than TOP_K's
    limit."""
    from clients.index import read_products
    from productsearch.catalog.sqlite.bulk import copy_catalog
    from productsearch.catalog.store import catalog_url, open_store, store_root

    root = tmp_path_factory.mktemp("small_catalog")
    repository = link_repository(MODEL_REPOSITORY, root / "model_repository", generations=[1])
    ids = [p.id for p in read_products(DEMO_CATALOG)[:SMALL_CATALOG_SIZE]]
    copy_catalog(open_store(catalog_url(triton.repository)), store_root(catalog_url(repository)), ids).close()
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


@pytest.fixture
def keyed_search_client(triton):
    """A search client with the session server's admin key (searches of private shops)."""
    from clients.search import SearchClient

    with SearchClient(triton.grpc_url, timeout_s=30, key=triton.key) as client:
        yield client


@pytest.fixture
def catalog_client(triton):
    """A client with the session server's admin key (catalog writes)."""
    from clients.catalog import CatalogClient

    with CatalogClient(triton.grpc_url, timeout_s=30, key=triton.key) as client:
        yield client
