"""fusion: the python-backend model that fuses a batch of text and image embeddings (the source
method's weighted concatenation, core/vectors.py), and the check of a request's encoder outputs
that it shares with the scorer.

Both towers embed into the same space (the image tower is trained into the text tower's space),
so a missing modality is filled with the present one: a text-only query is compared with both the
products' titles and their photos. An empty query (neither) is normally refused by query_gate
before it gets here; the model refuses it too, for callers of `fusion` itself.
`fusion` is generation-numbered (version N = generation N): its default weight is generation
N's (runtime/generation_settings.py, the same one scorer N fuses the catalog with); a config
parameter `text_weight` overrides it for queries only; a request's TEXT_WEIGHT wins over both.
The `search` ensemble has scorer N fuse its queries (`query_rows` + `fuse`, the scorer's
`query_text_weight` being this `text_weight`); `encode_product` uses this model.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from productsearch.core.limits import EMPTY_QUERY, MAX_EMBEDDING_DIM
from productsearch.core.vectors import fuse
from productsearch.runtime.generation_settings import generation_text_weight
from productsearch.runtime.model_io import ModelContext, RequestError, input_array, response, run_batched


def query_rows(get, default_weight: float) -> tuple[np.ndarray, ...]:
    """One request's encoder outputs, checked: (text, image, text_present, image_present, weights),
    a row each. `get(name)` reads an input (None: absent). Used by `fusion` and by the scorer,
    which fuses the `search` ensemble's queries itself (one python step less on the hot path)."""
    text, image = get("TEXT_EMBEDDING"), get("IMAGE_EMBEDDING")
    text_present, image_present = get("TEXT_PRESENT"), get("IMAGE_PRESENT")
    if text is None or image is None or text_present is None or image_present is None:
        raise RequestError("fusing a query needs TEXT_EMBEDDING, TEXT_PRESENT, IMAGE_EMBEDDING and IMAGE_PRESENT")
    rows = len(text)
    text, image = text.reshape(rows, -1), image.reshape(len(image), -1)
    if max(text.shape[1], image.shape[1]) > MAX_EMBEDDING_DIM:
        raise RequestError(f"TEXT_EMBEDDING / IMAGE_EMBEDDING have at most {MAX_EMBEDDING_DIM} values per row, got "
                           f"{max(text.shape[1], image.shape[1])}")
    text_present = text_present.reshape(-1).astype(bool)
    image_present = image_present.reshape(-1).astype(bool)
    if not len(image) == len(text_present) == len(image_present) == rows:
        raise RequestError("TEXT_EMBEDDING, IMAGE_EMBEDDING and their PRESENT flags need one row per query")
    weight = get("TEXT_WEIGHT")
    weights = np.full(rows, default_weight, np.float32) if weight is None else weight.reshape(-1).astype(np.float32)
    if len(weights) != rows:
        raise RequestError("TEXT_WEIGHT needs one value per query")
    if not np.all((weights >= 0) & (weights <= 1)):
        raise RequestError(f"TEXT_WEIGHT must be within [0, 1], got {weights.tolist()}")
    if np.any(~text_present & ~image_present):
        raise RequestError(EMPTY_QUERY)
    return text, image, text_present, image_present, weights


class FusionModel:
    def initialize(self, args: dict) -> None:
        self.ctx = ModelContext.from_args(args)
        generation_weight = generation_text_weight(Path(self.ctx.version_dir).parent.parent, self.ctx.version)
        self.default_weight = float(self.ctx.parameter("text_weight", str(generation_weight)))

    def parse(self, request) -> list[tuple]:
        return list(zip(*query_rows(lambda name: input_array(request, name), self.default_weight)))

    def compute(self, rows: list[tuple]) -> dict[str, np.ndarray]:
        text, image, text_present, image_present, weights = (np.stack(col) for col in zip(*rows))
        return {"FUSED": fuse(text, image, text_present, image_present, weights)}

    def execute(self, requests):
        return run_batched(requests, self.parse, self.compute, lambda out: response(**out))
