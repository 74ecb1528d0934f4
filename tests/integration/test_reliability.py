"""Bad input, overload, deadlines and the client's retry policy against the real tritonserver
(the session server: nothing here changes its flags or kills its processes)."""
from __future__ import annotations

import asyncio
import io
import re
import time

import numpy as np
import psutil
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.grpc.aio as aioclient
from PIL import Image
from tritonclient.utils import InferenceServerException

from clients.search import SearchClient, SearchError
from productsearch.control.admin import admin_headers
from productsearch.control.processes import free_ports
from tests.process_memory import server_memory_mb

pytestmark = pytest.mark.integration
INVALID = "StatusCode.INVALID_ARGUMENT"


def encoded(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


def search_inputs(text: bytes = b"", image: bytes = b"", top_k: int = 5, module=grpcclient, rows: int = 1) -> list:
    inputs = []
    for name, value in (("QUERY_TEXT", text), ("QUERY_IMAGE", image)):
        tensor = module.InferInput(name, [rows, 1], "BYTES")
        tensor.set_data_from_numpy(np.array([[value]] * rows, dtype=object))
        inputs.append(tensor)
    tensor = module.InferInput("TOP_K", [rows, 1], "INT32")
    tensor.set_data_from_numpy(np.array([[top_k]] * rows, dtype=np.int32))
    return inputs + [tensor]


def raw_search(url: str, inputs: list) -> tuple[str, str]:
    with grpcclient.InferenceServerClient(url) as client:
        try:
            result = client.infer("search", inputs, client_timeout=60)
        except InferenceServerException as err:
            return str(err.status()), err.message()
    return "OK", str(result.as_numpy("PRODUCT_IDS").shape)


@pytest.fixture(scope="module")
def photo(demo_catalog) -> bytes:
    with open(demo_catalog[42]["image"], "rb") as handle:
        return handle.read()


# ------------------------------------------------------------------ bad images

JPEG = encoded(Image.new("RGB", (64, 64), "blue"), "JPEG")
PNG = encoded(Image.new("RGB", (64, 64), "red"), "PNG")


@pytest.mark.parametrize("image, message", [
    (JPEG[:20] + b"\x00" * 64 + JPEG[84:], "corrupt or truncated"),       # corrupt JPEG
    (JPEG[:200], "corrupt or truncated"),                                   # truncated JPEG
    (PNG[:-30], "corrupt or truncated"),                                    # truncated PNG
    (b"GIF89a but then nothing else", "corrupt or truncated|not a recognised image"),
    (b"%PDF-1.7 this is a document, not a photo", "not a recognised image"),
    (encoded(Image.new("RGB", (8, 8)), "TIFF"), "not a recognised image"),  # a format we do not take
])
def test_bad_image_bytes_get_invalid_argument_naming_the_problem(search_client, image, message):
    with pytest.raises(SearchError, match=message) as caught:
        search_client.search("red mug", image=image)
    assert caught.value.status == INVALID and caught.value.attempts == 1


def test_zero_byte_image_means_no_image(search_client):
    """Contract: an empty element is "no image". Alone it is an empty query; with text, a text search."""
    with pytest.raises(SearchError, match="query is empty") as caught:
        search_client.search(text="", image=b"")
    assert caught.value.status == INVALID
    assert search_client.search("red mug", image=b"").ids == search_client.search("red mug").ids


def test_decompression_bomb_and_50_mb_upload_are_refused(triton, search_client, photo, record_property):
    bomb = encoded(Image.new("1", (30000, 30000)), "PNG")  # 110 KB file, 900 megapixels
    huge = np.random.default_rng(0).integers(0, 256, 50 * 2**20, dtype=np.uint8).tobytes()
    before = server_memory_mb(triton.pid)
    for _ in range(3):
        with pytest.raises(SearchError, match="decompression bomb|too many pixels") as caught:
            search_client.search(image=bomb)
        assert caught.value.status == INVALID
    after_bombs = server_memory_mb(triton.pid)
    with pytest.raises(SearchError, match=r"image is too large: 52428800 bytes > limit 10485760") as caught:
        search_client.search(image=huge)
    assert caught.value.status == INVALID
    after_upload = server_memory_mb(triton.pid)
    record_property("memory_mb", {"before": before, "after 3 bombs": after_bombs, "after one 50 MB upload": after_upload})
    print(f"server memory MB: before {before}, after 3 bombs {after_bombs}, after a 50 MB upload {after_upload}")
    # A bomb is refused from its header: nothing is decoded.
    assert after_bombs["pss"] - before["pss"] < 50
    # The upload itself passes through gRPC and the python backend's shared memory before the
    # encoder refuses it (Triton has no request-size limit): a few copies of it (measured +185 MB
    # PSS for one). The supervisor's memory guard gives the growth back (test_recovery.py).
    assert after_upload["pss"] - before["pss"] < 6 * 50
    assert len(search_client.search(image=photo, top_k=3).ids) == 3


# ------------------------------------------------------------------ text, tensors, TOP_K

@pytest.mark.parametrize("inputs, message", [
    (dict(), "query is empty"),
    (dict(text=b"x" * 2**20), r"text is too long: 1048576 bytes > limit 16384"),
    (dict(text=b"caf\xe9 \xff\xfe"), "text is not valid UTF-8"),
    (dict(text=b"shoes", top_k=0), "TOP_K must be between 1 and 1000, got 0"),
    (dict(text=b"shoes", top_k=-1), "TOP_K must be between 1 and 1000, got -1"),
    (dict(text=b"shoes", top_k=1001), "TOP_K must be between 1 and 1000, got 1001"),
    (dict(text=b"shoes", top_k=10**6), "TOP_K must be between 1 and 1000, got 1000000"),
])
def test_bad_text_and_top_k_get_invalid_argument(triton, inputs, message):
    status, text = raw_search(triton.grpc_url, search_inputs(**inputs))
    assert status == INVALID
    assert re.search(message, text), text


def test_text_at_the_limit_and_top_k_1000_are_served(triton):
    status, shape = raw_search(triton.grpc_url, search_inputs(text="é".encode() * 8192, top_k=1000))
    assert (status, shape) == ("OK", "(1, 1000)")


def tensor(name, shape, dtype, value):
    tensor = grpcclient.InferInput(name, shape, dtype)
    tensor.set_data_from_numpy(value)
    return tensor


def text_tensor(value=b"red mug", rows=1):
    return tensor("QUERY_TEXT", [rows, 1], "BYTES", np.array([[value]] * rows, dtype=object))


def image_tensor(rows=1):
    return tensor("QUERY_IMAGE", [rows, 1], "BYTES", np.array([[b""]] * rows, dtype=object))


def top_k_tensor(rows=1, dtype=np.int32, wire="INT32"):
    return tensor("TOP_K", [rows, 1], wire, np.full((rows, 1), 3, dtype=dtype))


@pytest.mark.parametrize("inputs, message", [
    ([text_tensor(), image_tensor(), top_k_tensor(dtype=np.int64, wire="INT64")],
     "input 'TOP_K' data-type is 'INT64', but model 'search' expects 'INT32'"),
    ([tensor("QUERY_TEXT", [1, 1], "FP32", np.zeros((1, 1), np.float32)), image_tensor(), top_k_tensor()],
     "input 'QUERY_TEXT' data-type is 'FP32', but model 'search' expects 'BYTES'"),
    ([tensor("QUERY_TEXT", [1, 2], "BYTES", np.array([[b"a", b"b"]], dtype=object)), image_tensor(), top_k_tensor()],
     r"unexpected shape for input 'QUERY_TEXT' for model 'search'. Expected \[-1,1\], got \[1,2\]"),
    ([text_tensor(), image_tensor()], r"missing required input\(s\) \['TOP_K'\]"),
    ([text_tensor(), image_tensor(), top_k_tensor(), tensor("EXTRA", [1, 1], "BYTES", np.array([[b"x"]], dtype=object))],
     "unexpected inference input 'EXTRA' for model 'search'"),
    ([text_tensor(), image_tensor(), top_k_tensor(), tensor("OFFSET", [1, 1], "FP32", np.zeros((1, 1), np.float32))],
     "input 'OFFSET' data-type is 'FP32', but model 'search' expects 'INT32'"),
    ([text_tensor(rows=65), image_tensor(65), top_k_tensor(65)], "batch-size must be <= 64"),
    ([text_tensor(rows=2), image_tensor(2), top_k_tensor(1)], "batch size does not match other inputs"),
])
def test_wrong_dtype_shape_or_inputs_are_refused_by_triton(triton, inputs, message):
    status, text = raw_search(triton.grpc_url, inputs)
    assert status == INVALID
    assert re.search(message, text), text


# ------------------------------------------------------------------ one bad request in a batch

def counts(client, model, key: str):
    stats = client.get_inference_statistics(model, headers=admin_headers(key)).model_stats
    return sum(s.inference_count for s in stats), sum(s.execution_count for s in stats)


def test_a_bad_request_inside_a_dynamic_batch_fails_alone(triton, demo_catalog):
    """48 good queries and 4 bad ones in flight together: batches form (statistics), each bad
    one gets its own error, each good one the answer it gets when sent alone."""
    good = []
    for index, product in enumerate(demo_catalog[:48]):
        with open(product["image"], "rb") as handle:
            image = handle.read()
        kind = index % 3
        good.append(dict(text=product["title"].encode() if kind != 1 else b"",
                         image=image if kind != 0 else b"", top_k=5))
    bad = [(dict(text=b"red mug", image=JPEG[:200]), "corrupt or truncated"),
           (dict(text=b"\xff\xfe not utf-8"), "not valid UTF-8"),
           (dict(), "query is empty"),
           (dict(text=b"red mug", top_k=0), "TOP_K must be between")]
    with grpcclient.InferenceServerClient(triton.grpc_url) as client:
        expected = [client.infer("search", search_inputs(**query), client_timeout=60) for query in good]
        expected = [(r.as_numpy("PRODUCT_IDS").reshape(-1).tolist(), r.as_numpy("SCORES").reshape(-1)) for r in expected]
        before = {m: counts(client, m, triton.key) for m in ("text_encoder", "image_encoder")}

    async def flood():
        client = aioclient.InferenceServerClient(triton.grpc_url)
        queries = good[:24] + [query for query, _ in bad] + good[24:]

        async def one(query):
            try:
                return await client.infer("search", search_inputs(module=aioclient, **query), client_timeout=120)
            except InferenceServerException as err:
                return err
        try:
            results = await asyncio.gather(*(one(query) for query in queries))
        finally:
            await client.close()
        return results[:24] + results[28:], results[24:28]

    good_results, bad_results = asyncio.run(flood())
    with grpcclient.InferenceServerClient(triton.grpc_url) as client:
        after = {m: counts(client, m, triton.key) for m in before}
    for (ids, scores), result in zip(expected, good_results):
        assert not isinstance(result, Exception), result
        assert result.as_numpy("PRODUCT_IDS").reshape(-1).tolist() == ids
        np.testing.assert_allclose(result.as_numpy("SCORES").reshape(-1), scores, atol=1e-4)
    for (_, message), result in zip(bad, bad_results):
        assert isinstance(result, InferenceServerException) and str(result.status()) == INVALID
        assert re.search(message, result.message()), result.message()
    for model, (inferences, executions) in after.items():
        inferences -= before[model][0]
        executions -= before[model][1]
        assert executions < inferences, f"{model}: no batch formed ({executions} executions, {inferences} inferences)"


# ------------------------------------------------------------------ overload, deadlines

def test_a_flood_far_beyond_capacity_is_refused_fast_and_the_service_recovers(triton):
    """1,500 searches at once (~25x the 64 clients the server serves comfortably), each telling
    Triton it waits at most 0.5 s (what SearchClient sends: its deadline): requests that would
    wait longer are refused with UNAVAILABLE from the model queues instead of queueing for the
    whole burst; every call returns; searches succeed again right after."""
    burst, wait_us = 1500, 500_000

    async def flood():
        clients = [aioclient.InferenceServerClient(triton.grpc_url) for _ in range(4)]

        async def one(index):
            started = time.monotonic()
            try:
                await clients[index % 4].infer("search", search_inputs(f"red mug {index}".encode(), module=aioclient),
                                               client_timeout=120, timeout=wait_us)
                outcome = "OK"
            except InferenceServerException as err:
                outcome = f"{err.status()} {err.message()}"
            return outcome, time.monotonic() - started
        try:
            started = time.monotonic()
            results = await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(burst))), timeout=300)
            return results, time.monotonic() - started
        finally:
            for client in clients:
                await client.close()

    results, wall = asyncio.run(flood())
    served = [latency for outcome, latency in results if outcome == "OK"]
    refused = [(outcome, latency) for outcome, latency in results if outcome != "OK"]
    print(f"flood of {burst}: {len(served)} served, {len(refused)} refused, wall {wall:.1f} s, "
          f"slowest refusal {max((l for _, l in refused), default=0):.2f} s")
    assert served and refused
    assert {outcome for outcome, _ in refused} == {"StatusCode.UNAVAILABLE in ensemble 'search', Request timeout expired"}
    # Served one after another, the burst would keep its last request waiting for the whole
    # burst's service time; bounded queues answer every request well before that.
    unbounded_s = burst / (len(served) / wall)
    assert max(latency for _, latency in results) < unbounded_s / 2
    with SearchClient(triton.grpc_url, timeout_s=30) as client:
        for _ in range(5):
            assert len(client.search("green backpack", top_k=3).ids) == 3


