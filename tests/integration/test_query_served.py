"""Query understanding through the public contract on the real tritonserver, in the demo catalog
(5,280 products whose brands are shared by hundreds): a new product's made-up name, and its own
title, find it first at the default weight; negated colours, patterns, categories and brands
(English and Chinese) never reach the top 10; EXPLAIN says how the query was read."""
from __future__ import annotations

import pytest

from clients.catalog import CatalogClient
from clients.contract import Product, ReadOptions, Relevance
from clients.search import SearchClient
from tests.conftest import DEMO_CATALOG

pytestmark = pytest.mark.integration
NEW_ID = "QU-ZORBLAX-1"


@pytest.fixture(scope="module")
def zorblax(triton, demo_catalog):
    """"Zorblax quantum kettle in teal" upserted into the demo catalog (any photo), deleted after."""
    photo = DEMO_CATALOG.parent / demo_catalog[0]["image"]
    with CatalogClient(triton.grpc_url, timeout_s=60, key=triton.key) as client:
        sequence = client.upsert([Product(NEW_ID, "Zorblax quantum kettle in teal", photo)])[0]
        try:
            yield sequence
        finally:
            client.delete([NEW_ID])


@pytest.mark.parametrize("text", ["Zorblax", "Zorblax quantum kettle in teal", "zorblax kettle"])
def test_a_new_products_own_name_returns_it_first(triton, zorblax, text):
    with SearchClient(triton.grpc_url, timeout_s=30) as client:
        result = client.search(text, top_k=5, read=ReadOptions(None, zorblax), relevance=Relevance(explain=True))
    assert result.ids[0] == NEW_ID
    note = result.explanations[0]["query"]
    assert note["lexical_weight"] > 0.5 and "rare word 'zorblax'" in note["weight_reason"]


def test_a_descriptive_or_chinese_query_keeps_the_vector_weight(triton):
    with SearchClient(triton.grpc_url, timeout_s=30) as client:
        for text in ("a cup for my morning coffee", "红色条纹T恤"):
            note = client.search(text, top_k=3, relevance=Relevance(explain=True)).explanations[0]["query"]
            assert note["lexical_weight"] == 0.1, (text, note)


@pytest.mark.parametrize("text, field, value", [
    ("dress not red", "color", "red"), ("dress -red", "color", "red"), ("t-shirt no stripes", "pattern", "striped"),
    ("red things without mugs", "category", "mug"), ("backpack -Kestrel", "brand", "Kestrel"),
    ("连衣裙不要红色", "color", "red"), ("非红色的T恤", "color", "red"), ("除了红色以外的连衣裙", "color", "red"),
])
def test_no_excluded_value_in_the_top_10(triton, demo_catalog, text, field, value):
    records = {p["id"]: p for p in demo_catalog}
    with SearchClient(triton.grpc_url, timeout_s=30) as client:
        result = client.search(text, top_k=10, relevance=Relevance(explain=True))
    assert len(result.ids) == 10
    assert all(records.get(pid, {}).get(field) != value for pid in result.ids)  # the new product has none
    assert result.explanations[0]["query"]["negation"]["excluded"] == {field: [value]}


def test_an_unknown_negated_word_is_excluded_lexically(triton, demo_catalog):
    records = {p["id"]: p for p in demo_catalog}
    with SearchClient(triton.grpc_url, timeout_s=30) as client:
        # "laptop" is no closed value; the backpacks' descriptions mention a laptop sleeve
        result = client.search("bag without laptop", top_k=10, relevance=Relevance(explain=True))
    assert result.explanations[0]["query"]["negation"]["excluded_words"] == ["laptop"]
    assert not any("laptop" in (records.get(pid, {}).get("description_en", "") + records.get(pid, {}).get("description", "")).casefold()
                   for pid in result.ids)
