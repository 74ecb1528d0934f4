"""Filters, pagination, per-request fusion weight and recommendations through the real
`search` and `recommend` ensembles (the same rules are checked against brute force on random
catalogs in tests/unit/test_scorer_filters.py)."""
from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from clients.contract import Filters
from clients.search import SearchClient, SearchError

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def by_id(demo_catalog):
    return {p["id"]: p for p in demo_catalog}


@pytest.fixture(scope="module")
def photo(demo_catalog) -> bytes:
    return Path(next(p for p in demo_catalog if p["category"] == "sneakers")["image"]).read_bytes()


def passes(product: dict, filters: Filters) -> bool:
    return ((not filters.categories or product["category"] in filters.categories)
            and (filters.price_min is None or product["price"] >= filters.price_min)
            and (filters.price_max is None or product["price"] <= filters.price_max)
            and product["id"] not in (filters.exclude_ids or []))


@pytest.mark.parametrize("text, filters", [
    ("red mug", Filters(categories=["mug"])),
    ("striped t-shirt", Filters(categories=["t-shirt", "dress"], price_max=25.0)),
    ("black handbag", Filters(price_min=30.0, price_max=80.0)),
    ("blue jeans", Filters(categories=["jeans"], exclude_ids=["P00001"])),
])
def test_filtered_results_equal_the_unfiltered_ranking_restricted_to_the_filter(search_client, by_id, text, filters):
    """Applied before ranking: the filtered top 10 is the start of the full ranking's products
    that pass, never fewer because better products were filtered out after the top-k."""
    full = search_client.search(text, top_k=1000)
    expected = [pid for pid in full.ids if passes(by_id[pid], filters)]
    assert len(expected) >= 10
    result = search_client.search(text, top_k=10, filters=filters)
    assert result.ids == expected[:10]
    assert all(passes(by_id[pid], filters) for pid in result.ids)
    full_scores = dict(zip(full.ids, full.scores))
    np.testing.assert_allclose(result.scores, [full_scores[pid] for pid in result.ids], atol=1e-5)


def test_excluded_ids_never_come_back(search_client):
    first = search_client.search("green backpack", top_k=13)
    again = search_client.search("green backpack", top_k=10, filters=Filters(exclude_ids=first.ids[:3] + ["NOT-AN-ID"]))
    assert again.ids == first.ids[3:13]


@pytest.mark.parametrize("filters", [None, Filters(categories=["watch"])])
def test_pages_fit_together(search_client, filters):
    whole = search_client.search("silver watch", top_k=30, filters=filters)
    pages = [search_client.search("silver watch", top_k=10, offset=10 * page, filters=filters) for page in range(3)]
    assert sum((p.ids for p in pages), []) == whole.ids and len(set(whole.ids)) == 30


def test_a_page_beyond_the_catalog_is_empty(search_client, demo_catalog):
    assert search_client.search("red mug", top_k=10, offset=9000).ids == []
    last = search_client.search("red mug", top_k=10, offset=len(demo_catalog) - 3)
    assert len(last.ids) == 3


def test_text_weight_moves_the_query_between_the_photo_and_the_words(search_client, demo_catalog, photo):
    """TEXT_WEIGHT 1: the photo has no say; 0: the words have no say; in between, both do."""
    other_photo = Path(next(p for p in demo_catalog if p["category"] == "mug")["image"]).read_bytes()

    def ids(text, image, weight=None):
        return search_client.search(text, image=image, top_k=10, text_weight=weight).ids

    assert ids("red mug", photo, 1.0) == ids("red mug", other_photo, 1.0)
    assert ids("red mug", photo, 0.0) == ids("blue jeans", photo, 0.0)
    # in between (0.5 here: the default is the generation's, 0.1 for the demo's towers) both do
    assert ids("red mug", photo, 0.5) != ids("red mug", other_photo, 0.5)
    assert ids("red mug", photo, 0.5) != ids("blue jeans", photo, 0.5)


