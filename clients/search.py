"""Search client: a class for e-commerce backends and a CLI for people.

    python -m clients.search "red striped t-shirt" --top-k 5
    python -m clients.search --image photo.jpg
    python -m clients.search "like this but in red" --image photo.jpg --url localhost:8001
    python -m clients.search "summer dress" --category dress --price-max 40 --page 1
    python -m clients.search --like P00042                          # more like this product

Thin by design: tritonclient's gRPC client and numpy, nothing else. Sane defaults for a hot
path (see `SearchClient`):
- every call has a deadline (10 s); the time left is also sent as the request's Triton timeout,
  so a request the client gave up on is dropped from the model queues instead of computed (the
  queue's "Request timeout expired" then arrives as DEADLINE_EXCEEDED, like the client's own);
- retried, with jittered exponential backoff inside the same deadline, only what a retry can
  fix: UNAVAILABLE (server restarting or unreachable, a model queue's wait bound exceeded under
  overload), the INTERNAL "Stub process ... is not healthy" of a crashed model process (the
  supervisor reloads it; a search is read-only, so a retry is safe) and NOT_FOUND "unknown
  model" (a restarted server opens its port before the supervisor has loaded the serving
  generation, ~10-20 s; on a server that was never indexed this fails at the deadline);
- never retried: INVALID_ARGUMENT (the request itself is wrong), DEADLINE_EXCEEDED (the time is
  spent), RESOURCE_EXHAUSTED (gRPC's message-size limits: the same request fails again), and
  every other status. All of them raise `SearchError` with the gRPC status and the server's message.
TLS: `ssl=True` with `root_certificates` (the CA that signed the server), plus
`private_key`/`certificate_chain` for mutual TLS (file paths).
"""
from __future__ import annotations

import argparse
import random
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.grpc import MAX_GRPC_MESSAGE_SIZE
from tritonclient.utils import InferenceServerException

DEFAULT_URL = "localhost:8001"
RETRYABLE = {"StatusCode.UNAVAILABLE"}
# What a model queue answers (UNAVAILABLE) once a request waited longer than its timeout.
QUEUE_TIMEOUT = "Request timeout expired"
# A python-backend model whose process died answers INTERNAL with this until it is reloaded.
DEAD_STUB = re.compile(r"Stub process '[^']*' is not healthy")
# What a server answers for a model that is not loaded (yet).
NOT_LOADED = re.compile(r"Request for unknown model: '[^']*' (is not found|has no available versions)")
# Reconnect quickly once the server is back (gRPC's default backoff grows to 120 s), with
# tritonclient's own defaults otherwise.
CHANNEL_ARGS = [
    ("grpc.max_send_message_length", MAX_GRPC_MESSAGE_SIZE),
    ("grpc.max_receive_message_length", MAX_GRPC_MESSAGE_SIZE),
    ("grpc.keepalive_time_ms", 2**31 - 1),
    ("grpc.keepalive_timeout_ms", 20000),
    ("grpc.keepalive_permit_without_calls", False),
    ("grpc.http2.max_pings_without_data", 2),
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
]


def is_retryable(status: str, message: str) -> bool:
    """Whether a retry of the same (read-only) request can succeed: see the module docstring."""
    return (status in RETRYABLE or (status == "StatusCode.INTERNAL" and bool(DEAD_STUB.search(message)))
            or (status == "StatusCode.NOT_FOUND" and bool(NOT_LOADED.search(message))))


class SearchError(RuntimeError):
    """The service refused or failed a request: `status` is the gRPC status name
    (e.g. "StatusCode.INVALID_ARGUMENT"), `message` the server's words, `attempts` how many
    calls were made (more than one when a retryable failure was retried)."""

    def __init__(self, status: str, message: str, attempts: int = 1):
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message
        self.attempts = attempts


@dataclass
class SearchResult:
    ids: list[str]
    scores: list[float]
    titles: list[str]
    generation: int

    def rows(self) -> list[tuple[str, float, str]]:
        return list(zip(self.ids, self.scores, self.titles))


def bytes_input(name: str, value: bytes) -> grpcclient.InferInput:
    tensor = grpcclient.InferInput(name, [1, 1], "BYTES")
    tensor.set_data_from_numpy(np.array([[value]], dtype=object))
    return tensor


