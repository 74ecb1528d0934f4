"""The image tower's memory of photos it encoded: sha256 of the uploaded bytes -> embedding, the
most recent `capacity` photos (LRU). A shop's catalog repeats photos (one photo under each size or
colour of a product, a placeholder under many) and shoppers re-send the same photo; the same
bytes always give the same embedding from one model instance, so they are decoded and encoded
once. Per instance, hence per model version: a new generation never answers with an old
generation's embedding. (Triton's response cache caches whole requests, and in our Triton a
cached composing model's error no longer ends the ensemble: README "Triton's response cache".)
"""
from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict

import numpy as np

DEFAULT_CAPACITY = 16384  # photos; a 512-d fp32 embedding is 2 KiB: 32 MiB at most


def photo_key(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


class PhotoMemo:
    def __init__(self, capacity: int = DEFAULT_CAPACITY):
        self.capacity = capacity
        self._kept: OrderedDict[bytes, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._kept)

    def get(self, key: bytes) -> np.ndarray | None:
        if self.capacity <= 0:
            return None
        with self._lock:
            embedding = self._kept.get(key)
            if embedding is not None:
                self._kept.move_to_end(key)
            return embedding

    def put(self, key: bytes, embedding: np.ndarray) -> None:
        if self.capacity <= 0:
            return
        with self._lock:
            self._kept[key] = embedding
            self._kept.move_to_end(key)
            while len(self._kept) > self.capacity:
                self._kept.popitem(last=False)
