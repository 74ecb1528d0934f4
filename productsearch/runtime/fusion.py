"""fusion: the weighted concatenation of unit-norm text and image embeddings (the source method),
and the python-backend model that applies it to a batch of queries.

A fused vector is ``[sqrt(w_t) * t, sqrt(w_i) * i]`` with ``w_t + w_i = 1`` and unit-norm ``t``
and ``i``, so it is itself unit norm and the cosine of two fused vectors is
``w_t * cos(t_a, t_b) + w_i * cos(i_a, i_b)``: a convex mix of the per-modality cosines.

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

from productsearch.runtime.limits import EMPTY_QUERY
from productsearch.runtime.model_io import ModelContext, RequestError, input_array, response, run_batched

DEFAULT_TEXT_WEIGHT = 0.5  # the source method's equal weights


def normalize(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Rows scaled to unit L2 norm (zero rows stay zero)."""
    x = np.asarray(x, dtype=np.float32)
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(norm, eps)


def fuse(
    text: np.ndarray,
    image: np.ndarray,
    text_present: np.ndarray,
    image_present: np.ndarray,
    text_weight: float | np.ndarray = DEFAULT_TEXT_WEIGHT,
) -> np.ndarray:
    """Fuse a batch: ``text``/``image`` are [N, D]; ``*_present`` are [N] bools.

    Rows where neither modality is present raise ValueError (the caller reports which).
    ``text_weight`` is a scalar or one weight per row, in [0, 1].
    """
    text_present = np.asarray(text_present, dtype=bool).reshape(-1)
    image_present = np.asarray(image_present, dtype=bool).reshape(-1)
    if np.any(~text_present & ~image_present):
        raise ValueError("a row has neither text nor image")
    w_t = np.broadcast_to(np.asarray(text_weight, dtype=np.float32), text_present.shape)
    if np.any((w_t < 0) | (w_t > 1)) or np.any(np.isnan(w_t)):
        raise ValueError("text weight must be within [0, 1]")
    t = normalize(text)
    i = normalize(image)
    t_filled = np.where(text_present[:, None], t, i)
    i_filled = np.where(image_present[:, None], i, t)
    fused = np.concatenate(
        [np.sqrt(w_t)[:, None] * t_filled, np.sqrt(1.0 - w_t)[:, None] * i_filled], axis=1
    )
    return fused.astype(np.float32)


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
        from productsearch.runtime.generation_settings import generation_text_weight

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
