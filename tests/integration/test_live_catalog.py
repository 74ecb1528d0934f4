"""The live catalog through the public contract on a real tritonserver: upserts, partial updates
and deletes while serving, read-your-writes (MIN_SEQUENCE), bad records, the write key,
durability across kill -9, and answers that always reflect a prefix of the log under load.

Longer than 350 lines: every test here shares the module's one served store and its write
helpers; split, each file would start its own tritonserver (CI time) for the same fixture."""
from __future__ import annotations

import os
import random
import signal
import threading
import time

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from clients.catalog import CatalogClient
from clients.connection import ServiceError
from clients.contract import Event, Filters, Product, ReadOptions, bytes_rows, upsert_inputs
from clients.events import EventsClient
from clients.index import read_products
from clients.search import SearchClient
from clients.suggest import SuggestClient
from loadtest.catalog_load import WriteLoad
from productsearch.control.processes import pid_alive
from productsearch.control.repository import link_repository
from productsearch.control.milvus_lite import MilvusLiteServer
from tests.catalog_fixtures import STORE_KINDS
from tests.conftest import DEMO_CATALOG, SMALL_CATALOG_SIZE, load_catalog, serve_generation, start_server

pytestmark = pytest.mark.integration


def photo(index: int) -> bytes:
    return open(read_products(DEMO_CATALOG)[index].image, "rb").read()


@pytest.fixture(scope="module", params=STORE_KINDS)
def live(request, small_catalog_repository, tmp_path_factory):
    """A server of its own over the 300-product catalog (these tests write to it): on the embedded
    store a copy of it, on Milvus a `milvus-lite server` the products are loaded into."""
    root = tmp_path_factory.mktemp(f"live_{request.param}")
    milvus, url = None, None
    if request.param == "milvus":
        milvus = MilvusLiteServer(root / "milvus").start()
        url = milvus.catalog_url(root / "images")
    repository = link_repository(small_catalog_repository, root / "model_repository", generations=[1],
                                 with_catalogs=milvus is None)
    server = start_server(repository, root / "triton.log", [], catalog_url=url)
    server.repository, server.root, server.kind, server.milvus = repository, root, request.param, milvus
    try:
        serve_generation(server, repository)
        if milvus:
            load_catalog(server, read_products(DEMO_CATALOG)[:SMALL_CATALOG_SIZE])
        yield server
    finally:
        server.stop()
        if milvus:
            milvus.stop()


@pytest.fixture
def writer(live):
    with CatalogClient(live.grpc_url, timeout_s=30, key=live.key) as client:
        yield client


@pytest.fixture
def reader(live):
    with SearchClient(live.grpc_url, timeout_s=30) as client:
        yield client


def test_an_upsert_is_searchable_with_its_sequence(writer, reader):
    title = "Aurora glacier-blue thermos flask"
    sequence = writer.upsert([Product("LIVE-1", title, photo(5), {"category": "water bottle", "price": 12.5})])[0]
    # TEXT_WEIGHT 1: ranked by the titles' words alone, whatever the generation's default weight
    result = reader.search("aurora glacier thermos", top_k=3, text_weight=1.0, read=ReadOptions(min_sequence=sequence))
    assert result.ids[0] == "LIVE-1" and result.titles[0] == title
    assert result.catalog_sequence >= sequence


def test_sequences_grow_and_an_empty_image_keeps_the_current_one(writer, reader):
    first = writer.upsert([Product("LIVE-2", "Quartz lantern mug", photo(7), {"category": "mug", "price": 9.0})])[0]
    second = writer.upsert([Product("LIVE-2", "Quartz lantern mug, renamed", None, {"category": "mug", "price": 9.0})])[0]
    assert second > first
    both = reader.search("Quartz lantern mug, renamed", image=photo(7), top_k=1, read=ReadOptions(min_sequence=second))
    # the product's own title and photo: both halves of its fused vector match only if it kept its image
    assert both.ids == ["LIVE-2"] and both.scores[0] > 0.95, both
    assert writer.product("LIVE-2")["title"] == "Quartz lantern mug, renamed" and writer.product("LIVE-2")["has_image"]