# ------------------------------------------------------------------ the client's retry policy

def test_invalid_argument_is_never_retried(triton):
    """The server's failure count grows as much with retries=5 as with retries=0."""
    def failures(client):
        return sum(s.inference_stats.fail.count
                   for s in client.get_inference_statistics("search", headers=admin_headers(triton.key)).model_stats)

    def settled(client):  # requests of earlier tests may still finish in the background
        last = failures(client)
        while True:
            time.sleep(0.5)
            now = failures(client)
            if now == last:
                return now
            last = now

    with grpcclient.InferenceServerClient(triton.grpc_url) as stats:
        growth = []
        for retries in (0, 5):
            with SearchClient(triton.grpc_url, retries=retries, backoff_s=0.01) as client:
                before = settled(stats)
                with pytest.raises(SearchError, match="query is empty") as caught:
                    client.search()
                assert caught.value.attempts == 1
                growth.append(settled(stats) - before)
    assert growth[0] >= 1 and growth[1] == growth[0], growth


def test_a_stopped_server_is_unavailable_and_the_client_gives_up_by_its_deadline():
    (port,) = free_ports(1)  # nothing listens there
    with SearchClient(f"127.0.0.1:{port}", timeout_s=2.0, retries=1000, backoff_s=0.05) as client:
        started = time.monotonic()
        with pytest.raises(SearchError) as caught:
            client.search("red mug")
        elapsed = time.monotonic() - started
    assert caught.value.status == "StatusCode.UNAVAILABLE"
    assert caught.value.attempts > 1, "UNAVAILABLE is retried"
    assert elapsed < 2.0 + 1.0, "the deadline bounds the retries"
    with SearchClient(f"127.0.0.1:{port}", timeout_s=5.0, retries=0) as client:
        with pytest.raises(SearchError) as caught:
            client.search("red mug")
    assert caught.value.attempts == 1


