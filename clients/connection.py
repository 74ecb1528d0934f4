"""How a client reaches the service: TLS options, channel settings, the admin key, and the retry
policy with deadlines. One definition, used by every client and by the server-side tools.

Retry policy (`Connection.infer`): every call has a deadline (its time left is also sent as the
request's Triton timeout, so a request the client gave up on is dropped from the model queues
instead of computed; the queue's "Request timeout expired" then arrives as DEADLINE_EXCEEDED,
like the client's own). Retried, with jittered exponential backoff inside the same deadline,
only what a retry can fix: UNAVAILABLE (server restarting or unreachable, a model queue's wait
bound exceeded under overload), the INTERNAL "Stub process ... is not healthy" of a crashed model
process (the supervisor reloads it) and NOT_FOUND "unknown model" (a restarted server opens its
port before the serving generation is loaded, ~10-20 s). Never retried: INVALID_ARGUMENT,
DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED (gRPC's message-size limits: the same request fails
again), and every other status. A write refused by a generation swap's fence ("catalog writes
moved from generation M to N") is retried until the deadline, however many retries that takes:
the swap pins the ensembles to N within seconds, and the write is idempotent. Failures raise `ServiceError` with the gRPC status.

Replicas: a client may be given several addresses ("host1:8001,host2:8001" or a list) of
Triton replicas that serve the same catalog store. Calls go round-robin over them; a replica
that fails with UNAVAILABLE (down, restarting, overloaded) is skipped for `REPLICA_PAUSE_S`, and
the retry goes to the next one at once, so one dead replica costs one attempt, not an outage.
"""
from __future__ import annotations

import argparse
import itertools
import os
import random
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import tritonclient.grpc as grpcclient
from tritonclient.grpc import MAX_GRPC_MESSAGE_SIZE
from tritonclient.utils import InferenceServerException

DEFAULT_URL = "localhost:8001"
REPLICA_PAUSE_S = 2.0  # how long a replica that answered UNAVAILABLE is skipped
ADMIN_KEY_ENV = "PRODUCTSEARCH_ADMIN_KEY"
# Where a client finds its TLS files when no flag names them: the variables the launcher reads for
# the local tools (the CA they trust; under mutual TLS the certificate they present), also set in
# the TLS containers of docker-compose.tls.yml and deploy/kubernetes/components/grpc-tls.
TLS_ENV = {"root_cert": "TRITON_GRPC_TLS_ROOT", "client_cert": "TRITON_GRPC_TLS_CLIENT_CERT",
           "client_key": "TRITON_GRPC_TLS_CLIENT_KEY"}
RETRYABLE = {"StatusCode.UNAVAILABLE"}
# What a model queue answers (UNAVAILABLE) once a request waited longer than its timeout.
QUEUE_TIMEOUT = "Request timeout expired"
# A python-backend model whose process died answers INTERNAL with this until it is reloaded.
DEAD_STUB = re.compile(r"Stub process '[^']*' is not healthy")
# A refused request (its key): Triton 2.51's python backend has no such codes, so the server sends
# INVALID_ARGUMENT with the status name first; the client reports the status it means.
REFUSED = re.compile(r"\b(PERMISSION_DENIED|UNAUTHENTICATED|RESOURCE_EXHAUSTED): ")
# A write that reached the old generation's writer during a swap (UNAVAILABLE; send it again).
FENCED = re.compile(r"catalog writes moved from generation \d+ to \d+")
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


@dataclass(frozen=True)
class TlsOptions:
    """gRPC over TLS, client side: the CA that signed the server's certificate, and for mutual
    TLS the client's own certificate and key (PEM file paths)."""

    root_cert: str | None = None
    client_cert: str | None = None
    client_key: str | None = None

    def client_kwargs(self) -> dict:
        """tritonclient InferenceServerClient keyword arguments."""
        return dict(ssl=True, root_certificates=self.root_cert, certificate_chain=self.client_cert,
                    private_key=self.client_key)

    def cli_args(self) -> list[str]:
        """The same options as command-line flags (for a tool started as a subprocess)."""
        args = ["--ssl"]
        for flag, path in (("--root-cert", self.root_cert), ("--client-cert", self.client_cert),
                           ("--client-key", self.client_key)):
            if path is not None:
                args += [flag, str(Path(path).resolve())]
        return args


