"""fusion: weighted concatenation of the text and image embeddings (productsearch.fusion).

Rows with neither modality are refused here with a clear message: this is where an empty
query (no text, no image) is caught, before it reaches the scorer.
"""
from __future__ import annotations

import numpy as np

from productsearch.backends.common import ModelContext, RequestError, input_array, response, run_batched
from productsearch.fusion import DEFAULT_TEXT_WEIGHT, fuse


class FusionModel:
    def initialize(self, args: dict) -> None:
        self.ctx = ModelContext.from_args(args)
        self.default_weight = float(self.ctx.parameter("text_weight", str(DEFAULT_TEXT_WEIGHT)))

    def parse(self, request) -> list[tuple]:
        text = input_array(request, "TEXT_EMBEDDING")
        image = input_array(request, "IMAGE_EMBEDDING")
        text_present = input_array(request, "TEXT_PRESENT").reshape(-1).astype(bool)
        image_present = input_array(request, "IMAGE_PRESENT").reshape(-1).astype(bool)
        weight = input_array(request, "TEXT_WEIGHT")
        weights = np.full(len(text), self.default_weight, np.float32) if weight is None else weight.reshape(-1)
        if len(weights) != len(text):
            raise RequestError("TEXT_WEIGHT needs one value per query")
        if not np.all((weights >= 0) & (weights <= 1)):
            raise RequestError(f"TEXT_WEIGHT must be within [0, 1], got {weights.tolist()}")
        if np.any(~text_present & ~image_present):
            raise RequestError("query is empty: send QUERY_TEXT and/or QUERY_IMAGE (both were empty)")
        return list(zip(text, image, text_present, image_present, weights))

    def compute(self, rows: list[tuple]) -> dict[str, np.ndarray]:
        text, image, text_present, image_present, weights = (np.stack(col) for col in zip(*rows))
        return {"FUSED": fuse(text, image, text_present, image_present, weights)}

    def execute(self, requests):
        return run_batched(requests, self.parse, self.compute, lambda out: response(**out))
