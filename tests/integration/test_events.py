"""Query ids, the search log and shopper events through the public contract on the session
tritonserver: every answered search logged in its shop's store, events recorded per row with
clear errors for bad rows (the others kept), idempotent, authorised per row with search keys.
(Durability across kill -9 is proven in test_live_catalog.py's kill test, on its own server.)"""
from __future__ import annotations

import json
import os
import sqlite3

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from clients.catalog import CatalogClient
from clients.contract import Event, Product, ReadOptions, bytes_rows, key_headers
from clients.events import EventsClient
from clients.keys import KeyClient
from clients.search import SearchClient
from productsearch.catalog.events import events_path
from productsearch.catalog.query_ids import new_query_id
from productsearch.catalog.store import catalog_url

pytestmark = pytest.mark.integration

SHOP_A, SHOP_B = "events-a", "events-b"
PRODUCTS = [Product(f"EV-{i}", title, None, {"category": "mug", "price": 10.0 + i})
            for i, title in enumerate(["blue ceramic coffee mug", "red enamel camping mug", "green glass tea cup"])]


class Shops:
    """Two private shops on the session server, a search key of each, and the admin."""

    def __init__(self, server):
        self.server = server
        with KeyClient(server.grpc_url, timeout_s=30, key=server.key) as admin:
            for shop in (SHOP_A, SHOP_B):
                admin.create_shop(shop)
                self.sequence = max(admin.upsert(PRODUCTS, shop=shop))
            self.keys = {shop: admin.create("search", [shop])["secret"] for shop in (SHOP_A, SHOP_B)}

    def search(self, shop: str, text: str = "mug", user: str | None = None, **options):
        with SearchClient(self.server.grpc_url, timeout_s=30, retries=0, key=self.keys[shop]) as client:
            return client.search(text, top_k=3, read=ReadOptions(shop, self.sequence), user=user, **options)

    def record(self, events: list[Event], key: str | None = None) -> list[str]:
        with EventsClient(self.server.grpc_url, timeout_s=30, retries=0, key=key) as client:
            return client.record(events)

    def logged(self, shop: str, query_id: str) -> dict | None:
        db = sqlite3.connect(events_path(catalog_url(self.server.repository), shop))
        db.row_factory = sqlite3.Row
        try:
            row = db.execute("SELECT * FROM searches WHERE query_id=?", (query_id,)).fetchone()
            return None if row is None else dict(row)
        finally:
            db.close()


@pytest.fixture(scope="module")
def shops(triton):
    return Shops(triton)


def test_search_and_recommend_return_a_query_id_and_log_the_search(shops, search_client):
    found = shops.search(SHOP_A, "blue ceramic mug", user="shopper-1")
    assert found.query_id and found.arm == "control" and found.ids
    other = shops.search(SHOP_A, "blue ceramic mug")
    assert other.query_id != found.query_id
    liked = search_client.recommend([search_client.search("red mug", top_k=1).ids[0]], top_k=2, user="s-2")
    assert liked.query_id and liked.ids
    # a click right after the search: record_events waits for the log's flush, never refuses it
    assert shops.record([Event(found.query_id, "click", found.ids[0], shop=SHOP_A)], shops.keys[SHOP_A]) == ["recorded"]
    row = shops.logged(SHOP_A, found.query_id)
    assert row is not None and row["query"] == "blue ceramic mug" and row["user"] == "shopper-1"
    assert json.loads(row["results"]) == found.ids and row["generation"] == found.generation
    assert row["arm"] == "control" and row["zero_result"] == 0 and row["latency_ms"] > 0 and row["kind"] == "text"


def test_a_zero_result_search_is_logged_as_such(shops):
    from clients.contract import Filters

    empty = shops.search(SHOP_A, "mug", filters=Filters(price_min=1000.0))
    assert empty.ids == [] and empty.query_id
    with EventsClient(shops.server.grpc_url, timeout_s=30, key=shops.keys[SHOP_A]) as client:
        status = client.record([Event(empty.query_id, "click", "EV-0", shop=SHOP_A)])[0]
    assert status.startswith("INVALID_ARGUMENT: product 'EV-0' is not in the results"), status
    row = shops.logged(SHOP_A, empty.query_id)
    assert row["zero_result"] == 1 and json.loads(row["filters"]) == {"price_min": 1000.0}