def add_connection_arguments(parser: argparse.ArgumentParser) -> None:
    """--url, --timeout and the TLS flags every client CLI takes."""
    parser.add_argument("--url", default=DEFAULT_URL, help="Triton gRPC address")
    parser.add_argument("--timeout", type=float, default=10.0, help="deadline of one call in seconds")
    add_tls_arguments(parser)


def add_tls_arguments(parser: argparse.ArgumentParser) -> None:
    """--ssl, --root-cert, --client-cert, --client-key; each path defaults to its TLS_ENV variable
    (the launcher's own names), so the tools inside a TLS container need no flags."""
    env = os.environ.get
    parser.add_argument("--ssl", action="store_true", help="gRPC over TLS (implied by --root-cert)")
    parser.add_argument("--root-cert", default=env(TLS_ENV["root_cert"]),
                        help=f"PEM file of the CA that signed the server's certificate (${TLS_ENV['root_cert']})")
    parser.add_argument("--client-cert", default=env(TLS_ENV["client_cert"]),
                        help=f"PEM client certificate, mutual TLS (${TLS_ENV['client_cert']})")
    parser.add_argument("--client-key", default=env(TLS_ENV["client_key"]),
                        help=f"PEM client key, mutual TLS (${TLS_ENV['client_key']})")


def tls_from_env() -> TlsOptions | None:
    """TlsOptions from the TLS_ENV variables (a client with no command line: Locust); None when unset."""
    paths = {field: os.environ.get(name) or None for field, name in TLS_ENV.items()}
    return TlsOptions(**paths) if paths["root_cert"] or paths["client_cert"] else None


def tls_from_args(args: argparse.Namespace) -> TlsOptions | None:
    """TlsOptions from add_connection_arguments' flags; None for plain gRPC."""
    if args.ssl or args.root_cert or args.client_cert:
        return TlsOptions(args.root_cert, args.client_cert, args.client_key)
    return None


def grpc_client(url: str, tls: TlsOptions | None = None, aio: bool = False):
    """A tritonclient gRPC client (asyncio when `aio`) with our channel settings and TLS."""
    options = dict(tls.client_kwargs() if tls is not None else {}, channel_args=CHANNEL_ARGS)
    if aio:
        import tritonclient.grpc.aio as aioclient

        return aioclient.InferenceServerClient(url, **options)
    return grpcclient.InferenceServerClient(url, **options)


def admin_key(key_file: str | Path | None = None) -> str | None:
    """The service's admin key: PRODUCTSEARCH_ADMIN_KEY, else the contents of `key_file` (the
    server writes run/admin_key on its host), else None."""
    if os.environ.get(ADMIN_KEY_ENV):
        return os.environ[ADMIN_KEY_ENV]
    if key_file is not None and Path(key_file).is_file():
        return Path(key_file).read_text().strip()
    return None


def is_retryable(status: str, message: str) -> bool:
    """Whether a retry of the same (idempotent) request can succeed: see the module docstring."""
    return (status in RETRYABLE or (status == "StatusCode.INTERNAL" and bool(DEAD_STUB.search(message)))
            or (status == "StatusCode.NOT_FOUND" and bool(NOT_LOADED.search(message))))


class ServiceError(RuntimeError):
    """The service refused or failed a request: `status` is the gRPC status name
    (e.g. "StatusCode.INVALID_ARGUMENT"), `message` the server's words, `attempts` how many
    calls were made (more than one when a retryable failure was retried)."""

    def __init__(self, status: str, message: str, attempts: int = 1):
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message
        self.attempts = attempts


@dataclass
class RetryPolicy:
    """The deadline and retry rules of one call (see the module docstring)."""

    timeout_s: float = 10.0
    retries: int = 3
    backoff_s: float = 0.1
    max_backoff_s: float = 1.0

    def pause(self, err: InferenceServerException, attempt: int, deadline: float) -> float:
        """Seconds to wait before attempt `attempt + 1`; raises ServiceError when not to retry."""
        status, message = str(err.status()), err.message() or ""
        refused = REFUSED.search(message)
        if refused and status == "StatusCode.INVALID_ARGUMENT":
            status = f"StatusCode.{refused.group(1)}"
        if status == "StatusCode.UNAVAILABLE" and QUEUE_TIMEOUT in message and time.monotonic() >= deadline:
            status = "StatusCode.DEADLINE_EXCEEDED"  # the server gave up on our deadline first
        pause = min(self.backoff_s * (2 ** (attempt - 1)), self.max_backoff_s) * (0.5 + random.random())
        out_of_retries = attempt > self.retries and not (status == "StatusCode.UNAVAILABLE" and FENCED.search(message))
        if not is_retryable(status, message) or out_of_retries or time.monotonic() + pause >= deadline:
            raise ServiceError(status, message, attempt) from None
        return pause


