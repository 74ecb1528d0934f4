"""The store interface on both stores - the embedded SQLite store and Milvus (an embedded
milvus-lite database, the same pymilvus code as a Milvus server) - with the same tests: what a
write keeps and changes, the errors of bad writes, all-or-nothing requests, shops apart, the
write fence of a swap, and the rebuild of a new generation. Then what only Milvus has: its URL,
collections per generation behind an alias, released collections, IVF with selective filters."""
from __future__ import annotations

import hashlib
import time

import numpy as np
import pytest

from productsearch.catalog.records import RecordError
from productsearch.catalog.rows import FencedWrite, ProductWrite, StoreError, UnknownProduct
from productsearch.catalog.store import catalog_url, list_shops, open_store, register_generation, set_write_generation
from productsearch.core.vectors import normalize
from tests.catalog_fixtures import STORE_KINDS, catalog_store

DIM = 8


def vector(seed: int) -> np.ndarray:
    return normalize(np.random.default_rng(seed).standard_normal(DIM)).astype(np.float32)


@pytest.fixture(scope="module", params=STORE_KINDS)
def shared(request, tmp_path_factory):
    """One store per kind for the module (a Milvus collection takes seconds to make); each test
    writes to shops of its own."""
    root = tmp_path_factory.mktemp(request.param)
    with catalog_store(request.param, root):
        url = catalog_url(root)
        register_generation(url, 1, 0.5)
        yield request.param, url


@pytest.fixture
def url(shared):
    with catalog_store(*shared):  # the module's store, also for the code under test
        yield shared[1]


@pytest.fixture
def shop(request) -> str:
    return "t" + hashlib.blake2b(request.node.name.encode(), digest_size=6).hexdigest()


def write(store, *writes: ProductWrite, generation: int = 1) -> list[int]:
    with store.transaction() as batch:
        sequences = [store.upsert_one(batch, generation, w, time.time()) for w in writes]
    return store.committed(batch, sequences)


def product(pid: str, title: str = "", image: bytes | None = None, seed: int = 0, **fields) -> ProductWrite:
    return ProductWrite(pid, title, fields, image, vector(seed) if title else None, vector(seed + 1) if image else None)


def test_a_write_returns_increasing_sequences_and_is_read_back(url, shop):
    store = open_store(url, shop)
    first, = write(store, product("P1", "red mug", b"png-1", seed=1, category="mug", price=5.0))
    second, = write(store, product("P2", "blue mug", None, seed=2, category="mug"))
    assert 0 < first < second <= store.head()
    got = store.product("P1")
    assert got["title"] == "red mug" and got["fields"] == {"category": "mug", "price": 5.0} and got["has_image"]
    assert store.product("NOPE") is None and store.count() == 2
    both = store.products(["P2", "NOPE", "P1"])
    assert set(both) == {"P1", "P2"} and both["P1"] == got and store.products([]) == {}


def test_an_upsert_without_title_or_image_keeps_them(url, shop):
    store = open_store(url, shop)
    write(store, product("P1", "red mug", b"png-1", seed=1, category="mug"))
    write(store, ProductWrite("P1", "", {"category": "cup"}, None, None, None))
    got = store.product("P1")
    assert got["title"] == "red mug" and got["has_image"] and got["fields"] == {"category": "cup"}
    with pytest.raises(RecordError, match="TITLE is required"):
        write(store, ProductWrite("NEW", "", {}, None, None, None))


def test_update_fields_merges_and_null_removes(url, shop):
    store = open_store(url, shop)
    write(store, product("P1", "red mug", None, seed=1, category="mug", price=5.0, stock=3))
    with store.transaction() as batch:
        store.update_one(batch, "P1", {"price": 7.5, "stock": None}, time.time())
    assert store.product("P1")["fields"] == {"category": "mug", "price": 7.5}
    with pytest.raises(UnknownProduct):
        with store.transaction() as batch:
            store.update_one(batch, "NOPE", {"price": 1.0}, time.time())
    with pytest.raises(UnknownProduct):
        with store.transaction() as batch:
            store.delete_one(batch, "NOPE", time.time())


def test_a_bad_request_in_a_batch_changes_nothing_of_its_own_and_the_rest_is_written(url, shop):
    store = open_store(url, shop)
    with store.transaction() as batch:
        with store.savepoint(batch):
            store.upsert_one(batch, 1, product("GOOD", "good mug", None, seed=3), time.time())
        with pytest.raises(RecordError):
            with store.savepoint(batch):
                store.upsert_one(batch, 1, product("HALF", "half written", None, seed=4), time.time())
                store.upsert_one(batch, 1, product("BAD", "bad price", None, seed=5, price=-1), time.time())
    assert store.product("GOOD") is not None
    assert store.product("HALF") is None and store.product("BAD") is None


