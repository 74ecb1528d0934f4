"""Stateless Triton replicas on Milvus: two real tritonservers whose catalog is one shared Milvus
(a real `milvus-lite server` here: the same pymilvus client code talks to Milvus standalone or a
cluster). Products written through replica A are searched in Milvus by replica B; filters and
facets run inside Milvus; two shops with the same ids stay apart; an acknowledged write
survives kill -9 of the Milvus server; both replicas swap generations together under searches
and writes; killing replica A mid-load fails no search (client retries) and writes go on through B."""
from __future__ import annotations

import os
import signal
import time

import pytest

from clients.catalog import CatalogClient
from clients.contract import Filters, Product, ReadOptions, Relevance
from clients.index import read_products
from clients.search import SearchClient
from loadtest.catalog_load import WriteLoad
from loadtest.private_server import deployer_for
from loadtest.search_load import SearchLoad
from productsearch.control.generations import clone_encoders
from productsearch.control.milvus_lite import MilvusLiteServer
from productsearch.control.processes import pid_alive
from productsearch.control.repository import link_repository
from tests.integration.replica_failover import kill_a_under_load_and_write_through_b
from tests.conftest import DEMO_CATALOG, MODEL_REPOSITORY, load_catalog, require_built, serve_generation, start_server

pytestmark = pytest.mark.integration
PRODUCTS = 120


@pytest.fixture(scope="module")
def milvus(tmp_path_factory):
    root = tmp_path_factory.mktemp("milvus")
    server = MilvusLiteServer(root / "data").start()
    server.images = root / "images"
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def replicas(milvus, tmp_path_factory):
    require_built()
    root = tmp_path_factory.mktemp("milvus_replicas")
    repository = link_repository(MODEL_REPOSITORY, root / "model_repository", generations=[1])
    servers = []
    try:
        for name in ("a", "b"):
            server = start_server(repository, root / f"triton-{name}.log", [], catalog_url=milvus.catalog_url(milvus.images))
            servers.append(server)
            assert serve_generation(server, repository) == 1
        yield servers
    finally:
        for server in servers:
            if server.pid and pid_alive(server.pid):
                server.stop()


@pytest.fixture(scope="module")
def catalog(replicas):
    a, b = replicas
    products = read_products(DEMO_CATALOG)[:PRODUCTS]
    sequence = load_catalog(a, products)
    return products, sequence


def test_a_write_through_one_replica_is_read_through_the_other(replicas, catalog):
    a, b = replicas
    products, loaded = catalog
    with CatalogClient(a.grpc_url, timeout_s=60, key=a.key) as writer, SearchClient(b.grpc_url, timeout_s=30) as reader:
        assert reader.search(products[0].title, top_k=5, read=ReadOptions(min_sequence=loaded)).ids[0] == products[0].id
        sequence = writer.upsert([Product("MILVUS-1", "bright orange replica mug", None, {"category": "mug",
                                                                                         "sku": "MV-0001-OR"})])[0]
        found = reader.search("MV-0001-OR", top_k=3, read=ReadOptions(min_sequence=sequence))
        assert found.ids[0] == "MILVUS-1" and found.catalog_sequence >= sequence
        changed = writer.update_fields({"MILVUS-1": {"price": 12345.5}})[0]  # no demo product costs this much
        priced = reader.search("orange mug", top_k=5, filters=Filters(price_min=12000, price_max=13000),
                               read=ReadOptions(min_sequence=changed))
        assert priced.ids == ["MILVUS-1"]
        deleted = writer.delete(["MILVUS-1"])[0]
        assert "MILVUS-1" not in reader.search("MV-0001-OR", top_k=3, read=ReadOptions(min_sequence=deleted)).ids


def test_filters_and_facets_run_in_milvus_over_the_whole_filter(replicas, catalog):
    _, b = replicas
    products, loaded = catalog
    category = products[0].fields["category"]
    expected = {}
    for product in products:
        if product.fields["category"] == category:
            expected[product.fields["color"]] = expected.get(product.fields["color"], 0) + 1
    with SearchClient(b.grpc_url, timeout_s=30) as client:
        result = client.search("something to wear", top_k=3, filters=Filters(categories=[category]),
                               relevance=Relevance(facets=["color"]), read=ReadOptions(min_sequence=loaded))
    assert result.ids and all(pid in {p.id for p in products if p.fields["category"] == category} for pid in result.ids)
    assert result.facets["color"] == expected


