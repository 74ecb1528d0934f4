"""Locust users that search, and write to the catalog, over Triton's gRPC API.

    locust -f loadtest/locustfile.py --host 127.0.0.1:8001            # web UI on :8089
    locust -f loadtest/locustfile.py --host 127.0.0.1:8001 --headless -u 16 -r 4 -t 60s

Shoppers (TritonUser) are weighted like a shop's traffic: mostly text search, some photo and
photo+words search, filtered search (a category and a price cap), hybrid search with facet
counts and an in-stock boost (a shop's search page), "more like this"
recommendations, and a trickle of product encoding. A catalog writer (CatalogWriter, one
user) upserts new products, changes prices and deletes what it made, a few writes
a second, with the admin key (PRODUCTSEARCH_ADMIN_KEY or run/admin_key; without one it does not
start). Queries come from the demo catalog's vocabulary and renders (loadtest.workload); requests
are built by clients.contract. Each call is reported to Locust with its latency and failure.
"""
from __future__ import annotations

import grpc.experimental.gevent as grpc_gevent

grpc_gevent.init_gevent()  # before any gRPC channel exists, or calls block the gevent loop

import os  # noqa: E402
import random  # noqa: E402
import time  # noqa: E402

import tritonclient.grpc as grpcclient  # noqa: E402
from locust import User, between, events, task  # noqa: E402

from clients.connection import admin_key, tls_from_env  # noqa: E402
from clients.contract import (DELETE, UPDATE_FIELDS, UPSERT, WRITE_KEY_HEADER, Filters, Product, Relevance,  # noqa: E402
                              delete_inputs, encode_inputs, recommend_inputs, search_inputs, update_inputs, upsert_inputs)
from loadtest.workload import DEMO_CATALOG, ROOT, Workload  # noqa: E402

WORKLOAD: Workload | None = None


@events.init.add_listener
def load_workload(environment, **_kwargs) -> None:
    global WORKLOAD
    WORKLOAD = Workload.from_catalog(os.environ.get("DEMO_CATALOG", DEMO_CATALOG), images=100)


class GrpcUser(User):
    """A user with its own gRPC channel to Triton; `call` reports each request to Locust."""

    abstract = True

    def on_start(self) -> None:
        tls = tls_from_env()  # gRPC over TLS where TRITON_GRPC_TLS_ROOT names the CA (docker-compose.tls.yml)
        self.client = grpcclient.InferenceServerClient(self.host or "127.0.0.1:8001",
                                                       **(tls.client_kwargs() if tls else {}))
        self.rng = random.Random()

    def on_stop(self) -> None:
        client, self.client = self.client, None
        if client is not None:
            client.close()
            client.close = lambda: None  # its __del__ must not close the channel again at exit

    def call(self, name: str, model: str, inputs: list, headers: dict | None = None) -> None:
        started = time.perf_counter()
        exception, length = None, 0
        try:
            result = self.client.infer(model, inputs, client_timeout=30, headers=headers)
            length = result.get_response().ByteSize()
        except Exception as err:  # reported to Locust as a failure
            exception = err
        self.environment.events.request.fire(
            request_type="grpc", name=name, response_time=(time.perf_counter() - started) * 1000,
            response_length=length, exception=exception, context={},
        )


class TritonUser(GrpcUser):
    """One shopper."""

    wait_time = between(0.05, 0.2)
    weight = 20
    top_k = 10

    def search(self, name: str, kind: str) -> None:
        text, image = WORKLOAD.query(kind, self.rng)
        self.call(name, "search", search_inputs(text, image, self.top_k))

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
        filters = Filters(categories=[self.rng.choice(WORKLOAD.categories)], price_max=50.0)
        self.call("search filtered", "search", search_inputs(text, None, self.top_k, filters=filters))

    @task(2)
    def hybrid_faceted_search(self) -> None:
        """What a shop's search page sends: hybrid words, a filter menu's counts, in stock first."""
        text, _ = WORKLOAD.query("text", self.rng)
        relevance = Relevance(facets=["category", "color", "price"], boosts={"in_stock": 0.01}, max_per_group=3,
                              group_by="category")
        self.call("search hybrid+facets", "search", search_inputs(text, None, self.top_k, relevance=relevance))

    @task(2)
    def recommend(self) -> None:
        self.call("recommend", "recommend", recommend_inputs([self.rng.choice(WORKLOAD.ids)], self.top_k))

    @task(1)
    def encode_product(self) -> None:
        title, image = WORKLOAD.query("encode", self.rng)
        self.call("encode_product", "encode_product", encode_inputs(title, image))


class CatalogWriter(GrpcUser):
    """A catalog feed: new products, price changes, removals (of its own products only)."""

    wait_time = between(0.2, 0.5)
    fixed_count = 1  # one feed, whatever the number of shoppers

    def on_start(self) -> None:
        super().on_start()
        key = admin_key(os.environ.get("PRODUCTSEARCH_ADMIN_KEY_FILE", ROOT / "run" / "admin_key"))
        if not key:
            self.stop(force=True)
            return
        self.headers = {WRITE_KEY_HEADER: key}
        self.mine: list[str] = []
        self.count = 0

    @task(4)
    def upsert(self) -> None:
        title, image = WORKLOAD.query("encode", self.rng)
        pid = f"LOCUST-{id(self) % 10**6}-{self.count}"
        self.count += 1
        product = Product(pid, title, image, {"price": round(self.rng.uniform(5, 200), 2), "stock": 10})
        self.call("upsert_products", UPSERT, upsert_inputs([product]), self.headers)
        self.mine.append(pid)

    @task(4)
    def update_price(self) -> None:
        if self.mine:
            changes = {self.rng.choice(self.mine): {"price": round(self.rng.uniform(5, 200), 2)}}
            self.call("update_fields", UPDATE_FIELDS, update_inputs(changes), self.headers)

    @task(1)
    def delete(self) -> None:
        if self.mine:
            self.call("delete_products", DELETE, delete_inputs([self.mine.pop(0)]), self.headers)