def test_closed_values_refuse_unknown_ones(url, shop):
    store = open_store(url, shop)
    store.set_meta("closed_values", {"category": ["mug", "hat"]})
    with pytest.raises(RecordError, match="unknown category 'spaceship'"):
        write(store, product("P1", "a spaceship", None, seed=1, category="spaceship"))
    write(store, product("P2", "a mug", None, seed=2, category="mug"))
    assert store.closed_values() == {"category": ["mug", "hat"]}


def test_two_shops_with_the_same_ids_are_apart(url, shop):
    north, south = open_store(url, f"{shop}-north"), open_store(url, f"{shop}-south")
    write(north, product("SAME", "north scarf", None, seed=1))
    write(south, product("SAME", "south kettle", None, seed=2))
    with south.transaction() as batch:
        south.delete_one(batch, "SAME", time.time())
    assert north.product("SAME")["title"] == "north scarf" and south.product("SAME") is None
    assert {f"{shop}-north", f"{shop}-south"} <= set(list_shops(url))
    with pytest.raises(StoreError):
        open_store(url, "nowhere", create=False)


@pytest.mark.parametrize("kind", STORE_KINDS)
def test_the_write_fence_refuses_the_old_generation_and_the_rebuild_fills_the_new(kind, tmp_path):
    with catalog_store(kind, tmp_path):  # a store of its own: the fence holds for every shop
        url = catalog_url(tmp_path)
        for generation in (1, 2):
            register_generation(url, generation, 0.5)
        fenced_rebuild(url)


def fenced_rebuild(url: str) -> None:
    store = open_store(url)
    write(store, product("P1", "red mug", b"png-1", seed=1), product("P2", "blue hat", None, seed=2))
    set_write_generation(url, 1)
    assert sorted(pid for pid, *_ in store.needing_vectors(2)) == ["P1", "P2"]
    todo = {pid: (seq, title, image) for pid, seq, title, image in store.needing_vectors(2)}
    assert todo["P1"][1] == "red mug" and todo["P1"][2] == b"png-1" and todo["P2"][2] is None
    write(store, product("P2", "blue hat v2", None, seed=7))  # changed during the rebuild: stale for 2
    stored = store.put_vectors(2, [(pid, seq, vector(10), vector(11) if image else None)
                                   for pid, (seq, _, image) in todo.items()])
    assert stored == 1 and [pid for pid, *_ in store.needing_vectors(2)] == ["P2"]
    set_write_generation(url, 2)
    # the pass after the fence: what generation 1 took last (P2's change) is still to copy into 2
    todo = store.needing_vectors(2)
    assert [(pid, title) for pid, _, title, _ in todo] == [("P2", "blue hat v2")]
    assert store.put_vectors(2, [(pid, seq, vector(12), None) for pid, seq, *_ in todo]) == 1
    assert store.needing_vectors(2) == []
    with pytest.raises(FencedWrite, match="moved from generation 1 to 2"):
        write(store, product("P3", "late writer", None, seed=3), generation=1)
    write(store, product("P3", "new writer", None, seed=3), generation=2)
    assert store.write_generation() == 2 and store.product("P3")["title"] == "new writer"


def test_products_with_photos_are_every_product_that_has_one_before_any_swap(url, shop):
    """What adapt trains on, read with no write fence set yet (a shop's first adaptation): every
    product with a photo, its fields and bytes, by id; a deleted one and one without a photo not."""
    store = open_store(url, shop)
    write(store, product("P2", "blue vase", b"png-2", seed=3, category="vase", color="blue"),
          product("P1", "red mug", b"png-1", seed=1, category="mug"), product("P3", "gift card", None, seed=5),
          product("P4", "green bowl", b"png-4", seed=7, category="bowl"))
    with store.transaction() as batch:
        store.delete_one(batch, "P4", time.time())
    assert [(p["id"], p["title"], p["fields"], p["image"]) for p in store.products_with_photos()] == [
        ("P1", "red mug", {"category": "mug"}, b"png-1"),
        ("P2", "blue vase", {"category": "vase", "color": "blue"}, b"png-2")]
    assert open_store(url, shop + "x").products_with_photos() == []


# ---------------------------------------------------------------------- Milvus only


