"""What the metrics show when things go wrong, on the session tritonserver and a real Prometheus:
the catalog lag gauge follows the store and, with a scorer stopped from tailing (the test hook
of catalog/index/tail_pause.py), grows until the shipped CatalogLagging expression fires; refused
searches (bad input, their key, its rate limit) and writes are counted by reason, by exactly what
was sent."""
from __future__ import annotations

import json
import time
import urllib.request
import uuid

import pytest
import tritonclient.grpc as grpcclient
import yaml
from tritonclient.utils import InferenceServerException

from clients.catalog import CatalogClient, ServiceError
from clients.contract import Product, ReadOptions, key_headers, search_inputs
from clients.keys import KeyClient
from productsearch.catalog.index.tail_pause import pause_file
from productsearch.control.observe import DEPLOY
from tests.integration.metrics_scrape import QUERY, running_prometheus, scrape, total, wait_for
from tests.polling import wait_until

pytestmark = pytest.mark.integration
ALERT_FOR = "5s"  # the test's `for:`; the expression is the shipped one


@pytest.fixture
def shop(catalog_client) -> str:
    name = f"obs-{uuid.uuid4().hex[:8]}"
    catalog_client.create_shop(name)
    return name


@pytest.fixture(scope="module")
def lag_alert_prometheus(triton, tmp_path_factory):
    """Prometheus with deploy/prometheus/alerts.yml, CatalogLagging's `for:` cut to ALERT_FOR (its
    expression untouched), scraping the session server every second."""
    out = tmp_path_factory.mktemp("prometheus_lag")
    rules = yaml.safe_load((DEPLOY / "alerts.yml").read_text())
    rule = next(r for g in rules["groups"] for r in g["rules"] if r.get("alert") == "CatalogLagging")
    rule["for"] = ALERT_FOR
    (out / "alerts.yml").write_text(yaml.safe_dump(rules))
    with running_prometheus(triton.metrics_port, out, rules=out / "alerts.yml") as url:
        url_rules = json.loads(urllib.request.urlopen(f"{url}/api/v1/rules", timeout=10).read())["data"]["groups"]
        loaded = next(r for g in url_rules for r in g["rules"] if r["name"] == "CatalogLagging")
        shipped = next(r for g in yaml.safe_load((DEPLOY / "alerts.yml").read_text())["groups"]
                       for r in g["rules"] if r.get("alert") == "CatalogLagging")
        assert loaded["query"].split() == shipped["expr"].split()
        yield url


def firing(prometheus: str, alert: str, shop: str) -> list:
    alerts = json.loads(urllib.request.urlopen(f"{prometheus}/api/v1/alerts", timeout=10).read())["data"]["alerts"]
    return [a for a in alerts if a["labels"].get("alertname") == alert and a["labels"].get("shop") == shop
            and a["state"] == "firing"]


def refused_searches(port: int, **labels) -> float:
    return total(scrape(port)[1], "productsearch_refused_searches_total", **labels)


def test_the_lag_follows_the_store_and_the_lag_alert_fires_when_a_scorer_stops_tailing(
        triton, keyed_search_client, catalog_client, lag_alert_prometheus, shop):
    search_client = keyed_search_client  # the shop is private
    port, s = triton.metrics_port, (("shop", shop),)
    first = max(catalog_client.upsert([Product(f"LG-{i}", f"{QUERY} {i}", None, {}) for i in range(2)], shop=shop))
    assert len(search_client.search(QUERY, top_k=5, read=ReadOptions(shop, first)).ids) == 2  # the scorer follows it
    second = max(catalog_client.upsert([Product("LG-2", f"{QUERY} 2", None, {})], shop=shop))
    _, samples, got = wait_for(port, {("productsearch_catalog_lag_sequences", s): 0.0,
                                      ("productsearch_catalog_applied_sequence", s): float(second)})
    assert got == {("productsearch_catalog_lag_sequences", s): 0.0,
                   ("productsearch_catalog_applied_sequence", s): float(second)}, "caught up without a search"
    # following: the gauge is the tail interval (50 ms) plus what a busy machine adds, far from the alert
    assert 0 <= total(samples, "productsearch_catalog_lag_seconds", shop=shop) < 1.0

    hook = pause_file(triton.test_hooks, shop)
    hook.touch()
    try:
        head = max(catalog_client.upsert([Product(f"LG-{i}", f"{QUERY} {i}", None, {}) for i in (3, 4)], shop=shop))
        wait_for(port, {("productsearch_catalog_lag_sequences", s): float(head - second)}, timeout_s=15)
        # a search that must see the new rows is refused (catalog_lag), each counted once
        before = refused_searches(port, shop=shop, reason="catalog_lag")
        with grpcclient.InferenceServerClient(triton.grpc_url) as raw:  # no retries: each is one refusal
            for _ in range(2):
                with pytest.raises(InferenceServerException, match="behind"):
                    raw.infer("search", search_inputs(QUERY, top_k=5, read=ReadOptions(shop, head)),
                              headers=key_headers(triton.key))
        wait_for(port, {("productsearch_refused_searches_total", s + (("reason", "catalog_lag"),)): before + 2})
        assert refused_searches(port, shop=shop, reason="catalog_lag") == before + 2
        alert = wait_until(lambda: firing(lag_alert_prometheus, "CatalogLagging", shop), 120, "CatalogLagging firing", every_s=0.5)
        assert alert[0]["labels"]["severity"] == "page" and float(alert[0]["value"]) > 30
        _, samples = scrape(port)
        assert total(samples, "productsearch_catalog_applied_sequence", shop=shop) == second
    finally:
        hook.unlink(missing_ok=True)
    assert len(search_client.search(QUERY, top_k=10, read=ReadOptions(shop, head)).ids) == 5
    wait_for(port, {("productsearch_catalog_lag_sequences", s): 0.0})
    wait_until(lambda: not firing(lag_alert_prometheus, "CatalogLagging", shop), 30, "CatalogLagging resolved",
               every_s=0.5)


