"""query_gate: the first step of the `search` and `encode_product` ensembles.

Checks what can be checked without decoding - text at most 16 KiB of UTF-8, image at most
10 MiB, not both empty - and passes the bytes on unchanged to the encoders.

Why a step of its own: it makes the gate the only step of an ensemble's first pass. In Triton
2.51 an ensemble whose first pass schedules two steps (here both encoders) can deadlock the whole
server when one of them fails before the gRPC handler thread has scheduled the other: the
failing step's callback holds the ensemble's lock and waits for the handler's request lock, and
the handler holds that lock and waits for the ensemble's (seen here under load: every model
stuck, health still "ready"; gdb stacks in the reliability notes). With one step in the first
pass the handler never takes the ensemble's lock after scheduling it; the encoders are scheduled
by the gate's callback and still run in parallel. Requests refused here never reach an encoder;
each is counted in productsearch_refused_searches_total{model="query_gate", reason="bad_input",
shop="unknown"} (the gate sees no SHOP, and cannot tell `search` from `encode_product`).
"""
from __future__ import annotations

import numpy as np

from productsearch.core.limits import EMPTY_QUERY, MAX_IMAGE_BYTES
from productsearch.runtime.metrics import UNKNOWN_SHOP, Metrics
from productsearch.runtime.model_io import ModelContext, RequestError, input_array, response, run_batched
from productsearch.runtime.text_input import decode_texts


def check_rows(texts: np.ndarray, images: np.ndarray) -> None:
    """Raise RequestError for the first problem in these rows (same checks as the encoders)."""
    decoded = decode_texts(texts)  # too long / not UTF-8
    for text, image in zip(decoded, images.reshape(-1)):
        data = image if isinstance(image, bytes) else bytes(image)
        if len(data) > MAX_IMAGE_BYTES:
            raise RequestError(f"image is too large: {len(data)} bytes > limit {MAX_IMAGE_BYTES}")
        if not text and not data:
            raise RequestError(EMPTY_QUERY)


class QueryGateModel:
    def initialize(self, args: dict) -> None:
        self.ctx = ModelContext.from_args(args)
        self.metrics = Metrics.of_model(self.ctx)

    def parse(self, request) -> list[tuple]:
        texts, images = input_array(request, "TEXT"), input_array(request, "IMAGE")
        try:
            if texts is None or images is None:
                raise RequestError("missing input TEXT or IMAGE")
            check_rows(texts, images)
        except RequestError:
            self.metrics.add("productsearch_refused_searches_total", 1, shop=UNKNOWN_SHOP, reason="bad_input")
            raise
        return list(zip(texts.reshape(-1), images.reshape(-1)))

    def compute(self, rows: list[tuple]) -> dict[str, np.ndarray]:
        return {"TEXT_OUT": np.array([[t] for t, _ in rows], dtype=object),
                "IMAGE_OUT": np.array([[i] for _, i in rows], dtype=object)}

    def execute(self, requests):
        return run_batched(requests, self.parse, self.compute, lambda out: response(**out))

    def finalize(self) -> None:
        self.metrics.close()
