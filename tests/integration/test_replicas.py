"""Stateless Triton replicas on one catalog store: two real tritonservers over the same repository
and store (SQLite in WAL mode is shared by processes on one host); a write through replica A is
read through replica B; a client given both addresses balances across them and, with retries,
fails no search when A is killed mid-load, and its writes go on through B."""
from __future__ import annotations


import pytest

from clients.catalog import CatalogClient
from clients.contract import Product, ReadOptions
from clients.search import SearchClient
from productsearch.control.processes import pid_alive
from productsearch.control.repository import link_repository
from tests.integration.replica_failover import kill_a_under_load_and_write_through_b
from tests.conftest import serve_generation, start_server

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def replicas(small_catalog_repository, tmp_path_factory):
    root = tmp_path_factory.mktemp("replicas")
    repository = link_repository(small_catalog_repository, root / "model_repository", generations=[1], with_catalogs=True)
    servers = []
    try:
        for name in ("a", "b"):
            server = start_server(repository, root / f"triton-{name}.log", [])
            servers.append(server)
            assert serve_generation(server, repository) == 1
        yield servers
    finally:
        for server in servers:
            if server.pid and pid_alive(server.pid):
                server.stop()


def test_a_write_through_one_replica_is_read_through_the_other(replicas):
    a, b = replicas
    with CatalogClient(a.grpc_url, timeout_s=60, key=a.key) as writer, SearchClient(b.grpc_url, timeout_s=30) as reader:
        sequence = writer.upsert([Product("REPLICA-1", "bright orange replica mug", None, {"category": "mug",
                                                                                          "sku": "RP-0001-OR"})])[0]
        found = reader.search("RP-0001-OR", top_k=3, read=ReadOptions(min_sequence=sequence))
        assert found.ids[0] == "REPLICA-1" and found.catalog_sequence >= sequence
        deleted = writer.delete(["REPLICA-1"])[0]
        assert "REPLICA-1" not in reader.search("RP-0001-OR", top_k=3, read=ReadOptions(min_sequence=deleted)).ids


def test_killing_one_replica_fails_no_search_and_writes_go_on(replicas):
    kill_a_under_load_and_write_through_b(*replicas)