def test_two_shops_with_the_same_ids_stay_apart(replicas):
    a, b = replicas
    with CatalogClient(a.grpc_url, timeout_s=60, key=a.key) as writer, SearchClient(b.grpc_url, timeout_s=30, key=b.key) as reader:
        writer.create_shop("north"), writer.create_shop("south")
        first = writer.upsert([Product("SHARED-1", "red wool scarf", None, {"category": "scarf"})], shop="north")[0]
        second = writer.upsert([Product("SHARED-1", "blue steel kettle", None, {"category": "kettle"})], shop="south")[0]
        north = reader.search("scarf", top_k=5, read=ReadOptions(shop="north", min_sequence=first))
        south = reader.search("scarf", top_k=5, read=ReadOptions(shop="south", min_sequence=second))
        assert north.ids == ["SHARED-1"] and north.titles == ["red wool scarf"]
        assert south.ids == ["SHARED-1"] and south.titles == ["blue steel kettle"]
        shops = writer.shops()
    assert {"north", "south"} <= set(shops) and shops["north"]["products"] == 1


def test_the_replicas_swap_generations_together_under_searches_and_writes(replicas, catalog):
    """`deploy --url a,b swap N`: both replicas move to N, the catalog encoded once; no search or
    write fails meanwhile (clients given both addresses), every acknowledged write is in N, and
    each replica answers from N afterwards."""
    a, b = replicas
    repository = a.model_repository
    clone_encoders(repository, 2, 1)
    both = f"{a.grpc_url},{b.grpc_url}"
    templates = read_products(DEMO_CATALOG)[PRODUCTS:PRODUCTS + 40]
    with WriteLoad(both, a.key, templates, writers=2, rate=3, prefix="RS", timeout_s=60) as writers, \
            SearchLoad(both, 2, timeout_s=60) as searchers, \
            deployer_for(a, repository) as first, deployer_for(b, repository) as second:
        time.sleep(2)
        first.swap(2, (second,))
        assert first.serving_generation() == second.serving_generation() == 2
        time.sleep(2)
    assert not writers.failures, writers.failures[:5]
    assert not searchers.failures, searchers.failures[:5]
    assert len(writers.writes) > 10 and {c.result.generation for c in searchers.answers} == {1, 2}
    final = writers.state_at(max(w.sequence for w in writers.writes))
    for server in (a, b):
        with SearchClient(server.grpc_url, timeout_s=60) as client:
            for pid in final:
                assert client.recommend([pid], top_k=1).generation == 2
    with CatalogClient(b.grpc_url, timeout_s=60, key=b.key) as writer, SearchClient(a.grpc_url, timeout_s=30) as reader:
        sequence = writer.upsert([Product("AFTER-SWAP", "violet swapped lamp", None, {"sku": "SW-0002-VI"})])[0]
        found = reader.search("SW-0002-VI", top_k=3, read=ReadOptions(min_sequence=sequence))
    assert found.ids[0] == "AFTER-SWAP" and found.generation == 2


def test_an_acknowledged_write_survives_kill_9_of_milvus(replicas, milvus):
    a, b = replicas
    with CatalogClient(a.grpc_url, timeout_s=60, key=a.key) as writer:
        sequence = writer.upsert([Product("DURABLE-1", "green durable lantern", None, {"sku": "DU-0001-GR"})])[0]
    os.killpg(milvus.pid, signal.SIGKILL)
    milvus.restart()
    with SearchClient(b.grpc_url, timeout_s=30, retries=20, backoff_s=0.2) as reader:
        found = reader.search("DU-0001-GR", top_k=3, read=ReadOptions(min_sequence=sequence))
    assert found.ids[0] == "DURABLE-1"


def test_killing_one_replica_fails_no_search_and_writes_go_on(replicas, catalog):
    kill_a_under_load_and_write_through_b(*replicas)
