"""Relevance through the public contract on the real tritonserver: a product code found by the
hybrid search, facets, the group cap, boosts, explanations and merchandising rules changed while
serving, and bad relevance inputs refused with INVALID_ARGUMENT. A shop of its own, so the other
tests' catalog is untouched."""
from __future__ import annotations

import pytest

from clients.contract import Filters, Product, ReadOptions, Relevance
from clients.index import read_products
from clients.search import SearchClient, SearchError
from tests.conftest import DEMO_CATALOG

pytestmark = pytest.mark.integration
SHOP = "relevance-test"
BRANDS = ("Acme", "Borealis", "Cobalt")


@pytest.fixture(scope="module")
def shop(triton):
    """60 demo products with brands, SKUs, ratings and stock, in their own shop."""
    from clients.catalog import CatalogClient

    products = []
    for i, product in enumerate(read_products(DEMO_CATALOG)[:60]):
        fields = {**(product.fields or {}), "brand": BRANDS[i % 3], "sku": f"QX-{i:04d}-Z", "rating": 1 + i % 5,
                  "stock": i % 4}
        products.append(Product(product.id, product.title, product.image, fields))
    with CatalogClient(triton.grpc_url, timeout_s=60, key=triton.key) as client:
        client.create_shop(SHOP)
        sequence = max(client.upsert(products[:30], shop=SHOP) + client.upsert(products[30:], shop=SHOP))
        yield client, products, sequence


def read(sequence: int) -> ReadOptions:
    return ReadOptions(SHOP, sequence)


def test_a_product_code_query_returns_that_product_first(triton, shop):
    _, products, sequence = shop
    with SearchClient(triton.grpc_url, key=triton.key, timeout_s=30) as client:
        result = client.search("qx-0042-z", top_k=5, read=read(sequence), relevance=Relevance(explain=True))
    assert result.ids[0] == products[42].id
    assert "exact product code" in result.explanations[0]["rules"]
    assert set(result.explanations[0]) >= {"vector", "lexical", "relevance", "boost_factor", "rules", "score"}


def test_facets_group_cap_and_in_stock_through_search(triton, shop):
    _, products, sequence = shop
    with SearchClient(triton.grpc_url, key=triton.key, timeout_s=30) as client:
        result = client.search("red", top_k=9, read=read(sequence), filters=Filters(in_stock=True),
                               relevance=Relevance(max_per_group=3, facets=["brand", "in_stock"]))
    in_stock = [p for p in products if p.fields["stock"] > 0]
    assert result.facets["brand"] == {b: sum(p.fields["brand"] == b for p in in_stock) for b in BRANDS}
    assert result.facets["in_stock"] == {"in_stock": len(in_stock), "out_of_stock": 0, "unknown": 0}
    brands = {p.id: p.fields["brand"] for p in products}
    found = [brands[i] for i in result.ids]
    assert len(found) == 9 and all(found.count(b) == 3 for b in BRANDS)
    assert all(p.fields["stock"] > 0 for p in products if p.id in result.ids)


def test_rules_change_while_serving(triton, shop):
    client, products, sequence = shop
    with SearchClient(triton.grpc_url, key=triton.key, timeout_s=30) as search:
        before = search.search("blue mug", top_k=5, read=read(sequence)).ids
        rules_sequence = client.set_rules([{"query": "Blue  mug", "pin": products[7].id, "position": 1},
                                           {"query": "blue mug", "hide": before[0]}], shop=SHOP)
        try:
            after = search.search("blue mug", top_k=5, read=read(rules_sequence), relevance=Relevance(explain=True))
            assert after.ids[0] == products[7].id and before[0] not in after.ids
            assert "pinned at 1" in after.explanations[0]["rules"]
            assert client.rules(shop=SHOP)[0]["query"] == "blue mug"
        finally:
            client.set_rules([], shop=SHOP)


def test_recommend_takes_boosts_and_facets(triton, shop):
    _, products, sequence = shop
    with SearchClient(triton.grpc_url, key=triton.key, timeout_s=30) as client:
        result = client.recommend([products[0].id], top_k=5, read=read(sequence),
                                  relevance=Relevance(boosts={"rating": 1.0}, facets=["category"], explain=True))
    assert len(result.ids) == 5 and sum(result.facets["category"].values()) == len(products) - 1
    assert all(note["boost_factor"] >= 1.0 for note in result.explanations)


@pytest.mark.parametrize("relevance, message", [
    (Relevance(lexical_weight=1.5), "LEXICAL_WEIGHT"), (Relevance(boosts={"colour": 1}), "BOOSTS"),
    (Relevance(facets=["nope"]), "FACETS"), (Relevance(group_by="title", max_per_group=2), "GROUP_BY")])
def test_bad_relevance_inputs_are_invalid_argument(triton, shop, relevance, message):
    with SearchClient(triton.grpc_url, key=triton.key, timeout_s=30, retries=0) as client:
        with pytest.raises(SearchError) as err:
            client.search("red", top_k=3, read=ReadOptions(SHOP), relevance=relevance)
        assert err.value.status == "StatusCode.INVALID_ARGUMENT" and message in err.value.message
        assert client.search("red", top_k=3, read=ReadOptions(SHOP)).ids  # the server lives on
