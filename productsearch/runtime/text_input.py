"""Decoding of untrusted query and title strings (BYTES elements) under the text limits.

A problem is a RequestError naming it, so the model answers INVALID_ARGUMENT for that request
alone. An empty element (after stripping) means "no text".
"""
from __future__ import annotations

import numpy as np

from productsearch.core.limits import MAX_TEXT_BYTES
from productsearch.runtime.model_io import RequestError


def decode_texts(raw: np.ndarray) -> list[str]:
    """UTF-8 strings of a BYTES array (any shape), stripped; RequestError when one is too long
    or not valid UTF-8."""
    texts = []
    for value in raw.reshape(-1):
        data = value if isinstance(value, bytes) else str(value).encode()
        if len(data) > MAX_TEXT_BYTES:
            raise RequestError(f"text is too long: {len(data)} bytes > limit {MAX_TEXT_BYTES}")
        try:
            texts.append(data.decode("utf-8").strip())
        except UnicodeDecodeError as err:
            raise RequestError(f"text is not valid UTF-8: {err.reason} at byte {err.start}") from None
    return texts
