"""Hot swap of generations under load on a real tritonserver: no failed request, no mixed answer,
and no acknowledged write lost across the swap (the catalog is re-encoded for the new generation
from the store while writes go on)."""
from __future__ import annotations

import time

import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

import build_models
from clients.index import read_products
from clients.search import SearchClient
from loadtest.catalog_load import WriteLoad
from loadtest.search_load import QUERIES, SearchLoad
from loadtest.private_server import deployer_for
from productsearch.control.deploy.swap import Deployer, DeployError
from productsearch.control.generations import clone_encoders, record_encoders
from productsearch.control.repository import link_repository
from productsearch.control.milvus_lite import MilvusLiteServer
from tests.catalog_fixtures import STORE_KINDS
from tests.conftest import DEMO_CATALOG, MODEL_REPOSITORY, load_catalog, require_built, serve_generation, start_server
from tests.integration.metrics_scrape import scrape, wait_for
from tests.tiny_checkpoints import tiny_clip

pytestmark = pytest.mark.integration
CLIENTS = {"sqlite": 16, "milvus": 4}  # milvus-lite's pure-Python engine serves ~5 searches/s on 2 cores
# a swap re-encodes the whole catalog into the new generation's collection: milvus-lite writes ~500/s,
# so its catalog is smaller (the swap's steps are the same at any size)
PRODUCTS = {"sqlite": 600, "milvus": 250}
TOP = 5


@pytest.fixture(scope="module", params=STORE_KINDS)
def swap_server(request, tmp_path_factory):
    """Generation 1 (the demo towers) serving 600 products (250 on Milvus); generation 2 other
    encoders (a tiny random CLIP), so that an answer mixing the two would show. The catalog is the embedded store,
    or a `milvus-lite server` (each generation a collection of its own behind the write alias)."""
    require_built()
    root = tmp_path_factory.mktemp(f"swap_{request.param}")
    milvus = MilvusLiteServer(root / "milvus").start() if request.param == "milvus" else None
    repository = link_repository(MODEL_REPOSITORY, root / "model_repository", generations=[1])
    server = start_server(repository, root / "triton.log", [],
                          catalog_url=milvus.catalog_url(root / "images") if milvus else None)
    server.store_kind = request.param
    try:
        assert serve_generation(server, repository) == 1
        load_catalog(server, read_products(DEMO_CATALOG)[:PRODUCTS[request.param]])
        # built after the restore, which would otherwise bring back the newest generation
        assert build_models.main(["--preset", "clip", "--checkpoint", str(tiny_clip(root / "clip")),
                                  "--out", str(repository), "--generation", "2"]) == 0
        yield server, repository
    finally:
        server.stop()
        if milvus:
            milvus.stop()


EMBEDDED_ONLY = pytest.mark.parametrize("swap_server", ["sqlite"], indirect=True)  # the store plays no part


def serving_generations(port: int) -> set[str]:
    """The generations whose scorer instances say, on the metrics endpoint, that they serve."""
    return {labels["generation"] for name, labels, value in scrape(port)[1]
            if name == "productsearch_generation_serving" and labels.get("model") == "scorer" and value == 1}


def wait_serving(port: int, generations: set[str], timeout_s: float = 15.0) -> set[str]:
    """The serving generations once they are `generations` (a stub flushes its metrics each second)."""
    deadline = time.monotonic() + timeout_s
    while (got := serving_generations(port)) != generations and time.monotonic() < deadline:
        time.sleep(0.2)
    return got


def swaps(port: int) -> dict[tuple[str, str], float]:
    return {(labels["stage"], labels["target"]): value for name, labels, value in scrape(port)[1]
            if name == "productsearch_swaps_total"}


def expected_answers(server, queries, generation: int) -> dict[str, list[str]]:
    """Each query's answer, all served by `generation`."""
    with SearchClient(server.grpc_url, timeout_s=60) as client:
        results = {q: client.search(q, top_k=TOP) for q in queries}
    assert {r.generation for r in results.values()} == {generation}
    return {q: r.ids for q, r in results.items()}


