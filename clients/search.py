"""Search client: a class for e-commerce backends and a CLI for people.

    python -m clients.search "red striped t-shirt" --top-k 5
    python -m clients.search --image photo.jpg
    python -m clients.search "like this but in red" --image photo.jpg --url localhost:8001

Thin by design: tritonclient's gRPC client and numpy, nothing else. Sane defaults for a hot
path: every call has a deadline; only UNAVAILABLE (server restarting, overloaded) is retried,
with exponential backoff inside the same deadline; INVALID_ARGUMENT is raised at once as a
`SearchError` carrying the server's message.
"""
from __future__ import annotations

import argparse
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

DEFAULT_URL = "localhost:8001"
RETRYABLE = {"StatusCode.UNAVAILABLE", "StatusCode.RESOURCE_EXHAUSTED"}


class SearchError(RuntimeError):
    """The service refused or failed a request; `status` is the gRPC status name."""

    def __init__(self, status: str, message: str):
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


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
    """Calls the `search` ensemble over gRPC."""

    def __init__(self, url: str = DEFAULT_URL, timeout_s: float = 10.0, retries: int = 3,
                 backoff_s: float = 0.1, ssl: bool = False, root_certificates: str | None = None,
                 private_key: str | None = None, certificate_chain: str | None = None):
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self.client = grpcclient.InferenceServerClient(
            url, ssl=ssl, root_certificates=root_certificates,
            private_key=private_key, certificate_chain=certificate_chain,
        )

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> "SearchClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def infer(self, model: str, inputs: list, outputs: list[str]):
        """One call with a deadline; UNAVAILABLE/RESOURCE_EXHAUSTED retried with jittered backoff."""
        deadline = time.monotonic() + self.timeout_s
        requested = [grpcclient.InferRequestedOutput(name) for name in outputs]
        attempt = 0
        while True:
            remaining = deadline - time.monotonic()
            try:
                return self.client.infer(model, inputs, outputs=requested, client_timeout=max(remaining, 0.001))
            except InferenceServerException as err:
                status = str(err.status())
                attempt += 1
                pause = self.backoff_s * (2 ** (attempt - 1)) * (0.5 + random.random())
                if status not in RETRYABLE or attempt > self.retries or time.monotonic() + pause >= deadline:
                    raise SearchError(status, err.message()) from None
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
    args = parser.parse_args(argv)
    with SearchClient(args.url, timeout_s=args.timeout) as client:
        try:
            result = client.search(args.text, args.image, args.top_k)
        except SearchError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
    print(format_result(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
