"""The service's own metrics on the session tritonserver's metrics endpoint: real searches and
writes over gRPC move the productsearch_* counters by exactly what was sent, for a shop of its
own (nobody else searches it), with HELP text, and no product id or query text in any label; a
real Prometheus scraping it reads the same counts and loads the alert rules."""
from __future__ import annotations

import json
import re
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from clients.contract import Filters, Product, ReadOptions
from tests.integration.metrics_scrape import QUERY, prom_query, prometheus, scrape, total, wait_for  # noqa: F401


@pytest.fixture
def shop(catalog_client) -> str:
    name = f"obs-{uuid.uuid4().hex[:8]}"
    catalog_client.create_shop(name)
    return name


def test_searches_and_writes_move_the_counters_by_exactly_what_was_sent(triton, keyed_search_client, catalog_client, shop):
    search_client = keyed_search_client  # the shop is private
    ids = [f"MX-{i}" for i in range(3)]
    sequence = max(catalog_client.upsert([Product(pid, f"{QUERY} {i}", None, {"price": 10.0 + i})
                                          for i, pid in enumerate(ids)], shop=shop))
    read = ReadOptions(shop, sequence)
    zero, found = 3, 2
    for _ in range(zero):
        assert search_client.search(QUERY, top_k=5, filters=Filters(price_min=1000.0), read=read).ids == []
    for _ in range(found):
        assert len(search_client.search(QUERY, top_k=5, read=read).ids) == 3
    assert len(search_client.search(QUERY, top_k=2, offset=1, read=read).ids) == 2  # a second page
    recommended = len(search_client.recommend([ids[0]], top_k=5, read=read).ids)  # the other two
    assert recommended == 2
    with pytest.raises(Exception, match="NOT_FOUND|not found|unknown"):
        catalog_client.update_fields({"MX-NOPE": {"price": 1.0}}, shop=shop)

    s = (("shop", shop),)
    expected = {
        ("productsearch_searches_total", s + (("kind", "text"),)): float(zero + found + 1),
        ("productsearch_searches_total", s + (("kind", "recommend"),)): 1.0,
        ("productsearch_zero_result_searches_total", s): float(zero),
        ("productsearch_paged_searches_total", s): 1.0,
        ("productsearch_results_total", s): float(found * 3 + 2 + recommended),
        ("productsearch_catalog_writes_total", s + (("kind", "upsert"),)): 3.0,
        ("productsearch_refused_writes_total", s + (("reason", "unknown_id"),)): 1.0,
        ("productsearch_catalog_lag_sequences", s): 0.0,
    }
    text, samples, got = wait_for(triton.metrics_port, expected)
    if dump := __import__("os").environ.get("PRODUCTSEARCH_METRICS_DUMP"):
        open(dump, "w").write(text)
    assert got == expected

    # the scorer timed every batch of this shop, end to end and per stage
    batches = total(samples, "productsearch_scorer_seconds_count", shop=shop)
    assert batches >= 1
    assert total(samples, "productsearch_scorer_stage_seconds_count", shop=shop, stage="vector") >= 1
    assert total(samples, "productsearch_scorer_stage_seconds_count", shop=shop, stage="filter") >= 1
    assert total(samples, "productsearch_catalog_applied_sequence", shop=shop) >= sequence
    assert total(samples, "productsearch_catalog_products", shop=shop) == 3
    assert total(samples, "productsearch_generation_serving", model="scorer", generation=1) >= 1

    # HELP for every family of ours that has a series; ids and the query text never in a label
    ours = {n for n, _, _ in samples if n.startswith("productsearch_")}
    families = {re.sub(r"_(bucket|count|sum)$", "", n) for n in ours}
    for family in families:
        assert re.search(rf"^# HELP {family} \S", text, re.M), f"no HELP text for {family}"
    values = {v for n, labels, _ in samples if n in ours for v in labels.values()}
    for secret in [*ids, "MX-NOPE", QUERY, *QUERY.split()]:
        assert not any(secret in v for v in values), f"{secret!r} appears in a label"
    assert {k for n, labels, _ in samples if n in ours for k in labels} <= {
        "shop", "generation", "model", "instance", "kind", "stage", "reason", "target", "le"}


def test_prometheus_scrapes_the_counters_and_loads_the_alerts(triton, keyed_search_client, prometheus, shop):
    search_client = keyed_search_client  # the shop is private
    from productsearch.runtime.metrics import FAMILIES

    sequence = max(search_client_upsert(triton, shop))
    read = ReadOptions(shop, sequence)
    zero, found = 2, 1
    for _ in range(zero):
        search_client.search(QUERY, top_k=5, filters=Filters(price_min=1000.0), read=read)
    for _ in range(found):
        search_client.search(QUERY, top_k=5, read=read)
    exprs = {f'sum(productsearch_zero_result_searches_total{{shop="{shop}"}})': zero,
             f'sum(productsearch_searches_total{{shop="{shop}"}}) - sum(productsearch_zero_result_searches_total{{shop="{shop}"}})': found}
    deadline = time.monotonic() + 20
    while True:
        got = {e: [float(r["value"][1]) for r in prom_query(prometheus, e)] for e in exprs}
        if all(got[e] == [n] for e, n in exprs.items()) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert got == {e: [float(n)] for e, n in exprs.items()}

    rules = json.loads(urllib.request.urlopen(f"{prometheus}/api/v1/rules", timeout=10).read())["data"]["groups"]
    names = {r["name"] for g in rules for r in g["rules"]}
    assert {"CatalogLagging", "ScorerNotAdvancing", "SearchErrorRate", "ScorerLatencyHigh", "ZeroResultRateJump"} <= names
    assert all(r["health"] in ("ok", "unknown") for g in rules for r in g["rules"]), rules
    # every dashboard query is PromQL this Prometheus accepts (Grafana's variables filled in)
    dashboard = json.loads((Path(__file__).resolve().parents[2] / "deploy/grafana/productsearch.json").read_text())
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            prom_query(prometheus, target["expr"].replace("$__rate_interval", "1m").replace("$shop", ".*"))
    assert set(FAMILIES) >= {r["metric"]["__name__"] for r in prom_query(prometheus, '{__name__=~"productsearch_.*"}')
                             if not r["metric"]["__name__"].endswith(("_bucket", "_count", "_sum"))}


def search_client_upsert(triton, shop: str) -> list[int]:
    from clients.catalog import CatalogClient

    with CatalogClient(triton.grpc_url, timeout_s=30, key=triton.key) as client:
        return client.upsert([Product(f"MP-{i}", f"{QUERY} {i}", None, {"price": 10.0}) for i in range(2)], shop=shop)