def test_products_answers_a_page_of_records_in_one_call_and_refuses_bad_id_lists(writer):
    writer.upsert([Product("LIVE-P1", "Amber lookup mug", None, {"category": "mug", "price": 3.0}),
                   Product("LIVE-P2", "Amber lookup cup", None, {"category": "cup"})])
    got = writer.products(["LIVE-P2", "NOPE-404", "LIVE-P1", "LIVE-P2"])
    assert set(got) == {"LIVE-P1", "LIVE-P2"} and got["LIVE-P1"]["fields"] == {"category": "mug", "price": 3.0}
    assert got["LIVE-P2"] == writer.product("LIVE-P2")
    for payload, message in (({"ids": "LIVE-P1"}, "a list of product ids"), ({"ids": [1]}, "a list of product ids"),
                             ({"ids": [f"P{i}" for i in range(101)]}, "at most 100"), ({"ids": [""]}, "id")):
        with pytest.raises(ServiceError, match=message) as err:
            writer.admin("products", payload)
        assert err.value.status == "StatusCode.INVALID_ARGUMENT"


def test_a_text_only_product_is_found_by_its_words(writer, reader):
    sequence = writer.upsert([Product("LIVE-3", "Obsidian fountain pen with gold nib", None, {"price": 40})])[0]
    assert reader.search("obsidian fountain pen", top_k=3, read=ReadOptions(min_sequence=sequence)).ids[0] == "LIVE-3"
    assert not writer.product("LIVE-3")["has_image"]


def test_update_fields_moves_a_product_in_and_out_of_a_price_filter(writer, reader):
    title = "Saffron striped beach tote"
    writer.upsert([Product("LIVE-4", title, photo(9), {"category": "handbag", "price": 15.0})])
    cheap = Filters(categories=["handbag"], price_max=20.0)
    for price, expected in ((99.0, False), (19.5, True), (20.01, False)):
        sequence = writer.update_fields({"LIVE-4": {"price": price}})[0]
        found = reader.search(title, top_k=20, filters=cheap, read=ReadOptions(min_sequence=sequence)).ids
        assert ("LIVE-4" in found) is expected, price
    assert writer.product("LIVE-4")["fields"]["price"] == 20.01


def test_a_deleted_product_is_never_returned_again(writer, reader):
    title = "Cobalt paisley silk scarf"
    # a category other products keep: one whose last product is gone is unknown to Milvus's filter (and to the
    # embedded store after a restart)
    sequence = writer.upsert([Product("LIVE-5", title, photo(11), {"category": "handbag", "price": 30.0})])[0]
    assert reader.search(title, top_k=1, text_weight=1.0, read=ReadOptions(min_sequence=sequence)).ids == ["LIVE-5"]
    sequence = writer.delete(["LIVE-5"])[0]
    for query in (dict(text=title), dict(image=photo(11)), dict(text=title, filters=Filters(categories=["handbag"]))):
        assert "LIVE-5" not in reader.search(top_k=50, read=ReadOptions(min_sequence=sequence), **query).ids
    with pytest.raises(ServiceError, match="unknown product id.*LIVE-5") as err:
        reader.recommend(["LIVE-5"])
    assert err.value.status == "StatusCode.INVALID_ARGUMENT"


@pytest.mark.parametrize("product, message", [
    (Product("", "no id"), "ID is missing"),
    (Product("x" * 257, "long id"), "too long \\(at most 256\\)"),
    (Product("BAD-1", "neg", None, {"price": -3}), "product 'BAD-1': FIELDS.price must be a finite number >= 0"),
    (Product("BAD-2", "nested", None, {"tags": ["a"]}), "product 'BAD-2': FIELDS.tags must be a scalar"),
    (Product("BAD-3", "truncated", photo(3)[:300]), "product 'BAD-3': IMAGE: corrupt or truncated image"),
    (Product("BAD-4", "not an image", b"hello"), "product 'BAD-4': IMAGE: bytes are not a recognised image"),
    (Product("BAD-5", ""), "product 'BAD-5': TITLE is required for a new product"),
])
def test_bad_records_are_refused_naming_the_product_and_the_field(writer, product, message):
    with pytest.raises(ServiceError, match=message) as err:
        writer.upsert([product])
    assert err.value.status == "StatusCode.INVALID_ARGUMENT"
    if product.id:
        assert writer.product(product.id[:256]) is None


