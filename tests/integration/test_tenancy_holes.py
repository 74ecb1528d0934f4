"""Holes a review found, closed, on the real tritonserver: every row of a batched request answered
from its own shop, a MIN_SEQUENCE beyond the catalog refused at once without failing its
batch-mates, shops created only by an admin, and the directly callable models' own limits."""
from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from clients.catalog import CatalogClient
from clients.connection import ServiceError
from clients.contract import Product, ReadOptions, bytes_rows, encode_inputs, int64_rows
from clients.search import SearchClient

pytestmark = pytest.mark.integration


def new_shop(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def int32_rows(name: str, values: list[int]) -> grpcclient.InferInput:
    tensor = grpcclient.InferInput(name, [len(values), 1], "INT32")
    tensor.set_data_from_numpy(np.array(values, dtype=np.int32).reshape(-1, 1))
    return tensor


def fp32_rows(name: str, matrix: np.ndarray) -> grpcclient.InferInput:
    tensor = grpcclient.InferInput(name, list(matrix.shape), "FP32")
    tensor.set_data_from_numpy(matrix.astype(np.float32))
    return tensor


@pytest.fixture(scope="module")
def grpc(triton):
    client = grpcclient.InferenceServerClient(triton.grpc_url)
    client.admin_key = triton.key
    yield client
    client.close()


def embedding(grpc, title: str) -> np.ndarray:
    result = grpc.infer("encode_product", encode_inputs(title, b""), outputs=[grpcclient.InferRequestedOutput("EMBEDDING")])
    return result.as_numpy("EMBEDDING").reshape(-1)


@pytest.fixture(scope="module")
def two_shops(triton):
    """Shops A and B (created by the admin), each with product SAME-1 under a title of its own."""
    shops = new_shop("row-a"), new_shop("row-b")
    sequences = []
    with CatalogClient(triton.grpc_url, timeout_s=30, key=triton.key) as writer:
        for shop in shops:
            assert writer.create_shop(shop)["created"] is True
            sequences.append(writer.upsert([Product("SAME-1", f"walnut desk lamp of {shop}", None, {"price": 5.0}),
                                            Product("OTHER-1", f"steel kettle of {shop}", None, {})], shop=shop)[-1])
    return shops, sequences


def scorer_call(grpc, queries: np.ndarray, shops: list[str], sequences: list[int], top_k: int = 2):
    """A direct scorer call with the admin key (the shops are private)."""
    inputs = [fp32_rows("QUERY_EMBEDDING", queries), int32_rows("TOP_K", [top_k] * len(queries)),
              bytes_rows("SHOP", shops), int64_rows("MIN_SEQUENCE", sequences)]
    outputs = [grpcclient.InferRequestedOutput(n) for n in ("PRODUCT_IDS", "TITLES", "CATALOG_SEQUENCE")]
    return grpc.infer("scorer", inputs, outputs=outputs, headers={"authorization": f"Bearer {grpc.admin_key}"})


def test_each_row_of_one_request_is_answered_from_its_own_shop(grpc, two_shops):
    (a, b), (seq_a, seq_b) = two_shops
    query = embedding(grpc, "walnut desk lamp")
    result = scorer_call(grpc, np.stack([query, query, query]), [a, b, a], [seq_a, seq_b, 0])
    titles = [[t.decode() for t in row if t] for row in result.as_numpy("TITLES")]
    assert titles[0][0] == f"walnut desk lamp of {a}" and all(t.endswith(a) for t in titles[0])
    assert titles[1][0] == f"walnut desk lamp of {b}" and all(t.endswith(b) for t in titles[1])
    assert titles[2] == titles[0]
    assert result.as_numpy("CATALOG_SEQUENCE").reshape(-1).tolist()[:2] == [seq_a, seq_b]


def test_a_min_sequence_beyond_the_catalog_is_refused_at_once_and_its_batch_mates_are_answered(grpc, triton, two_shops):
    (a, _), (seq_a, _) = two_shops
    query = embedding(grpc, "walnut desk lamp")[None]
    far = 10**15

    def call(i: int):
        try:
            return scorer_call(grpc, query, [a], [far if i % 4 == 0 else seq_a])
        except InferenceServerException as err:
            return err

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(call, range(64)))
    for i, result in enumerate(results):
        if i % 4 == 0:
            assert isinstance(result, InferenceServerException), result
            assert result.status() == "StatusCode.INVALID_ARGUMENT"
            assert f"MIN_SEQUENCE {far} is beyond the catalog of shop {a!r}" in result.message()
        else:
            assert not isinstance(result, Exception), result
            assert result.as_numpy("TITLES")[0][0].decode() == f"walnut desk lamp of {a}"
    assert triton.is_ready()