def test_milvus_urls_are_checked():
    from productsearch.catalog.milvus.schema import parse_url

    assert parse_url("milvus://db.internal:19530?images=/srv/img&index=ivf_sq8").uri == "http://db.internal:19530"
    assert parse_url("milvus://db.internal?index=HNSW").index == "HNSW"
    for bad, message in [("milvus://", "needs a host"), ("milvus+lite://relative", "absolute folder"),
                         ("milvus://h?index=ANNOY", "index must be one of"), ("milvus://h?prefix=a-b", "prefix")]:
        with pytest.raises(StoreError, match=message):
            parse_url(bad)


@pytest.fixture
def milvus_url(tmp_path):
    with catalog_store("milvus", tmp_path):
        url = catalog_url(tmp_path)
        register_generation(url, 1, 0.5)
        register_generation(url, 2, 0.5)
        yield url


def test_milvus_keeps_a_collection_per_generation_behind_the_live_alias(milvus_url):
    store = open_store(milvus_url)
    write(store, product("P1", "red mug", None, seed=1))
    set_write_generation(milvus_url, 1)
    assert store.client.describe_alias(store.url.alias)["collection_name"] == store.url.collection(1)
    store.put_vectors(2, [(pid, seq, vector(5), None) for pid, seq, *_ in store.needing_vectors(2)])
    set_write_generation(milvus_url, 2)
    assert store.client.describe_alias(store.url.alias)["collection_name"] == store.url.collection(2)
    assert store.info()["vectors"] == {"1": 1, "2": 1}


def test_milvus_rebuild_takes_back_a_product_changed_between_its_read_and_its_write(milvus_url, monkeypatch):
    """No transaction spans put_vectors' read and write: an update_fields landing in between
    (it writes every generation, N not yet holding the product) must not be overwritten in N."""
    store = open_store(milvus_url)
    write(store, product("P1", "red mug", None, seed=1, price=5.0))
    set_write_generation(milvus_url, 1)
    todo = [(pid, seq, vector(5), None) for pid, seq, *_ in store.needing_vectors(2)]
    real_upsert = store.client.upsert

    def upsert_after_an_update(collection, rows, **kwargs):
        monkeypatch.setattr(store.client, "upsert", real_upsert)
        with store.transaction() as batch:
            store.update_one(batch, "P1", {"price": 9.0}, time.time())
        return real_upsert(collection, rows, **kwargs)

    monkeypatch.setattr(store.client, "upsert", upsert_after_an_update)
    assert store.put_vectors(2, todo) == 0  # taken out of N again
    todo = [(pid, seq, vector(5), None) for pid, seq, *_ in store.needing_vectors(2)]
    assert [pid for pid, *_ in todo] == ["P1"]
    assert store.put_vectors(2, todo) == 1
    set_write_generation(milvus_url, 2)
    assert store.product("P1")["fields"]["price"] == 9.0


def test_a_released_collection_is_loaded_again_on_demand(milvus_url):
    store = open_store(milvus_url)
    write(store, product("P1", "red mug", None, seed=1))
    store.client.release_collection(store.url.collection(1))
    assert store.product("P1")["title"] == "red mug"


def test_milvus_ivf_finds_the_filtered_top_k_with_nprobe_scaled_by_the_filter(tmp_path):
    """A filter that passes 2% of the shop: with nprobe scaled by 1/share the IVF search returns
    the exact filtered top 10 (a fixed small nprobe would miss most of them)."""
    from productsearch.catalog.milvus.search import MilvusShopSearch
    from productsearch.catalog.ranking.batch import RowQuery

    with catalog_store("milvus", tmp_path):
        url = catalog_url(tmp_path).replace("?", "?index=IVF_FLAT&nlist=32&")
        register_generation(url, 1, 0.5)
        store = open_store(url)
        rng = np.random.default_rng(3)
        count = 2000
        text = normalize(rng.standard_normal((count, DIM)))
        rare = set(rng.choice(count, size=count // 50, replace=False).tolist())
        with store.transaction() as batch:
            store.prefetch(batch, 1, [f"P{i:05d}" for i in range(count)])
            for i in range(count):
                store.upsert_one(batch, 1, ProductWrite(f"P{i:05d}", f"product {i}", {"category": "rare" if i in rare else "common"},
                                                        None, text[i], None), time.time())
        searcher = MilvusShopSearch(store, 1, 0.5)
        query = normalize(rng.standard_normal(DIM))
        with searcher.searching([RowQuery(np.concatenate([query, query]) / np.sqrt(2), 10, categories=["rare"])],
                                0, 1.0, 50_000) as (index, results):
            found = [index.ids[s].decode() for s in results[0].slots.tolist()]
        members = sorted(rare)
        expected = [f"P{members[j]:05d}" for j in np.argsort(-(text[members] @ query), kind="stable")[:10]]
        assert found == expected