def test_swap_and_rollback_under_load_fail_nothing_and_mix_nothing(swap_server):
    """One swap to 2 and one rollback to 1 under load: no request fails, and every answer is
    exactly its generation's answer (taken alone while that generation served: answers are
    deterministic), so no answer mixes encoders and catalog of two generations."""
    server, repository = swap_server
    queries = QUERIES[:4]
    with deployer_for(server, repository, log=lambda *a: None) as deployer:
        assert deployer.serving_generation() == 1
    expected = {1: expected_answers(server, queries, 1)}
    with SearchLoad(server.grpc_url, CLIENTS[server.store_kind], queries=queries, top_k=TOP, timeout_s=60, retries=0) as searchers, \
            deployer_for(server, repository, log=lambda *a: None) as deployer:
        time.sleep(2)
        started = time.monotonic()
        deployer.swap(2)
        swapped = time.monotonic()
        expected[2] = expected_answers(server, queries, 2)  # generation 2 serves: its own answers
        wait_for(server.metrics_port, {("productsearch_swaps_total", (("stage", "finished"), ("target", "2"))): 1.0})
        assert wait_serving(server.metrics_port, {"2"}) == {"2"}  # the metrics say which generation serves
        time.sleep(2)
        deployer.rollback()
        rolled_back = time.monotonic()
        time.sleep(2)
    answers = searchers.answers
    assert not searchers.failures, searchers.failures[:5]
    counted = {("started", "2"): 1.0, ("finished", "2"): 1.0, ("started", "1"): 1.0, ("finished", "1"): 1.0}
    wait_for(server.metrics_port, {("productsearch_swaps_total", (("stage", s), ("target", t))): n
                                   for (s, t), n in counted.items()})
    assert swaps(server.metrics_port) == counted and wait_serving(server.metrics_port, {"1"}) == {"1"}
    assert expected[1] != expected[2], "the two generations must answer differently for this test to see a mix"
    assert len(answers) > (50 if server.store_kind == "sqlite" else 15), len(answers)
    for call in answers:  # each answer is exactly its generation's answer: no mix of encoders and catalog
        assert call.result.ids == expected[call.result.generation][call.query], (call.result.generation, call.query)
    assert {c.result.generation for c in answers if c.sent < started} == {1}
    after_swap = [c.result.generation for c in answers if swapped < c.sent < swapped + 2]
    assert after_swap and set(after_swap) == {2}, "every request sent after the swap is served by 2"
    after_rollback = [c.result.generation for c in answers if c.sent > rolled_back]
    assert after_rollback and set(after_rollback) == {1}


def test_a_swap_during_writes_loses_no_write_and_fails_no_request(swap_server):
    server, repository = swap_server
    templates = read_products(DEMO_CATALOG)[600:700]
    t0 = time.monotonic()  # the deploy steps are printed with their times (shown when the test fails)
    with WriteLoad(server.grpc_url, server.key, templates, writers=4, rate=5, prefix="SW", timeout_s=30) as writers, \
            SearchLoad(server.grpc_url, 4, queries=QUERIES[:4], top_k=TOP, timeout_s=60) as searchers, \
            deployer_for(server, repository, log=lambda line: print(f"[{time.monotonic() - t0:6.1f}s] {line}")) as deployer:
        time.sleep(2)
        target = 2 if deployer.serving_generation() == 1 else 1
        deployer.swap(target)
        time.sleep(2)
    assert not writers.failures, writers.failures[:5]
    assert not searchers.failures, searchers.failures[:5]
    assert len(writers.writes) > 20
    final = writers.state_at(max(w.sequence for w in writers.writes))
    with SearchClient(server.grpc_url, timeout_s=60) as client:
        for pid in final:  # every product acknowledged and not deleted is in the new generation's index
            assert client.recommend([pid], top_k=1).generation == target
        deleted = {w.id for w in writers.writes if w.op == "delete"} - set(final)
        for pid in deleted:
            with pytest.raises(Exception, match="unknown product id"):
                client.recommend([pid], top_k=1)


@EMBEDDED_ONLY
def test_a_deploy_tool_on_another_catalog_store_is_refused_before_any_request_moves(swap_server, tmp_path):
    """A deploy tool whose store is not the server's (a PRODUCTSEARCH_CATALOG left unset) would
    fence and encode the wrong catalog: the swap sees the server's writers did not move, and stops."""
    server, repository = swap_server
    with Deployer(server.grpc_url, repository, server.admin_headers, log=lambda *a: None,
                  catalog=f"sqlite://{tmp_path / 'another_store'}") as deployer:
        serving = deployer.serving_generation()
        with pytest.raises(DeployError, match="is not the server's; set PRODUCTSEARCH_CATALOG"):
            deployer.swap(2 if serving == 1 else 1)
        assert deployer.serving_generation() == serving
        assert deployer.loaded_versions("catalog_writer") == [serving]
    with SearchClient(server.grpc_url) as client:
        assert client.search("red mug", top_k=3).generation == serving


