"""The fusion math of the source method, shared by the stub runtime and the catalog: unit-norm
rows and the weighted concatenation of a text and an image embedding.

A fused vector is ``[sqrt(w_t) * t, sqrt(w_i) * i]`` with ``w_t + w_i = 1`` and unit-norm ``t``
and ``i``, so it is itself unit norm and the cosine of two fused vectors is
``w_t * cos(t_a, t_b) + w_i * cos(i_a, i_b)``: a convex mix of the per-modality cosines.
Both towers embed into the same space, so a missing modality is filled with the present one.
It lives below the runtime and the catalog because both fuse (queries; catalog vectors).
"""
from __future__ import annotations

import numpy as np

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
