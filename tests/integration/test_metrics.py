"""The service's own metrics on the session tritonserver's metrics endpoint: real searches and
writes over gRPC move the productsearch_* counters by exactly what was sent, for a shop of its
own (nobody else searches it), with HELP text, and no product id or query text in any label; a
real Prometheus scraping it reads the same counts and loads the alert rules, and its graph page
draws them in a real browser (OBSERVE_SCREENSHOTS=DIR saves that page: `make
observe-screenshot` writes docs/prometheus-graph.png)."""
from __future__ import annotations

import json
import os
import re
import time
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

import pytest

from clients.contract import Filters, Product, ReadOptions
from tests.integration.browser import VIEWPORT, browser  # noqa: F401 (a fixture)
from tests.polling import wait_until
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
        "shop", "generation", "model", "instance", "load", "kind", "stage", "reason", "target", "le"}


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


def test_prometheus_graph_page_draws_the_searches_by_kind(triton, keyed_search_client, prometheus, browser, shop):
    """Prometheus's own graph page (Debian's package serves the classic UI) in headless Chromium:
    a line per search kind of this shop, named in the legend, no query error."""
    sequence = max(search_client_upsert(triton, shop))
    read = ReadOptions(shop, sequence)
    folder = os.environ.get("OBSERVE_SCREENSHOTS")
    deadline = time.monotonic() + (45 if folder else 4)  # a screenshot wants a longer line
    while time.monotonic() < deadline:
        keyed_search_client.search(QUERY, top_k=5, read=read)
        keyed_search_client.search(QUERY, top_k=5, filters=Filters(price_min=1000.0), read=read)  # zero results
        keyed_search_client.recommend(["MP-0"], top_k=5, read=read)
        time.sleep(0.1)
    expr = f'sum by (kind) (rate(productsearch_searches_total{{shop="{shop}"}}[15s]))'
    wait_for_series = lambda: len(prom_query(prometheus, expr)) >= 2  # noqa: E731
    deadline = time.monotonic() + 20
    while not wait_for_series():
        assert time.monotonic() < deadline, "Prometheus never had both kinds"
        time.sleep(0.5)
    context = browser.new_context(viewport=VIEWPORT)
    try:
        page = context.new_page()
        page.goto(f"{prometheus}/graph?" + urllib.parse.urlencode({"g0.expr": expr, "g0.tab": "0", "g0.range_input": "1m"}))
        page.wait_for_selector(".graph_area svg path", timeout=30_000)
        legend = page.inner_text(".legend")
        assert 'kind="text"' in legend and 'kind="recommend"' in legend, legend
        assert not page.locator(".error.alert").is_visible()
        if folder:
            Path(folder).mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(Path(folder) / "prometheus-graph.png"))
    finally:
        context.close()


def fresh_photo() -> bytes:
    """A PNG no test sent before (random pixels), so the image tower has not seen it."""
    import io

    import numpy as np
    from PIL import Image

    pixels = np.random.default_rng(uuid.uuid4().int % 2**32).integers(0, 255, (48, 48, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


def test_the_same_photo_is_encoded_once_per_tower_instance(triton, keyed_search_client, catalog_client, shop):
    """Three products with the same photo in one write: the image tower encodes it once and reuses
    it twice. A fourth product in the next write and a search by that photo reuse it too, unless
    they land on the tower's other instance (2, each with its own memory), which encodes it once.
    The products get the same photo embedding (the photo search scores the twins alike)."""
    photo = fresh_photo()
    encoded = ("productsearch_photos_encoded_total", (("model", "image_encoder"),))
    reused = ("productsearch_photos_reused_total", (("model", "image_encoder"),))

    def counts() -> dict:
        _, samples = scrape(triton.metrics_port)
        return {key: total(samples, key[0], **dict(key[1])) for key in (encoded, reused)}

    before = counts()
    catalog_client.upsert([Product(f"TWIN-{i}", "same photo twin", photo, {"price": 5.0}) for i in range(3)], shop=shop)
    _, _, got = wait_for(triton.metrics_port, {encoded: before[encoded] + 1, reused: before[reused] + 2})
    assert got == {encoded: before[encoded] + 1, reused: before[reused] + 2}
    sequence = catalog_client.upsert([Product("TWIN-3", "same photo twin", photo, {"price": 5.0})], shop=shop)[0]
    result = keyed_search_client.search("", image=photo, top_k=4, read=ReadOptions(shop, sequence))
    assert sorted(result.ids) == [f"TWIN-{i}" for i in range(4)]
    assert max(result.scores) - min(result.scores) < 1e-5, result.scores
    wait_until(lambda: sum(counts().values()) == sum(before.values()) + 5, 15, "the five photos counted")
    after = counts()
    assert after[encoded] - before[encoded] <= 2  # once per instance at most