@EMBEDDED_ONLY
def test_corrupt_generation_is_refused_and_the_serving_one_keeps_answering(swap_server):
    server, repository = swap_server
    clone_encoders(repository, 3, 1)
    (repository / "text_encoder" / "3" / "extra.bin").write_bytes(b"changed after the build")
    with deployer_for(server, repository, log=lambda *a: None) as deployer:
        serving = deployer.serving_generation()
        with pytest.raises(DeployError, match="differ from the manifest"):
            deployer.swap(3)
        assert deployer.serving_generation() == serving
        assert deployer.loaded_versions("scorer") == [serving]
    with SearchClient(server.grpc_url) as client:
        assert client.search("red mug", top_k=3).generation == serving


@EMBEDDED_ONLY
def test_a_generation_that_fails_to_load_never_touches_the_ensembles(swap_server):
    """Files that match their manifest but cannot load (broken weights): refused while loading
    version N beside the serving one, before any ensemble is reloaded."""
    server, repository = swap_server
    clone_encoders(repository, 4, 1)
    broken = repository / "image_encoder" / "4" / "image_tower"
    broken.unlink()
    broken.mkdir()
    (broken / "image_tower.json").write_text("{not json")
    record_encoders(repository, 4, {"test": "broken image tower"})
    with deployer_for(server, repository, log=lambda *a: None) as deployer:
        serving = deployer.serving_generation()
        with pytest.raises(DeployError, match="image_encoder"):
            deployer.swap(4)
        assert deployer.serving_generation() == serving
        failed = (("stage", "failed"), ("target", "4"))
        assert wait_for(server.metrics_port, {("productsearch_swaps_total", failed): 1.0})[2] == {
            ("productsearch_swaps_total", failed): 1.0}
        assert deployer.loaded_versions("image_encoder") == [serving]
    with SearchClient(server.grpc_url) as client:
        assert client.search("red mug", top_k=3).generation == serving


@EMBEDDED_ONLY
def test_load_and_unload_need_the_admin_header(swap_server):
    server, _ = swap_server
    with grpcclient.InferenceServerClient(server.grpc_url) as client:
        for call in (lambda: client.unload_model("search"), lambda: client.load_model("search"),
                     lambda: client.unload_model("search", headers={"triton-grpc-protocol-admin-key": "wrong"})):
            with pytest.raises(InferenceServerException, match="restricted"):
                call()
        assert client.is_model_ready("search")
    from clients.catalog import CatalogClient, ServiceError  # the swap counter takes the admin key only
    for key in (None, "wrong"):
        with CatalogClient(server.grpc_url, key=key, retries=0) as catalog, pytest.raises(ServiceError, match="UNAUTH"):
            catalog.admin("record_swap", {"stage": "finished", "generation": 1})
    with CatalogClient(server.grpc_url, key=server.key, retries=0) as catalog:
        with pytest.raises(ServiceError, match="record_swap needs"):
            catalog.admin("record_swap", {"stage": "done", "generation": "one"})


@EMBEDDED_ONLY
def test_prune_deletes_old_generations_but_never_the_serving_the_previous_or_a_loaded_one(swap_server):
    """`deploy prune --keep 1` on the running server: the generations beyond the newest go, each
    model's version folder and manifest; the serving and the previous one stay; a clone's
    symlinked weights are unlinked, never followed (the source generation still verifies)."""
    from productsearch.control.deploy.__main__ import prune
    from productsearch.control.generations import manifest_path, read_serving, verify_generation
    from productsearch.control.repository import GENERATION_MODELS, built_generations

    server, repository = swap_server
    newest = built_generations(repository)[-1] + 1
    clone_encoders(repository, newest, 1)
    with deployer_for(server, repository, log=lambda *a: None) as deployer:
        serving, previous = deployer.serving_generation(), read_serving(repository).get("previous")
        said = []
        pruned = prune(deployer, keep=1, log=said.append)
        kept = built_generations(repository)
        assert pruned and newest in kept and serving in kept and (previous is None or previous in kept)
        for generation in pruned:
            assert generation not in kept and not manifest_path(repository, generation).exists()
            assert not any((repository / model / str(generation)).exists() for model in GENERATION_MODELS)
            assert f"pruned generation {generation}" in said
        verify_generation(MODEL_REPOSITORY, 1)  # the clone's links pointed there
    with SearchClient(server.grpc_url) as client:
        assert client.search("red mug", top_k=3).generation == serving