def test_events_are_idempotent_and_each_bad_row_fails_alone(shops):
    found = shops.search(SHOP_A, "camping mug")
    qid, first = found.query_id, found.ids[0]
    events = [Event(qid, "add_to_cart", first, shop=SHOP_A),
              Event(qid, "purchase", first, value=24.5, user="u-9", shop=SHOP_A),
              Event(new_query_id(SHOP_A, now=1.0), "click", first, shop=SHOP_A),  # issued in 1970: never logged
              Event(qid, "click", "NOT-SHOWN", shop=SHOP_A),
              Event(qid, "like", first, shop=SHOP_A),
              Event("not-a-query-id", "click", first, shop=SHOP_A),
              Event(qid, "purchase", found.ids[-1], value=-3.0, shop=SHOP_A),
              Event(qid, "click", found.ids[-1], position=-1, shop=SHOP_A),
              Event(qid, "click", first, shop="no such shop!")]
    statuses = shops.record(events, shops.keys[SHOP_A])
    assert statuses[:2] == ["recorded", "recorded"]
    expected = ["NOT_FOUND: unknown query id", "INVALID_ARGUMENT: product 'NOT-SHOWN' is not in the results",
                "INVALID_ARGUMENT: EVENT 'like' is not one of click, add_to_cart, purchase",
                "INVALID_ARGUMENT: QUERY_ID 'not-a-query-id' is not a query id this service issued",
                "INVALID_ARGUMENT: VALUE must be a finite amount >= 0", "INVALID_ARGUMENT: POSITION must be >= 1",
                "INVALID_ARGUMENT: "]
    for status, start in zip(statuses[2:], expected):
        assert status.startswith(start), (status, start)
    # sent again (a client's retry after a timeout): nothing doubles
    assert shops.record(events[:2], shops.keys[SHOP_A]) == ["duplicate", "duplicate"]
    db = sqlite3.connect(events_path(catalog_url(shops.server.repository), SHOP_A))
    rows = db.execute("SELECT event, product_id, position, value, user FROM events WHERE query_id=? ORDER BY event",
                      (qid,)).fetchall()
    db.close()
    assert rows == [("add_to_cart", first, 1, 0.0, ""), ("purchase", first, 1, 24.5, "u-9")]


def test_events_are_authorised_per_row_for_their_own_shop(shops):
    a, b = shops.search(SHOP_A), shops.search(SHOP_B)
    statuses = shops.record([Event(a.query_id, "click", a.ids[0], shop=SHOP_A),
                             Event(b.query_id, "click", b.ids[0], shop=SHOP_B),  # key of A, row of B
                             Event(b.query_id, "click", b.ids[0], shop=SHOP_A)],  # B's query id sent as A's
                            shops.keys[SHOP_A])
    assert statuses[0] == "recorded"
    assert statuses[1].startswith("PERMISSION_DENIED: key ") and f"not for shop '{SHOP_B}'" in statuses[1]
    assert statuses[2] == f"PERMISSION_DENIED: QUERY_ID {b.query_id} was not issued by a search of shop '{SHOP_A}'"
    # no key: every row refused, even of the public default shop
    public = SearchClient(shops.server.grpc_url, timeout_s=30).search("mug", top_k=1)
    refused = shops.record([Event(public.query_id, "click", public.ids[0])])
    assert refused[0].startswith("UNAUTHENTICATED: no key"), refused
    assert shops.record([Event(public.query_id, "click", public.ids[0])], shops.server.key) == ["recorded"]