def test_more_like_this_returns_similar_products_never_itself(search_client, by_id, demo_catalog):
    for product in demo_catalog[::997][:5]:
        result = search_client.recommend([product["id"]], top_k=10)
        assert product["id"] not in result.ids and len(result.ids) == 10
        same_category = sum(by_id[pid]["category"] == product["category"] for pid in result.ids)
        assert same_category >= 8, (product["id"], [by_id[pid]["category"] for pid in result.ids])
        assert result.scores == sorted(result.scores, reverse=True)


def test_for_this_shopper_follows_the_weights_and_skips_what_was_viewed(search_client, by_id, demo_catalog):
    mug = next(p["id"] for p in demo_catalog if p["category"] == "mug")
    hat = next(p["id"] for p in demo_catalog if p["category"] == "hat")
    recent_mug = search_client.recommend([mug, hat], top_k=10, weights=[1.0, 0.0])
    assert Counter(by_id[pid]["category"] for pid in recent_mug.ids).most_common(1)[0][0] == "mug"
    recent_hat = search_client.recommend([mug, hat], top_k=10, weights=[0.0, 1.0])
    assert Counter(by_id[pid]["category"] for pid in recent_hat.ids).most_common(1)[0][0] == "hat"
    default = search_client.recommend([mug, hat], top_k=50)  # recency: the mug (first) weighs more
    assert mug not in default.ids and hat not in default.ids
    assert default.ids[:10] != recent_hat.ids
    filtered = search_client.recommend([mug, hat], top_k=10, filters=Filters(categories=["hat"]))
    assert {by_id[pid]["category"] for pid in filtered.ids} == {"hat"} and hat not in filtered.ids


@pytest.mark.parametrize("call, message", [
    (lambda c: c.recommend(["P00001", "NO-SUCH-ID"]), "unknown product id.*'NO-SUCH-ID'"),
    (lambda c: c.recommend([""]), "SEED_IDS is empty"),
    (lambda c: c.recommend(["P00001"], weights=[1.0, 2.0]), "one weight per id"),
    (lambda c: c.recommend(["P00001"], top_k=0), "TOP_K must be between 1 and 1000"),
    (lambda c: c.search("red mug", filters=Filters(categories=["spaceship"])), "unknown category 'spaceship'"),
    (lambda c: c.search("red mug", filters=Filters(price_min=50, price_max=10)), "PRICE_MIN 50 is above PRICE_MAX 10"),
    (lambda c: c.search("red mug", offset=-5), "OFFSET must be >= 0"),
    (lambda c: c.search("red mug", top_k=1000, offset=9500), "OFFSET \\+ TOP_K <= 10000"),
    (lambda c: c.search("red mug", text_weight=1.5), "TEXT_WEIGHT must be within \\[0, 1\\]"),
])
def test_bad_options_get_invalid_argument_and_the_server_keeps_serving(search_client, call, message):
    with pytest.raises(SearchError, match=message) as caught:
        call(search_client)
    assert caught.value.status == "StatusCode.INVALID_ARGUMENT" and caught.value.attempts == 1
    assert len(search_client.search("red mug", top_k=3).ids) == 3


def test_mixed_options_under_concurrency_answer_like_one_at_a_time(triton, search_client):
    """Requests with and without optional inputs arrive together; each gets its own answer."""
    queries = [dict(text="red mug"), dict(text="red mug", filters=Filters(categories=["mug"], price_max=20.0)),
               dict(text="blue jeans", offset=10), dict(text="black sneakers", text_weight=0.8),
               dict(like=["P00001"]), dict(like=["P00002", "P00003"], filters=Filters(categories=["t-shirt"]))]

    def call(client, query):
        query = dict(query)
        if "like" in query:
            return client.recommend(query.pop("like"), top_k=10, **query)
        return client.search(query.pop("text"), top_k=10, **query)

    expected = [call(search_client, q).ids for q in queries]

    async def storm():
        loop = asyncio.get_running_loop()
        clients = [SearchClient(triton.grpc_url, timeout_s=60) for _ in range(8)]
        try:
            calls = [loop.run_in_executor(None, call, clients[i % 8], queries[i % len(queries)]) for i in range(96)]
            return await asyncio.gather(*calls)
        finally:
            for client in clients:
                client.close()

    answers = asyncio.run(storm())
    for i, answer in enumerate(answers):
        assert answer.ids == expected[i % len(queries)]
