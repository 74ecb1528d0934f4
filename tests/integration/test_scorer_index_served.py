"""The scorer's indexed path inside Triton's python stub (faiss there, index built at load and
persisted): the demo catalog served through IVF answers like exact search."""
from __future__ import annotations

import time

import pytest
import tritonclient.grpc as grpcclient

from productsearch.control.model_configs import read_config, to_json
from productsearch.control.processes import pid_alive
from tests.integration.metrics_scrape import scrape

pytestmark = pytest.mark.integration

QUERIES = ["red dress", "blue striped t-shirt", "green polka-dot scarf", "black sneakers", "white mug"]


def reload_scorer(server, generation: int, **parameters) -> None:
    config = read_config(server.model_repository, "scorer")
    config.version_policy.specific.versions[:] = [generation]
    for key, value in parameters.items():
        config.parameters[key].string_value = str(value)
    with grpcclient.InferenceServerClient(server.grpc_url) as client:
        client.load_model("scorer", config=to_json(config), headers=server.admin_headers, client_timeout=300)
        assert client.is_model_ready("scorer", str(generation)) and client.is_model_ready("search")


def scorer_loads(server) -> set[str]:
    """The `load` labels of the scorer's live series (metrics.py: one per stub process)."""
    return {labels["load"] for name, labels, _ in scrape(server.metrics_port)[1]
            if name == "productsearch_generation_serving" and labels.get("model") == "scorer"}


def test_served_ivf_search_matches_exact(triton, search_client):
    exact = {q: search_client.search(q, top_k=10) for q in QUERIES}
    generation = exact[QUERIES[0]].generation
    before = scorer_loads(triton)
    reload_scorer(triton, generation, exact_max_products=1000, nprobe=32)  # 5,280 products: now through the index
    try:
        found = {q: search_client.search(q, top_k=10) for q in QUERIES}
        big = search_client.search("red", top_k=1000)
        time.sleep(2.5)  # two metrics flushes of the new stub after the old one's unload
        through_index = scorer_loads(triton)
    finally:
        reload_scorer(triton, generation)
    # the reloads loaded the new stubs beside the old ones; their series never shared (server #8663:
    # a shared one was freed under the new stub by the old one's unload and tritonserver died)
    assert len(before) == 1 and len(through_index) == 1 and through_index != before
    time.sleep(2.5)
    assert pid_alive(triton.pid) and search_client.search(QUERIES[0], top_k=10).ids == exact[QUERIES[0]].ids
    after = scorer_loads(triton)
    assert len(after) == 1 and after.isdisjoint(before | through_index)  # the unloaded stubs' series gone
    recall = sum(len(set(found[q].ids) & set(exact[q].ids)) for q in QUERIES) / (10 * len(QUERIES))
    assert recall >= 0.9
    for q in QUERIES:
        assert found[q].generation == generation
        assert list(found[q].scores) == sorted(found[q].scores, reverse=True)
    assert len(big.ids) == 1000 and len(set(big.ids)) == 1000  # probes more lists when short