def test_a_request_of_the_wrong_types_is_refused_whole_and_the_server_lives_on(shops):
    found = shops.search(SHOP_A)
    value = grpcclient.InferInput("VALUE", [1, 1], "BYTES")  # VALUE is FP32
    value.set_data_from_numpy(np.array([[b"12.5"]], dtype=object))
    inputs = [bytes_rows("QUERY_ID", [found.query_id]), bytes_rows("EVENT", ["click"]),
              bytes_rows("PRODUCT_ID", [found.ids[0]]), value, bytes_rows("SHOP", [SHOP_A])]
    client = grpcclient.InferenceServerClient(shops.server.grpc_url)
    try:
        with pytest.raises(InferenceServerException, match="VALUE") as err:
            client.infer("record_events", inputs, headers=key_headers(shops.keys[SHOP_A]))
        assert "INVALID_ARG" in str(err.value.status())
        missing = [bytes_rows("QUERY_ID", [found.query_id]), bytes_rows("EVENT", ["click"])]
        with pytest.raises(InferenceServerException, match="PRODUCT_ID"):
            client.infer("record_events", missing, headers=key_headers(shops.keys[SHOP_A]))
    finally:
        client.close()
    assert shops.record([Event(found.query_id, "click", found.ids[0], shop=SHOP_A)], shops.keys[SHOP_A]) == ["recorded"]


def test_analytics_report_through_the_service_counts_what_shoppers_did(shops, tmp_path):
    """A fresh shop, 6 searches: 4 of "blue mug" (2 clicked at positions 1 and 2, one of them
    bought for 30), 1 clicked "tea cup", 1 zero-result: the figures follow by hand."""
    from clients.analytics import fetch_report, format_html, format_text, main
    from clients.contract import Filters

    shop = "events-analytics"
    with KeyClient(shops.server.grpc_url, timeout_s=30, key=shops.server.key) as admin:
        admin.create_shop(shop)
        shops.sequence = max(shops.sequence, max(admin.upsert(PRODUCTS, shop=shop)))
        shops.keys[shop] = admin.create("search", [shop])["secret"]
        writer = admin.create("write", [shop])["secret"]
    # the zero-result search first: the log is written in order, so once the clicked searches'
    # rows are in (record_events waits for them), so is it
    shops.search(shop, "mug", filters=Filters(price_min=1000.0))
    blue = [shops.search(shop, "blue mug") for _ in range(4)]
    cup = shops.search(shop, "Tea cup")
    statuses = shops.record([Event(blue[0].query_id, "click", blue[0].ids[0], shop=shop),
                             Event(blue[1].query_id, "click", blue[1].ids[1], shop=shop),
                             Event(blue[1].query_id, "purchase", blue[1].ids[1], value=30.0, shop=shop),
                             Event(cup.query_id, "click", cup.ids[0], shop=shop)], shops.keys[shop])
    assert statuses == ["recorded"] * 4
    with CatalogClient(shops.server.grpc_url, timeout_s=30, key=shops.keys[shop]) as searcher:
        with pytest.raises(Exception, match="PERMISSION_DENIED.*needs 'write'"):
            fetch_report(searcher, shop, 0)  # a search key does not read analytics
    with CatalogClient(shops.server.grpc_url, timeout_s=30, key=writer) as client:
        with pytest.raises(Exception, match="PERMISSION_DENIED.*not for shop"):
            fetch_report(client, SHOP_A, 0)
        report = fetch_report(client, shop, 0)
    s = report["summary"]
    assert (s["searches"], s["ctr"], s["conversion"], s["zero_result_rate"]) == (6, 0.5, round(1 / 6, 4), round(1 / 6, 4))
    assert s["mrr"] == round((1 + 0.5 + 1) / 3, 4) and s["revenue_per_search"] == 5.0
    assert report["top_queries"][0]["query"] == "blue mug" and report["top_queries"][0]["searches"] == 4
    assert [q["query"] for q in report["zero_result_queries"]] == ["mug"]
    assert report["by_arm"][0]["arm"] == "control" and report["by_generation"][0]["searches"] == 6
    assert "blue mug" in format_text(report) and "<svg" in format_html(report) and "http" not in format_html(report)
    page = tmp_path / "report.html"
    os.environ["PRODUCTSEARCH_API_KEY"] = writer
    try:
        assert main(["report", "--shop", shop, "--since", "1d", "--html", str(page), "--url",
                     shops.server.grpc_url]) == 0
    finally:
        del os.environ["PRODUCTSEARCH_API_KEY"]
    assert "CTR by day" in page.read_text()