async def infer_async(client, model: str, inputs: list, outputs: list[str], policy: RetryPolicy = RetryPolicy(),
                      headers: dict | None = None):
    """Connection.infer for tritonclient's asyncio client (bulk loading, benchmarks)."""
    import asyncio

    deadline = time.monotonic() + policy.timeout_s
    requested = [grpcclient.InferRequestedOutput(name) for name in outputs]
    attempt = 0
    while True:
        remaining = max(deadline - time.monotonic(), 0.001)
        try:
            return await client.infer(model, inputs, outputs=requested, client_timeout=remaining,
                                      timeout=max(int(remaining * 1e6), 1), headers=headers)
        except InferenceServerException as err:
            attempt += 1
            await asyncio.sleep(policy.pause(err, attempt, deadline))


def replica_urls(url: str | list[str]) -> list[str]:
    """The addresses of a client's replicas: a list, or one string with commas."""
    urls = [u.strip() for u in (url.split(",") if isinstance(url, str) else url) if u.strip()]
    if not urls:
        raise ValueError("no server address given")
    return urls


class Connection:
    """gRPC channels to one Triton or to several replicas, with the retry policy above.

    timeout_s: the deadline of one call, retries included; retries: at most this many retries
    of a retryable failure; backoff_s: the first pause, doubled per retry (x0.5-1.5 jitter,
    at most max_backoff_s), never past the deadline. With replicas, a retry after UNAVAILABLE
    goes to the next replica without the pause."""

    def __init__(self, url: str | list[str] = DEFAULT_URL, timeout_s: float = 10.0, retries: int = 3,
                 backoff_s: float = 0.1, tls: TlsOptions | None = None, max_backoff_s: float = 1.0):
        self.urls = replica_urls(url)
        self.url = ",".join(self.urls)
        self.policy = RetryPolicy(timeout_s, retries, backoff_s, max_backoff_s)
        self.clients = [grpc_client(u, tls) for u in self.urls]
        self._turn = itertools.count()
        self._lock = threading.Lock()
        self._skip_until = [0.0] * len(self.urls)

    @property
    def client(self):
        """The first replica's client (for calls that are not inference)."""
        return self.clients[0]

    def pick(self) -> int:
        """The next replica in turn that is not being skipped (any, if all are)."""
        now = time.monotonic()
        with self._lock:
            start = next(self._turn)
            order = [(start + i) % len(self.clients) for i in range(len(self.clients))]
            return next((i for i in order if self._skip_until[i] <= now), order[0])

    def mark_unavailable(self, replica: int) -> None:
        with self._lock:
            self._skip_until[replica] = time.monotonic() + REPLICA_PAUSE_S

    def close(self) -> None:
        for client in self.clients:
            client.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def infer(self, model: str, inputs: list, outputs: list[str], headers: dict | None = None):
        """One call with a deadline; retryable failures retried with jittered backoff."""
        deadline = time.monotonic() + self.policy.timeout_s
        requested = [grpcclient.InferRequestedOutput(name) for name in outputs]
        attempt = 0
        while True:
            remaining = max(deadline - time.monotonic(), 0.001)
            replica = self.pick()
            try:
                # timeout (us): Triton drops the request from a model queue once it is spent
                return self.clients[replica].infer(model, inputs, outputs=requested, client_timeout=remaining,
                                                   timeout=max(int(remaining * 1e6), 1), headers=headers)
            except InferenceServerException as err:
                attempt += 1
                pause = self.policy.pause(err, attempt, deadline)
                if len(self.clients) > 1 and str(err.status()) == "StatusCode.UNAVAILABLE":
                    self.mark_unavailable(replica)
                    continue  # the next replica, now
                time.sleep(pause)
