"""An adapted generation built while the service serves and swapped in under load: searches and
writes go on through the adapt build and the swap with 0 failed, every write acknowledged during
the build is found through the new generation afterwards. Out of CI (a server of its own, ~2 min):
PRODUCTSEARCH_SLOW_TESTS=1. With ADAPT_FIGURE=N it is the BENCHMARKS.md figure run: an N-product
studio shop, the full demo and Fashion-MNIST held-out sets, the default recipe; the report is
printed (and written beside the generation)."""
from __future__ import annotations

import json
import os
import statistics
import time

import pytest

from clients.catalog import CatalogClient
from clients.contract import Product, ReadOptions
from clients.index import load_products, read_products
from clients.search import SearchClient
from loadtest.catalog_load import WriteLoad
from loadtest.private_server import deployer_for, temporary_server
from loadtest.search_load import QUERIES, SearchLoad
from productsearch.demo.studio_shop import studio_products, studio_query
from productsearch.training.adapt import adapt
from tests.conftest import DEMO_CATALOG, require_built
from tests.integration.test_adapt import QUICK, QUICK_CFG

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not os.environ.get("PRODUCTSEARCH_SLOW_TESTS"), reason="out of CI: PRODUCTSEARCH_SLOW_TESTS=1")]
SHOP = "studio"
FIGURE = int(os.environ.get("ADAPT_FIGURE", "0"))


def latency_ms(calls, start: float, end: float) -> float:
    return 1000 * statistics.median(c.received - c.sent for c in calls if start <= c.sent <= end)


def test_adapted_generation_swapped_in_under_load(tmp_path):
    require_built()
    with temporary_server(tmp_path) as server:
        load_products(server.grpc_url, read_products(DEMO_CATALOG)[:300], key=server.key, progress=False)
        with CatalogClient(server.grpc_url, timeout_s=30, key=server.key) as admin:
            admin.create_shop(SHOP)
        studio = studio_products(FIGURE or 240, seed=0)
        report = load_products(server.grpc_url, [Product(p["id"], p["title"], p["image"], p["fields"]) for p in studio],
                               key=server.key, shop=SHOP, progress=False)
        assert not report.failed, report.summary()
        templates = read_products(DEMO_CATALOG)[300:400]
        quick = {"progress": False} if FIGURE else {**QUICK, "cfg": QUICK_CFG}
        with WriteLoad(server.grpc_url, server.key, templates, writers=2, rate=4, prefix="AD", timeout_s=30) as writers, \
                SearchLoad(server.grpc_url, 2, queries=QUERIES[:8], top_k=10, timeout_s=60) as searchers:
            time.sleep(5)
            built_from = time.monotonic()
            result = adapt(server.repository, SHOP, store_url=server.catalog_url, **quick)
            built_at = time.monotonic()
            generation = result["candidate_generation"]
            with deployer_for(server) as deployer:
                deployer.swap(generation)
            time.sleep(2)
        assert not searchers.failures, searchers.failures[:5]
        assert not writers.failures, writers.failures[:5]
        during_build = [w for w in writers.writes if built_from <= w.sent <= built_at]
        assert during_build
        final = writers.state_at(max(w.sequence for w in writers.writes))
        with SearchClient(server.grpc_url, timeout_s=60, key=server.key) as client:
            for pid in final:  # every product acknowledged and not deleted is in the new generation
                assert client.recommend([pid], top_k=1).generation == generation
            answer = client.search(studio_query("vase", "blue", "en"), top_k=10, read=ReadOptions(shop=SHOP))
            assert answer.generation == generation and answer.ids
        calls = searchers.calls
        latency = {"before_build_ms": round(latency_ms(calls, 0, built_from), 1),
                   "during_build_ms": round(latency_ms(calls, built_from, built_at), 1)}
        print(json.dumps({"before": result["before"], "after": result["after"], "trust": result["trust"],
                          "split": {k: v for k, v in result["split"].items() if k != "heldout_ids"},
                          "search_latency_median": latency, "searches": len(calls),
                          "writes_during_build": len(during_build), "seconds": result["seconds"]}, indent=1))
