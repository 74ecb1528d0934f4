"""The scorer's indexed path inside Triton's python stub (faiss there, index built at load and
persisted): the demo catalog served through IVF answers like exact search."""
from __future__ import annotations

import pytest
import tritonclient.grpc as grpcclient

from productsearch.control.model_configs import read_config, to_json

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


def test_served_ivf_search_matches_exact(triton, search_client):
    exact = {q: search_client.search(q, top_k=10) for q in QUERIES}
    generation = exact[QUERIES[0]].generation
    reload_scorer(triton, generation, exact_max_products=1000, nprobe=32)  # 5,280 products: now through the index
    try:
        found = {q: search_client.search(q, top_k=10) for q in QUERIES}
        big = search_client.search("red", top_k=1000)
    finally:
        reload_scorer(triton, generation)
    recall = sum(len(set(found[q].ids) & set(exact[q].ids)) for q in QUERIES) / (10 * len(QUERIES))
    assert recall >= 0.9
    for q in QUERIES:
        assert found[q].generation == generation
        assert list(found[q].scores) == sorted(found[q].scores, reverse=True)
    assert len(big.ids) == 1000 and len(set(big.ids)) == 1000  # probes more lists when short