def list_input(name: str, values: list[str]) -> grpcclient.InferInput:
    tensor = grpcclient.InferInput(name, [1, len(values)], "BYTES")
    tensor.set_data_from_numpy(np.array([[str(v).encode("utf-8") for v in values]], dtype=object))
    return tensor


def number_input(name: str, value: float, datatype: str = "FP32") -> grpcclient.InferInput:
    tensor = grpcclient.InferInput(name, [1, 1], datatype)
    tensor.set_data_from_numpy(np.array([[value]], dtype=np.float32 if datatype == "FP32" else np.int32))
    return tensor


@dataclass
class Filters:
    """Which products may appear, applied before ranking. Empty fields filter nothing.
    categories: any of these; price_min/price_max: inclusive (products without a price pass
    no price filter); exclude_ids: never returned (ids not in the catalog are ignored)."""

    categories: list[str] | None = None
    price_min: float | None = None
    price_max: float | None = None
    exclude_ids: list[str] | None = None

    def inputs(self) -> list[grpcclient.InferInput]:
        inputs = []
        if self.categories:
            inputs.append(list_input("CATEGORIES", self.categories))
        if self.price_min is not None:
            inputs.append(number_input("PRICE_MIN", self.price_min))
        if self.price_max is not None:
            inputs.append(number_input("PRICE_MAX", self.price_max))
        if self.exclude_ids:
            inputs.append(list_input("EXCLUDE_IDS", self.exclude_ids))
        return inputs


def read_image(image: bytes | str | Path | None) -> bytes:
    if image is None:
        return b""
    if isinstance(image, (bytes, bytearray)):
        return bytes(image)
    return Path(image).read_bytes()


class SearchClient:
    """Calls the `search` ensemble over gRPC.

    timeout_s: the deadline of one call, retries included; retries: at most this many retries
    of a retryable failure; backoff_s: the first pause, doubled per retry (x0.5-1.5 jitter,
    at most max_backoff_s), never past the deadline."""

    def __init__(self, url: str = DEFAULT_URL, timeout_s: float = 10.0, retries: int = 3,
                 backoff_s: float = 0.1, ssl: bool = False, root_certificates: str | None = None,
                 private_key: str | None = None, certificate_chain: str | None = None,
                 max_backoff_s: float = 1.0):
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.client = grpcclient.InferenceServerClient(
            url, ssl=ssl, root_certificates=root_certificates,
            private_key=private_key, certificate_chain=certificate_chain, channel_args=CHANNEL_ARGS,
        )

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> "SearchClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def infer(self, model: str, inputs: list, outputs: list[str]):
        """One call with a deadline; retryable failures retried with jittered backoff."""
        deadline = time.monotonic() + self.timeout_s
        requested = [grpcclient.InferRequestedOutput(name) for name in outputs]
        attempt = 0
        while True:
            remaining = max(deadline - time.monotonic(), 0.001)
            try:
                # timeout (us): Triton drops the request from a model queue once it is spent
                return self.client.infer(model, inputs, outputs=requested, client_timeout=remaining,
                                         timeout=max(int(remaining * 1e6), 1))
            except InferenceServerException as err:
                status, message = str(err.status()), err.message() or ""
                if status == "StatusCode.UNAVAILABLE" and QUEUE_TIMEOUT in message and time.monotonic() >= deadline:
                    status = "StatusCode.DEADLINE_EXCEEDED"  # the server gave up on our deadline first
                attempt += 1
                pause = min(self.backoff_s * (2 ** (attempt - 1)), self.max_backoff_s) * (0.5 + random.random())
                if (not is_retryable(status, message) or attempt > self.retries
                        or time.monotonic() + pause >= deadline):
                    raise SearchError(status, message, attempt) from None
                time.sleep(pause)

    def search(self, text: str | None = None, image: bytes | str | Path | None = None, top_k: int = 10,
               offset: int = 0, text_weight: float | None = None, filters: Filters | None = None) -> SearchResult:
        """Best products for a text and/or image query (image: encoded bytes or a file path).
        offset: skip that many (pages: offset = page * top_k); text_weight: text vs image in
        the fused query, 0..1 (None: the server's default, 0.5); filters: see `Filters`."""
        inputs = [bytes_input("QUERY_TEXT", (text or "").encode("utf-8")), bytes_input("QUERY_IMAGE", read_image(image)),
                  number_input("TOP_K", top_k, "INT32")]
        if text_weight is not None:
            inputs.append(number_input("TEXT_WEIGHT", text_weight))
        return self._ranked("search", inputs, offset, filters)

    def recommend(self, item_ids: list[str], top_k: int = 10, weights: list[float] | None = None, offset: int = 0,
                  filters: Filters | None = None) -> SearchResult:
        """Products like `item_ids` (one id: "more like this"; a shopper's recently viewed ids,
        most recent first: "for this shopper"), never the items themselves. weights: one per id
        (None: recency weights 0.8**i). An unknown id raises INVALID_ARGUMENT."""
        inputs = [list_input("ITEM_IDS", list(item_ids)), number_input("TOP_K", top_k, "INT32")]
        if weights is not None:
            tensor = grpcclient.InferInput("ITEM_WEIGHTS", [1, len(weights)], "FP32")
            tensor.set_data_from_numpy(np.array([weights], dtype=np.float32))
            inputs.append(tensor)
        return self._ranked("recommend", inputs, offset, filters)

    def _ranked(self, model: str, inputs: list, offset: int, filters: Filters | None) -> SearchResult:
        if offset:
            inputs.append(number_input("OFFSET", offset, "INT32"))
        inputs += (filters or Filters()).inputs()
        result = self.infer(model, inputs, ["PRODUCT_IDS", "SCORES", "TITLES", "GENERATION"])
        return SearchResult(
            ids=[v.decode() for v in result.as_numpy("PRODUCT_IDS").reshape(-1)],
            scores=[float(v) for v in result.as_numpy("SCORES").reshape(-1)],
            titles=[v.decode() for v in result.as_numpy("TITLES").reshape(-1)],
            generation=int(result.as_numpy("GENERATION").reshape(-1)[0]),
        )


