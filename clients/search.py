"""Search client: a class for e-commerce backends and a CLI for people.

    python -m clients.search "red striped t-shirt" --top-k 5
    python -m clients.search --image photo.jpg
    python -m clients.search "like this but in red" --image photo.jpg --url localhost:8001

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

    def search(self, text: str | None = None, image: bytes | str | Path | None = None, top_k: int = 10) -> SearchResult:
        """Best products for a text and/or image query (image: encoded bytes or a file path)."""
        top = grpcclient.InferInput("TOP_K", [1, 1], "INT32")
        top.set_data_from_numpy(np.array([[top_k]], dtype=np.int32))
        inputs = [bytes_input("QUERY_TEXT", (text or "").encode("utf-8")), bytes_input("QUERY_IMAGE", read_image(image)), top]
        result = self.infer("search", inputs, ["PRODUCT_IDS", "SCORES", "TITLES", "GENERATION"])
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
            result = client.search(args.text, args.image, args.top_k)
        except SearchError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
    print(format_result(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