def test_a_write_to_a_shop_nobody_created_is_refused_without_naming_other_shops(triton, two_shops):
    (a, _), _ = two_shops
    ghost = new_shop("ghost")
    with CatalogClient(triton.grpc_url, timeout_s=30, retries=0, key=triton.key) as writer:
        calls = {"upsert": lambda: writer.upsert([Product("G-1", "ghost lamp", None, {})], shop=ghost),
                 "update": lambda: writer.update_fields({"G-1": {"price": 1}}, shop=ghost),
                 "delete": lambda: writer.delete(["G-1"], shop=ghost),
                 "set_rules": lambda: writer.set_rules([], shop=ghost),
                 "info": lambda: writer.info(shop=ghost)}
        for name, call in calls.items():
            with pytest.raises(ServiceError) as err:
                call()
            message = str(err.value)
            assert err.value.status == "StatusCode.NOT_FOUND", (name, message)
            assert f"shop {ghost!r} has no catalog" in message and "create_shop" in message, (name, message)
            assert a not in message and "default" not in message and ".sqlite" not in message, (name, message)
        assert ghost not in writer.shops()
        with SearchClient(triton.grpc_url, timeout_s=30, retries=0, key=triton.key) as reader:
            with pytest.raises(ServiceError, match=f"shop {ghost!r} has no catalog"):
                reader.search("ghost lamp", read=ReadOptions(shop=ghost))
        assert ghost not in writer.shops()
        # the admin creates it (idempotently); then writes go in
        assert writer.create_shop(ghost)["created"] is True
        assert writer.create_shop(ghost)["created"] is False
        sequence = writer.upsert([Product("G-1", "ghost lamp", None, {})], shop=ghost)[0]
        with SearchClient(triton.grpc_url, timeout_s=30, key=triton.key) as reader:
            assert reader.search("ghost lamp", top_k=1, read=ReadOptions(ghost, sequence)).ids == ["G-1"]


def test_creating_a_shop_needs_the_admin_key(triton):
    shop = new_shop("nokey")
    with CatalogClient(triton.grpc_url, timeout_s=30, retries=0, key="not-the-key") as stranger:
        with pytest.raises(ServiceError, match="UNAUTHENTICATED: the key sent is unknown or revoked"):
            stranger.create_shop(shop)
    with CatalogClient(triton.grpc_url, timeout_s=30, key=triton.key) as admin:
        assert shop not in admin.shops()


def bytes_matrix(name: str, rows: list[list[bytes]]) -> grpcclient.InferInput:
    tensor = grpcclient.InferInput(name, [len(rows), len(rows[0])], "BYTES")
    tensor.set_data_from_numpy(np.array(rows, dtype=object))
    return tensor


@pytest.mark.parametrize("name, rows, message", [
    ("QUERY_TEXT", [[b"x" * 20_000]], "QUERY_TEXT is too long: 20000 bytes > limit 16384"),
    ("BOOSTS", [[b'{"rating": 0.5' + b" " * 5000 + b"}"]], "BOOSTS is too long"),
    ("CATEGORIES", [[b"dress"] * 1001], "CATEGORIES takes at most 1000 values, got 1001"),
    ("EXCLUDE_IDS", [[b"P" * 2000]], "EXCLUDE_IDS values are at most 1024 bytes"),
    ("FACETS", [[b"brand"] * 1001], "FACETS takes at most 1000 values"),
])
def test_the_scorer_called_directly_enforces_its_own_limits(grpc, triton, name, rows, message):
    query = embedding(grpc, "walnut desk lamp")[None]
    inputs = [fp32_rows("QUERY_EMBEDDING", query), int32_rows("TOP_K", [3]), bytes_matrix(name, rows)]
    with pytest.raises(InferenceServerException) as err:
        grpc.infer("scorer", inputs)
    assert err.value.status() == "StatusCode.INVALID_ARGUMENT" and message in err.value.message()
    assert grpc.infer("scorer", inputs[:2]).as_numpy("PRODUCT_IDS").shape == (1, 3)  # it lives on
    assert triton.is_ready()


def test_fusion_and_scorer_refuse_an_oversize_embedding(grpc):
    wide = np.zeros((1, 5000), np.float32)
    with pytest.raises(InferenceServerException, match="QUERY_EMBEDDING has 5000 values per row, at most 4096") as err:
        grpc.infer("scorer", [fp32_rows("QUERY_EMBEDDING", wide), int32_rows("TOP_K", [3])])
    assert err.value.status() == "StatusCode.INVALID_ARGUMENT"
    present = grpcclient.InferInput("TEXT_PRESENT", [1, 1], "BOOL")
    present.set_data_from_numpy(np.array([[True]]))
    image_present = grpcclient.InferInput("IMAGE_PRESENT", [1, 1], "BOOL")
    image_present.set_data_from_numpy(np.array([[False]]))
    with pytest.raises(InferenceServerException, match="at most 4096 values per row") as err:
        grpc.infer("fusion", [fp32_rows("TEXT_EMBEDDING", wide), fp32_rows("IMAGE_EMBEDDING", wide), present, image_present])
    assert err.value.status() == "StatusCode.INVALID_ARGUMENT"
