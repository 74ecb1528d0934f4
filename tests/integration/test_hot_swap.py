"""Hot swap of generations under load on a real tritonserver: no failed request, no mixed answer."""
from __future__ import annotations

import json
import time

import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from productsearch.control.indexer import index_and_serve
from clients.search import SearchClient
from loadtest.search_load import QUERIES, SearchLoad
from productsearch.control.deploy import Deployer, DeployError
from productsearch.control.generations import clone_encoders, record_encoders
from productsearch.control.repository import link_repository
from tests.conftest import DEMO_CATALOG, MODEL_REPOSITORY, require_built, start_server

pytestmark = pytest.mark.integration
CLIENTS = 16


def add_generation(repository, generation: int, source: int = 1) -> None:
    """Generation N with the encoders of `source` (linked): a catalog change only."""
    clone_encoders(repository, generation, source)


def write_catalog_variant(path, prefix: str, count: int, offset: int) -> None:
    """A catalog of `count` demo products under new ids, so answers show their generation."""
    lines = DEMO_CATALOG.read_text().splitlines()[offset: offset + count]
    with open(path, "w") as out:
        for line in lines:
            product = json.loads(line)
            product["id"] = prefix + product["id"]
            product["image"] = str(DEMO_CATALOG.parent / product["image"])
            out.write(json.dumps(product) + "\n")


@pytest.fixture(scope="module")
def swap_server(tmp_path_factory):
    require_built()
    root = tmp_path_factory.mktemp("swap")
    repository = link_repository(MODEL_REPOSITORY, root / "model_repository", generations=[1])
    add_generation(repository, 2)
    for generation, prefix in ((1, "G1-"), (2, "G2-")):
        write_catalog_variant(root / f"catalog{generation}.jsonl", prefix, 600, 600 * generation)
    server = start_server(repository, root / "triton.log", [])
    try:
        index_and_serve(root / "catalog2.jsonl", server.grpc_url, repository, 2, server.admin_headers,
                        serve=False, log=lambda *a: None)
        index_and_serve(root / "catalog1.jsonl", server.grpc_url, repository, 1, server.admin_headers,
                        log=lambda *a: None)
        yield server, repository
    finally:
        server.stop()


def check_consistent(answers) -> None:
    for call in answers:
        generation, ids = call.result.generation, call.result.ids
        assert generation in (1, 2)
        assert all(i.startswith(f"G{generation}-") for i in ids), (generation, ids)


def test_swap_and_rollback_under_load_fail_nothing_and_mix_nothing(swap_server):
    server, repository = swap_server
    with SearchLoad(server.grpc_url, CLIENTS, queries=QUERIES[:4], top_k=5, timeout_s=60, retries=0) as searchers, \
            Deployer(server.grpc_url, repository, server.admin_headers, log=lambda *a: None) as deployer:
        time.sleep(2)
        assert deployer.serving_generation() == 1
        started = time.monotonic()
        deployer.swap(2)
        swapped = time.monotonic()
        time.sleep(3)
        deployer.rollback()
        rolled_back = time.monotonic()
        time.sleep(2)
    answers = searchers.answers
    assert not searchers.failures, searchers.failures[:5]
    assert len(answers) > 50
    check_consistent(answers)
    assert {c.result.generation for c in answers if c.sent < started} == {1}
    after_swap = [c.result.generation for c in answers if swapped < c.sent < swapped + 3]
    assert after_swap and set(after_swap) == {2}, "every request sent after the swap is served by 2"
    after_rollback = [c.result.generation for c in answers if c.sent > rolled_back]
    assert after_rollback and set(after_rollback) == {1}


def test_corrupt_generation_is_refused_and_the_serving_one_keeps_answering(swap_server):
    server, repository = swap_server
    add_generation(repository, 3)
    write_catalog_variant(repository.parent / "catalog3.jsonl", "G3-", 50, 0)
    index_and_serve(repository.parent / "catalog3.jsonl", server.grpc_url, repository, 3, server.admin_headers,
                    serve=False, log=lambda *a: None)
    embeddings = repository / "scorer" / "3" / "catalog" / "embeddings.npy"
    embeddings.write_bytes(embeddings.read_bytes()[:-100])  # truncated on disk
    with Deployer(server.grpc_url, repository, server.admin_headers, log=lambda *a: None) as deployer:
        serving = deployer.serving_generation()
        with pytest.raises(DeployError, match="checksum"):
            deployer.swap(3)
        assert deployer.serving_generation() == serving
        assert deployer.loaded_versions("scorer") == [serving]
    with SearchClient(server.grpc_url) as client:
        assert client.search("red mug", top_k=3).generation == serving


def test_a_generation_that_fails_to_load_never_touches_the_ensembles(swap_server):
    """Files that match their manifest but cannot load (broken weights): refused while loading
    version N beside the serving one, before any ensemble is reloaded."""
    server, repository = swap_server
    add_generation(repository, 4)
    broken = repository / "image_encoder" / "4" / "image_tower"
    broken.unlink()
    broken.mkdir()
    (broken / "image_tower.json").write_text("{not json")
    record_encoders(repository, 4, {"test": "broken image tower"})
    write_catalog_variant(repository.parent / "catalog4.jsonl", "G4-", 20, 0)
    # generation 4's catalog: valid files (from generation 1's embeddings); only its tower is broken
    from productsearch.catalog.files import load_catalog, write_catalog
    from productsearch.control.generations import record_catalog

    catalog = load_catalog(repository / "scorer" / "1")
    write_catalog(repository / "scorer" / "4", catalog.embeddings[:20],
                  [dict(p, id="G4-" + p["id"]) for p in catalog.products[:20]])
    record_catalog(repository, 4)
    with Deployer(server.grpc_url, repository, server.admin_headers, log=lambda *a: None) as deployer:
        serving = deployer.serving_generation()
        with pytest.raises(DeployError, match="image_encoder"):
            deployer.swap(4)
        assert deployer.serving_generation() == serving
        assert deployer.loaded_versions("image_encoder") == [serving]
    with SearchClient(server.grpc_url) as client:
        assert client.search("red mug", top_k=3).generation == serving


def test_load_and_unload_need_the_admin_header(swap_server):
    server, _ = swap_server
    with grpcclient.InferenceServerClient(server.grpc_url) as client:
        for call in (lambda: client.unload_model("search"), lambda: client.load_model("search"),
                     lambda: client.unload_model("search", headers={"triton-grpc-protocol-admin-key": "wrong"})):
            with pytest.raises(InferenceServerException, match="restricted"):
                call()
        assert client.is_model_ready("search")
