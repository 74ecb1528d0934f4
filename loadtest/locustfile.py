"""Locust users that search (and index) over Triton's gRPC API.

    locust -f loadtest/locustfile.py --host 127.0.0.1:8001            # web UI on :8089
    locust -f loadtest/locustfile.py --host 127.0.0.1:8001 --headless -u 16 -r 4 -t 60s

Traffic is weighted like a shop's: mostly text search, some photo and photo+words search,
filtered search (a category and a price cap), "more like this" recommendations, and a trickle
of product encoding (indexing). Queries come from the demo catalog's vocabulary and
renders (loadtest.workload). Each call is reported to Locust with its latency and failure.
"""
from __future__ import annotations

import grpc.experimental.gevent as grpc_gevent

grpc_gevent.init_gevent()  # before any gRPC channel exists, or calls block the gevent loop

import os  # noqa: E402
import random  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import tritonclient.grpc as grpcclient  # noqa: E402
from locust import User, between, events, task  # noqa: E402

from loadtest.workload import DEMO_CATALOG, Workload  # noqa: E402

WORKLOAD: Workload | None = None


@events.init.add_listener
def load_workload(environment, **_kwargs) -> None:
    global WORKLOAD
    WORKLOAD = Workload.from_catalog(os.environ.get("DEMO_CATALOG", DEMO_CATALOG), images=100)


def bytes_tensor(name: str, value: bytes) -> grpcclient.InferInput:
    tensor = grpcclient.InferInput(name, [1, 1], "BYTES")
    tensor.set_data_from_numpy(np.array([[value]], dtype=object))
    return tensor


class TritonUser(User):
    """One shopper (or indexer) with its own gRPC channel to Triton."""

    wait_time = between(0.05, 0.2)
    top_k = 10

    def on_start(self) -> None:
        self.client = grpcclient.InferenceServerClient(self.host or "127.0.0.1:8001")
        self.rng = random.Random()

    def on_stop(self) -> None:
        client, self.client = self.client, None
        if client is not None:
            client.close()
            client.close = lambda: None  # its __del__ must not close the channel again at exit

    def call(self, name: str, model: str, inputs: list) -> None:
        started = time.perf_counter()
        exception, length = None, 0
        try:
            result = self.client.infer(model, inputs, client_timeout=30)
            length = result.get_response().ByteSize()
        except Exception as err:  # reported to Locust as a failure
            exception = err
        self.environment.events.request.fire(
            request_type="grpc", name=name, response_time=(time.perf_counter() - started) * 1000,
            response_length=length, exception=exception, context={},
        )

    def search(self, name: str, kind: str) -> None:
        text, image = WORKLOAD.query(kind, self.rng)
        top = grpcclient.InferInput("TOP_K", [1, 1], "INT32")
        top.set_data_from_numpy(np.array([[self.top_k]], dtype=np.int32))
        self.call(name, "search", [bytes_tensor("QUERY_TEXT", text.encode()), bytes_tensor("QUERY_IMAGE", image), top])

    @task(10)
    def text_search(self) -> None:
        self.search("search text", "text")

    @task(3)
    def image_search(self) -> None:
        self.search("search image", "image")

    @task(2)
    def text_image_search(self) -> None:
        self.search("search text+image", "text+image")

    @task(2)
    def filtered_search(self) -> None:
        text, _ = WORKLOAD.query("text", self.rng)
        top = grpcclient.InferInput("TOP_K", [1, 1], "INT32")
        top.set_data_from_numpy(np.array([[self.top_k]], dtype=np.int32))
        price = grpcclient.InferInput("PRICE_MAX", [1, 1], "FP32")
        price.set_data_from_numpy(np.array([[50.0]], dtype=np.float32))
        self.call("search filtered", "search", [
            bytes_tensor("QUERY_TEXT", text.encode()), bytes_tensor("QUERY_IMAGE", b""), top,
            bytes_tensor("CATEGORIES", self.rng.choice(WORKLOAD.categories).encode()), price])

    @task(2)
    def recommend(self) -> None:
        top = grpcclient.InferInput("TOP_K", [1, 1], "INT32")
        top.set_data_from_numpy(np.array([[self.top_k]], dtype=np.int32))
        self.call("recommend", "recommend", [bytes_tensor("ITEM_IDS", self.rng.choice(WORKLOAD.ids).encode()), top])

    @task(1)
    def encode_product(self) -> None:
        title, image = WORKLOAD.query("encode", self.rng)
        self.call("encode_product", "encode_product", [bytes_tensor("TITLE", title.encode()), bytes_tensor("IMAGE", image)])