# ------------------------------------------------------------------ security

def test_the_server_listens_on_loopback_only(triton):
    listening = [c.laddr for c in psutil.Process(triton.pid).net_connections(kind="inet")
                 if c.status == psutil.CONN_LISTEN]
    assert {addr.port for addr in listening} >= {triton.grpc_port, triton.http_port, triton.metrics_port}
    assert all(is_loopback(addr.ip) for addr in listening), listening


def is_loopback(ip: str) -> bool:
    """127.0.0.1, ::1, or IPv4 loopback on an IPv6 socket (::ffff:127.0.0.1, how gRPC binds)."""
    import ipaddress

    address = ipaddress.ip_address(ip)
    return address.is_loopback or bool(getattr(address, "ipv4_mapped", None) and address.ipv4_mapped.is_loopback)


def test_the_http_model_repository_api_needs_the_admin_key(triton):
    import urllib.error
    import urllib.request

    url = f"http://{triton.http_url}/v2/repository/models/search/unload"
    for headers in ({}, {"admin-key": "wrong"}):
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(urllib.request.Request(url, data=b"{}", headers=headers, method="POST"), timeout=10)
        assert caught.value.code in (401, 403)
    with grpcclient.InferenceServerClient(triton.grpc_url) as client:
        assert client.is_model_ready("search")