def test_non_json_fields_and_non_finite_prices_are_refused(live):
    with grpcclient.InferenceServerClient(live.grpc_url) as client:
        for fields, message in ((b"{not json", "FIELDS is not valid JSON"), (b'{"price": NaN}', "finite number"),
                                (b"[1, 2]", "FIELDS must be a JSON object")):
            inputs = upsert_inputs([Product("BAD-J", "t")])
            inputs[3] = bytes_rows("FIELDS", [fields])
            with pytest.raises(InferenceServerException, match=message):
                client.infer("upsert_products", inputs, headers={"catalog-write-key": live.key})


def test_a_closed_category_list_refuses_unknown_categories(writer):
    writer.set_closed_values({"category": ["mug", "hat", "dress", "handbag", "water bottle"]})
    try:
        with pytest.raises(ServiceError, match="product 'BAD-C': FIELDS.category: unknown category 'spaceship'"):
            writer.upsert([Product("BAD-C", "rocket", None, {"category": "spaceship"})])
        writer.upsert([Product("OK-C", "a good mug", None, {"category": "mug"})])
    finally:
        writer.set_closed_values({})


def test_a_request_is_atomic_and_a_bad_request_fails_alone_in_its_batch(live, writer):
    with pytest.raises(ServiceError, match="BAD-A2"):
        writer.upsert([Product("ATOM-1", "first of two", None, {}), Product("BAD-A2", "second", None, {"price": -1})])
    assert writer.product("ATOM-1") is None, "nothing of a refused request is written"
    results: dict = {}

    def send(i: int) -> None:
        product = Product(f"BATCH-{i}", f"batch product {i}", None, {"price": -1 if i % 4 == 0 else 5})
        try:
            results[i] = writer_copy(live).upsert([product])[0]
        except ServiceError as err:
            results[i] = err

    threads = [threading.Thread(target=send, args=(i,)) for i in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, outcome in results.items():
        assert isinstance(outcome, ServiceError) == (i % 4 == 0), (i, outcome)


def writer_copy(live) -> CatalogClient:
    return CatalogClient(live.grpc_url, timeout_s=30, key=live.key)


def test_writes_need_the_admin_key(live):
    product = [Product("KEY-1", "keyless", None, {})]
    with pytest.raises(ServiceError, match="UNAUTHENTICATED: no key: this action on shop 'default' needs a key") as err:
        CatalogClient(live.grpc_url, key_file=None).upsert(product)
    assert err.value.status == "StatusCode.UNAUTHENTICATED"
    for client in (CatalogClient(live.grpc_url, key="wrong"),):
        for call in (lambda: client.upsert(product), lambda: client.update_fields({"P00001": {"price": 1}}),
                     lambda: client.delete(["P00001"]), lambda: client.info()):
            with pytest.raises(ServiceError, match="UNAUTHENTICATED: the key sent is unknown or revoked") as err:
                call()
            assert err.value.status == "StatusCode.UNAUTHENTICATED"
    with grpcclient.InferenceServerClient(live.grpc_url) as raw:  # the key as a request parameter works too
        result = raw.infer("upsert_products", upsert_inputs(product), parameters={"catalog-write-key": live.key})
        assert int(result.as_numpy("SEQUENCE")[0][0]) > 0
        # the old header (an alias for one release), x-api-key and authorization: Bearer all carry it
        for headers in ({"catalog-write-key": live.key}, {"x-api-key": live.key}, {"authorization": f"Bearer {live.key}"}):
            assert int(raw.infer("upsert_products", upsert_inputs(product), headers=headers).as_numpy("SEQUENCE")[0][0]) > 0
        with pytest.raises(InferenceServerException, match="UNAUTHENTICATED"):  # called directly, the writer checks too
            raw.infer("catalog_writer", direct_writer_inputs())


def direct_writer_inputs() -> list:
    """Everything catalog_writer takes, as if the ensemble's encoders had run."""
    inputs = [bytes_rows(name, [value]) for name, value in (("ID", b"DIRECT-1"), ("TITLE", b"t"), ("IMAGE", b""),
                                                             ("FIELDS", b"{}"))]
    for name, value in (("TEXT_EMBEDDING", np.ones((1, 384), np.float32)), ("TEXT_PRESENT", np.ones((1, 1), bool)),
                        ("IMAGE_EMBEDDING", np.zeros((1, 384), np.float32)), ("IMAGE_PRESENT", np.zeros((1, 1), bool))):
        tensor = grpcclient.InferInput(name, list(value.shape), "BOOL" if value.dtype == bool else "FP32")
        tensor.set_data_from_numpy(value)
        inputs.append(tensor)
    return inputs


def test_unknown_ids_in_updates_and_deletes_are_not_found(writer):
    for call in (lambda: writer.update_fields({"NOPE-1": {"price": 1}}), lambda: writer.delete(["NOPE-1"])):
        with pytest.raises(ServiceError, match="unknown product id 'NOPE-1'") as err:
            call()
        assert err.value.status == "StatusCode.NOT_FOUND"
    with pytest.raises(ServiceError, match="FIELDS is empty"):
        writer.update_fields({"P00001": {}})


def test_a_min_sequence_beyond_the_catalog_is_refused_at_once(live):
    # the embedded store counts writes; Milvus's sequences are microsecond timestamps (one further
    # ahead than min_sequence_wait_s came from no write)
    far = 99_999_999 if live.kind == "sqlite" else int(time.time() * 1e6) + 60_000_000
    with SearchClient(live.grpc_url, timeout_s=6, retries=0) as client:
        with pytest.raises(ServiceError, match=f"MIN_SEQUENCE {far} is beyond the catalog of shop 'default'") as err:
            client.search("red mug", read=ReadOptions(min_sequence=far))
    assert err.value.status == "StatusCode.INVALID_ARGUMENT"


def test_shops_are_isolated_even_with_the_same_ids(live, writer):
    reader = SearchClient(live.grpc_url, timeout_s=30, key=live.key)  # shop-a and shop-b are private
    title = "Shared-id walnut desk lamp"
    for shop, price in (("shop-a", 10.0), ("shop-b", 99.0)):
        writer.create_shop(shop)
        sequence = writer.upsert([Product("SAME-1", f"{title} {shop}", None, {"price": price})], shop=shop)[0]
    a = reader.search(title, top_k=5, read=ReadOptions("shop-a", sequence))
    b = reader.search(title, top_k=5, read=ReadOptions("shop-b", sequence))
    assert a.ids == ["SAME-1"] and a.titles == [f"{title} shop-a"]
    assert b.ids == ["SAME-1"] and b.titles == [f"{title} shop-b"]
    assert "SAME-1" not in reader.search(title, top_k=50).ids, "the default shop has no SAME-1"
    assert set(writer.shops()) >= {"default", "shop-a", "shop-b"}


def test_suggest_and_did_you_mean_read_a_new_shops_words_on_both_stores(live, writer):
    """A shop's first suggest and first text search read its words (on Milvus: its words snapshot,
    built then): a product written before is suggested and its misspelt name corrected to; the
    default shop never sees its words; bad prefixes are refused, the server lives on."""
    reader = SearchClient(live.grpc_url, timeout_s=30, key=live.key)
    writer.create_shop("words-shop")
    sequence = writer.upsert([Product("WORDS-1", "Quorvex brass lantern", None, {"price": 5.0})], shop="words-shop")[0]
    with SuggestClient(live.grpc_url, timeout_s=30, key=live.key) as suggester:
        assert ("quorvex", 1) in suggester.suggest("quorv", shop="words-shop")
        assert not [text for text, _ in suggester.suggest("quorv") if text.startswith("quorvex")]
        for prefix, top_k, message in (("", 5, "PREFIX is empty"), ("lamp", 0, "TOP_K must be between")):
            with pytest.raises(ServiceError, match=message) as err:
                suggester.suggest(prefix, top_k=top_k, shop="words-shop")
            assert err.value.status == "StatusCode.INVALID_ARGUMENT"
    found = reader.search("Quorvx", top_k=3, read=ReadOptions("words-shop", sequence))
    assert found.corrected_query == "quorvex" and found.ids[0] == "WORDS-1"
    assert reader.search("quorvex lantern", top_k=3, read=ReadOptions("words-shop", sequence)).corrected_query == ""


def test_acknowledged_writes_survive_kill_9_of_the_server(live, tmp_path):
    """200 writes with the server killed (SIGKILL, stubs too) right after an acknowledgement, at
    random moments: after each restart every acknowledged write is there, no deleted product came
    back. Two kills: the first catches a commit acknowledged before it was durable; the second one
    kills a server that recovered its store once already (a WAL replayed and written on again).
    (Three kills cost another restart, ~25 s per store, and guard nothing the two do not.)
    Every 10th write a search and a click on it go through record_events: every event acknowledged
    before a kill is still there after it (sent again, it answers "duplicate")."""
    rng = random.Random(3)
    acked: dict[str, dict | None] = {}
    events: list[Event] = []
    kills = sorted(rng.sample(range(20, 200), 2))
    server = live
    writes = 0
    try:
        while writes < 200:
            with CatalogClient(server.grpc_url, timeout_s=30, key=server.key, retries=0) as client:
                while writes < 200:
                    pid = f"DUR-{rng.randrange(60)}"
                    if acked.get(pid) is not None and rng.random() < 0.3:
                        client.delete([pid])
                        acked[pid] = None
                    elif acked.get(pid) is not None and rng.random() < 0.5:
                        price = round(rng.uniform(1, 99), 2)
                        client.update_fields({pid: {"price": price}})
                        acked[pid] = {"price": price}
                    else:
                        price = round(rng.uniform(1, 99), 2)
                        client.upsert([Product(pid, f"durable product {pid}", None, {"price": price})])
                        acked[pid] = {"price": price}
                    writes += 1
                    if writes % 10 == 0:
                        events.append(click_recorded(server, f"durable product {pid}"))
                    if kills and writes == kills[0]:
                        kills.pop(0)
                        break
            os.killpg(server.pid, signal.SIGKILL)  # right after an acknowledgement
            deadline = time.monotonic() + 30
            while pid_alive(server.pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            server.pid = None
            server = start_server(live.repository, live.root / "triton-restarted.log", [],
                                  catalog_url=live.milvus.catalog_url(live.root / "images") if live.milvus else None)
            server.repository, server.root, server.kind, server.milvus = live.repository, live.root, live.kind, live.milvus
            serve_generation(server, live.repository)
            check_state(server, acked)
            with EventsClient(server.grpc_url, timeout_s=60, key=server.key) as client:
                assert client.record(events) == ["duplicate"] * len(events), "an acknowledged event was lost"
    finally:
        live.pid, live.grpc_port, live.http_port, live.metrics_port = (server.pid, server.grpc_port, server.http_port,
                                                                        server.metrics_port)


def click_recorded(server, text: str) -> Event:
    """A search and an acknowledged click on its first result."""
    with SearchClient(server.grpc_url, timeout_s=30, retries=0) as client:
        found = client.search(text, top_k=3, user="durable-shopper")
    event = Event(found.query_id, "click", found.ids[0], user="durable-shopper")
    with EventsClient(server.grpc_url, timeout_s=30, retries=0, key=server.key) as client:
        assert client.record([event]) == ["recorded"]
    return event


def check_state(server, acked: dict) -> None:
    with CatalogClient(server.grpc_url, timeout_s=60, key=server.key) as client:
        for pid, state in acked.items():
            record = client.product(pid)
            if state is None:
                assert record is None, f"{pid} was deleted and came back"
            else:
                assert record is not None and record["fields"]["price"] == state["price"], (pid, record, state)
    with SearchClient(server.grpc_url, timeout_s=60) as client:  # the restarted scorer serves them too
        live_ids = [pid for pid, state in acked.items() if state is not None]
        for pid in live_ids[:10]:
            assert client.recommend([pid], top_k=1).ids


def test_answers_under_writes_always_reflect_a_prefix_of_the_log(live):
    """16 searching clients and 4 writers for 20 s (30 s on milvus-lite, which answers ~5 searches
    a second): no failed search, and every answer is the state of the log at its CATALOG_SEQUENCE (no deleted product, no stale price in a filter).
    Milvus reads its latest state at Strong consistency but names no snapshot (CATALOG_SEQUENCE is
    when the search started), so there each product an answer holds must show a state it passed
    through while the search ran."""
    templates = [p for p in read_products(DEMO_CATALOG)[300:340]]
    queries = [t.title for t in templates]
    cap = Filters(price_max=100.0)
    answers, failures = [], []
    stop = threading.Event()

    def search(i: int) -> None:
        with SearchClient(live.grpc_url, timeout_s=30) as client:
            while not stop.is_set():
                try:
                    answers.append((client.search(queries[i % len(queries)], top_k=50, filters=cap), time.monotonic()))
                except ServiceError as err:
                    failures.append(str(err))

    searchers = [threading.Thread(target=search, args=(i,)) for i in range(16)]
    with WriteLoad(live.grpc_url, live.key, templates, writers=4, rate=3, prefix="CW", timeout_s=30) as writers:
        for t in searchers:
            t.start()
        time.sleep(20 if live.kind == "sqlite" else 30)  # hundreds of answers over ~250 writes
        stop.set()
        for t in searchers:
            t.join()
    assert not failures, failures[:5]
    assert not writers.failures, writers.failures[:5]
    assert len(writers.writes) > 100 and len(answers) > (200 if live.kind == "sqlite" else 50), len(answers)
    seen_writes = 0
    for answer, ended in answers:
        state = writers.state_at(answer.catalog_sequence)
        for pid in answer.ids:
            if not pid.startswith("CW"):
                continue
            seen_writes += 1
            if live.kind == "milvus":
                seen = writers.prices_seen_between(pid, answer.catalog_sequence, ended)
                assert any(p is not None and p <= 100.0 for p in seen), (pid, seen, answer.catalog_sequence)
                continue
            assert pid in state, f"{pid} returned at sequence {answer.catalog_sequence}, where it does not exist"
            assert state[pid] is not None and state[pid] <= 100.0, (pid, state[pid], answer.catalog_sequence)
    assert seen_writes > 0, "the writers' products should show up in the answers"


def test_the_bulk_loader_isolates_a_bad_record_in_its_batch(live, reader):
    """Products go 16 to a request; a refused request is resent product by product, so only the
    bad record fails and the other 19 are written."""
    from clients.index import load_products

    products = [Product(f"BULK-{i}", f"bulk loaded mug {i}", None, {"price": 5.0 + i}) for i in range(20)]
    products[7] = Product("BULK-7", "bulk loaded mug 7", None, {"price": -3})
    report = load_products(live.grpc_url, products, key=live.key, progress=False, batch=16)
    assert [pid for pid, _ in report.failed] == ["BULK-7"] and "price" in report.failed[0][1]
    assert report.written == 19
    found = reader.search("bulk loaded mug", top_k=40, read=ReadOptions(min_sequence=report.sequence)).ids
    assert {p.id for p in products} - set(found) == {"BULK-7"}
