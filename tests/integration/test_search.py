"""End to end against a real tritonserver: the public contract, quality, batching, bad input."""
from __future__ import annotations

import asyncio
import random
import time
from collections import defaultdict

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.grpc.aio as aioclient

from clients.contract import encode_inputs
from productsearch.control.admin import admin_headers
from clients.search import SearchError

pytestmark = pytest.mark.integration


def combo(product: dict) -> tuple[str, str, str]:
    return product["category"], product["color"], product["pattern"]


@pytest.fixture(scope="module")
def by_id(demo_catalog):
    return {p["id"]: p for p in demo_catalog}


@pytest.fixture(scope="module")
def heldout_combos(demo_catalog):
    groups = defaultdict(list)
    for product in demo_catalog:
        if product.get("heldout"):
            groups[combo(product)].append(product)
    assert groups, "the demo catalog has a held-out split"
    return groups


def demo_ids(result, k: int = 10) -> list[str]:
    """The top k among the demo catalog's products: other tests of the session (the Locust
    smoke's writer) add copies of catalog products to the shared catalog."""
    return [i for i in result.ids if not i.startswith("LOCUST-")][:k]


def canonical(category: str, color: str, pattern: str) -> str:
    return f"{color} {category}" if pattern == "plain" else f"{color} {pattern} {category}"


def test_contract_shapes_and_generation(search_client):
    result = search_client.search("blue mug", top_k=7)
    assert len(result.ids) == len(result.scores) == len(result.titles) == 7
    assert result.generation == 1
    assert all(a >= b for a, b in zip(result.scores, result.scores[1:])), "scores descend"
    assert all(-1.0001 <= s <= 1.0001 for s in result.scores), "cosine range"


def test_text_search_finds_the_described_products(search_client, by_id):
    result = search_client.search("red striped t-shirt", top_k=30)
    hits = [combo(by_id[i]) for i in demo_ids(result)]
    assert hits.count(("t-shirt", "red", "striped")) >= 8, hits


def test_text_search_on_heldout_combinations_meets_a_floor(search_client, by_id, heldout_combos):
    """Exact-combination precision@10 on combinations never seen in training (target 0.90, floor 0.75)."""
    precisions = []
    for key in heldout_combos:
        result = search_client.search(canonical(*key), top_k=30)
        precisions.append(np.mean([combo(by_id[i]) == key for i in demo_ids(result)]))
    assert np.mean(precisions) >= 0.75, f"P@10 {np.mean(precisions):.3f}"


def test_image_search_finds_the_same_kind_of_product(search_client, by_id, heldout_combos):
    """A photo of a held-out product: its own combination fills the results (floor 0.7 on average)."""
    rng = random.Random(0)
    precisions = []
    for key, products in sorted(heldout_combos.items())[:15]:
        query = rng.choice(products)
        result = search_client.search(image=query["image"], top_k=30)
        assert query["id"] in demo_ids(result)
        precisions.append(np.mean([combo(by_id[i]) == key for i in demo_ids(result)]))
    assert np.mean(precisions) >= 0.7, f"P@10 {np.mean(precisions):.3f}"


def test_text_plus_image_agree_on_the_product(search_client, by_id, heldout_combos):
    """A held-out photo plus words naming its category: that combination fills the top 5."""
    key, products = sorted(heldout_combos.items())[3]
    result = demo_ids(search_client.search(f"{key[1]} {key[0]}", image=products[0]["image"], top_k=30), 5)
    assert [combo(by_id[i]) for i in result] == [key] * 5
    alone = demo_ids(search_client.search(image=products[0]["image"], top_k=30), 5)
    assert result[0] in alone


def test_encode_product_returns_a_unit_norm_fused_embedding(triton, demo_catalog):
    product = demo_catalog[0]
    with open(product["image"], "rb") as handle:
        inputs = encode_inputs(product["title"], handle.read())
    with grpcclient.InferenceServerClient(triton.grpc_url) as client:
        embedding = client.infer("encode_product", inputs).as_numpy("EMBEDDING")
    # 2D: 1024 for the demo's USE multilingual (D = 512), 768 for demo-minilm's MiniLM (D = 384)
    assert embedding.shape in ((1, 1024), (1, 768)) and embedding.dtype == np.float32
    assert np.linalg.norm(embedding) == pytest.approx(1.0, abs=1e-4)


def test_dynamic_batching_batches_under_concurrent_load(triton, demo_catalog):
    """64 queries in flight: each encoder executes fewer times than it infers (statistics API)."""

    def counts(client, model):
        stats = client.get_inference_statistics(model, headers=admin_headers(triton.key)).model_stats
        return sum(s.inference_count for s in stats), sum(s.execution_count for s in stats)

    async def flood():
        client = aioclient.InferenceServerClient(triton.grpc_url)
        try:
            calls = []
            for product in demo_catalog[:64]:
                with open(product["image"], "rb") as handle:
                    calls.append(client.infer("encode_product", encode_inputs(product["title"], handle.read())))
            await asyncio.gather(*calls)
        finally:
            await client.close()

    models = ("text_encoder", "image_encoder", "fusion")
    with grpcclient.InferenceServerClient(triton.grpc_url) as client:
        before = {m: counts(client, m) for m in models}
        asyncio.run(flood())
        deadline = time.monotonic() + 10  # statistics are updated just after responses go out
        while True:
            after = {m: counts(client, m) for m in models}
            if all(after[m][0] - before[m][0] >= 64 for m in models) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    for model in before:
        inferences = after[model][0] - before[model][0]
        executions = after[model][1] - before[model][1]
        assert inferences == 64, model
        assert executions < inferences, f"{model}: {executions} executions for {inferences} inferences"


@pytest.mark.parametrize("query, message", [
    (dict(), "query is empty"),
    (dict(image=b"\xff\xd8\xff\xe0 definitely not a jpeg"), "corrupt or truncated|not a recognised image"),
    (dict(text="shoes", top_k=0), "TOP_K must be between 1 and 1000"),
    (dict(text="shoes", top_k=10**6), "TOP_K must be between 1 and 1000"),
    (dict(text="shoes", top_k=-1), "TOP_K must be between 1 and 1000"),
])
def test_bad_queries_get_invalid_argument_and_the_server_keeps_serving(search_client, query, message):
    with pytest.raises(SearchError, match=message) as caught:
        search_client.search(**query)
    assert caught.value.status == "StatusCode.INVALID_ARGUMENT"
    assert len(search_client.search("green backpack", top_k=3).ids) == 3