def test_refused_searches_count_by_reason_by_exactly_what_was_sent(triton, catalog_client, shop):
    """bad input at the query gate (an empty query) and at the scorer (a page past 10,000), K each."""
    port, k = triton.metrics_port, 3
    sequence = max(catalog_client.upsert([Product("RS-1", QUERY, None, {})], shop=shop))
    gate_before = refused_searches(port, model="query_gate", reason="bad_input")
    scorer_before = refused_searches(port, model="scorer", reason="bad_input")
    with grpcclient.InferenceServerClient(triton.grpc_url) as client:
        admin = key_headers(triton.key)
        client.infer("search", search_inputs(QUERY, top_k=1, read=ReadOptions(shop, sequence)), headers=admin)
        for _ in range(k):
            with pytest.raises(InferenceServerException, match="empty"):
                client.infer("search", search_inputs("", None, 5))
        for _ in range(k):
            with pytest.raises(InferenceServerException, match="OFFSET"):
                client.infer("search", search_inputs(QUERY, top_k=5, offset=10_000, read=ReadOptions(shop)),
                             headers=admin)
    expected = {("productsearch_refused_searches_total", (("model", "query_gate"), ("reason", "bad_input"))):
                gate_before + k,
                # refused while the scorer reads the request, before its SHOP: shop "unknown"
                ("productsearch_refused_searches_total", (("model", "scorer"), ("reason", "bad_input"))):
                scorer_before + k}
    assert wait_for(port, expected)[2] == expected
    time.sleep(1.5)  # one more flush: nothing else was counted
    assert wait_for(port, expected, timeout_s=0)[2] == expected


def test_searches_refused_for_their_key_count_as_key_and_rate_limit(triton, shop):
    """No key for a private shop, an unknown key, another shop's key (`key`), a key over its rate
    limit (`rate_limit`): counted by exactly what was sent, all with shop "unknown"."""
    port = triton.metrics_port
    other = f"{shop}-other"
    unknown = {r: (("productsearch_refused_searches_total", (("model", "scorer"), ("reason", r), ("shop", "unknown"))))
               for r in ("key", "rate_limit")}
    with KeyClient(triton.grpc_url, timeout_s=30, key=triton.key) as admin:
        admin.create_shop(other)
        sequence = max(admin.upsert([Product("KR-1", QUERY, None, {})], shop=shop))
        others_key = admin.create("search", [other])["secret"]
        limited = admin.create("search", [shop], rate=0.01, burst=1)["secret"]
    before = {key: total(scrape(port)[1], key[0], **dict(key[1])) for key in unknown.values()}
    read = ReadOptions(shop, sequence)
    with grpcclient.InferenceServerClient(triton.grpc_url) as raw:  # no retries: each is one refusal
        def search(secret):
            return raw.infer("search", search_inputs(QUERY, top_k=1, read=read), headers=key_headers(secret))
        assert search(limited).as_numpy("PRODUCT_IDS").size == 1  # its one token
        for secret, status in ((None, "UNAUTHENTICATED"), ("psk_not-a-key", "UNAUTHENTICATED"),
                               (others_key, "PERMISSION_DENIED")):
            with pytest.raises(InferenceServerException, match=status):
                search(secret)
        for _ in range(2):
            with pytest.raises(InferenceServerException, match="rate limited"):
                search(limited)
    expected = {unknown["key"]: before[unknown["key"]] + 3, unknown["rate_limit"]: before[unknown["rate_limit"]] + 2}
    assert wait_for(port, expected)[2] == expected
    assert total(scrape(port)[1], "productsearch_refused_searches_total", shop=other) == 0, \
        "a refused caller's shop is never a label"


def test_refused_writes_count_by_reason(triton, catalog_client, shop):
    """bad input, key, closed value, unknown id: one refusal of each sort, counted once each."""
    port = triton.metrics_port
    catalog_client.upsert([Product("RW-1", QUERY, None, {"category": "mug"})], shop=shop)
    reasons = ("bad_input", "key", "closed_value", "unknown_id")
    before = {r: total(scrape(port)[1], "productsearch_refused_writes_total", reason=r) for r in reasons}
    with pytest.raises(ServiceError, match="price"):
        catalog_client.upsert([Product("RW-2", QUERY, None, {"price": -1})], shop=shop)
    with CatalogClient(triton.grpc_url, timeout_s=30, key="wrong", retries=0) as wrong:
        with pytest.raises(ServiceError, match="UNAUTHENTICATED"):
            wrong.upsert([Product("RW-3", QUERY, None, {})], shop=shop)
    catalog_client.set_closed_values({"category": ["mug"]}, shop=shop)
    with pytest.raises(ServiceError, match="unknown category"):
        catalog_client.upsert([Product("RW-4", QUERY, None, {"category": "spaceship"})], shop=shop)
    with pytest.raises(ServiceError, match="NOT_FOUND|not found|unknown"):
        catalog_client.update_fields({"RW-NOPE": {"price": 1.0}}, shop=shop)
    expected = {("productsearch_refused_writes_total", (("reason", r),)): before[r] + 1 for r in reasons}
    assert wait_for(port, expected)[2] == expected