def format_result(result: SearchResult) -> str:
    lines = [f"{'rank':>4}  {'id':<8} {'score':>6}  title   (generation {result.generation})"]
    for rank, (pid, score, title) in enumerate(result.rows(), 1):
        lines.append(f"{rank:>4}  {pid:<8} {score:6.3f}  {title}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m clients.search", description="Search the product catalog.")
    parser.add_argument("text", nargs="?", default=None, help="query words")
    parser.add_argument("--image", type=Path, help="query photo (JPEG/PNG)")
    parser.add_argument("--top-k", type=int, default=10)
    parser.add_argument("--page", type=int, default=0, help="page number (0 = first), top-k results a page")
    parser.add_argument("--text-weight", type=float, default=None, help="text vs image, 0..1 (default 0.5)")
    parser.add_argument("--category", action="append", default=None, help="only this category (repeatable: any of)")
    parser.add_argument("--price-min", type=float, default=None)
    parser.add_argument("--price-max", type=float, default=None)
    parser.add_argument("--exclude", action="append", default=None, help="never this product id (repeatable)")
    parser.add_argument("--like", action="append", default=None, metavar="PRODUCT_ID",
                        help="recommend instead: products like this id (repeatable: recently viewed, most recent first)")
    parser.add_argument("--url", default=DEFAULT_URL, help="Triton gRPC address")
    parser.add_argument("--timeout", type=float, default=10.0, help="deadline in seconds")
    parser.add_argument("--ssl", action="store_true", help="gRPC over TLS (implied by --root-cert)")
    parser.add_argument("--root-cert", help="PEM file of the CA that signed the server's certificate")
    parser.add_argument("--client-cert", help="PEM client certificate (mutual TLS)")
    parser.add_argument("--client-key", help="PEM client key (mutual TLS)")
    args = parser.parse_args(argv)
    tls = dict(ssl=bool(args.ssl or args.root_cert or args.client_cert), root_certificates=args.root_cert,
               certificate_chain=args.client_cert, private_key=args.client_key)
    with SearchClient(args.url, timeout_s=args.timeout, **tls) as client:
        try:
            filters = Filters(args.category, args.price_min, args.price_max, args.exclude)
            if args.like:
                result = client.recommend(args.like, args.top_k, offset=args.page * args.top_k, filters=filters)
            else:
                result = client.search(args.text, args.image, args.top_k, offset=args.page * args.top_k,
                                       text_weight=args.text_weight, filters=filters)
        except SearchError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
    print(format_result(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
