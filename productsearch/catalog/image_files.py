"""Product images for re-encoding, as content-addressed files in a folder (a shared volume when
several servers write): <root>/<sha[:2]>/<sha256>. Used by the Milvus catalog, which keeps only
the image's hash (a vector database is no blob store); the embedded store keeps images in SQLite.

A file is written to a temporary name, fsynced and renamed, so a reader never sees half an image
and a write acknowledged after put() survives a crash. Files are never rewritten (same hash, same
bytes) and not deleted with their products: an image may be shared, and space is cheap next to a
lost re-encoding source.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path


class ImageFiles:
    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, sha: str) -> Path:
        return self.root / sha[:2] / sha

    def put(self, data: bytes) -> str:
        sha = hashlib.sha256(data).hexdigest()
        target = self.path(sha)
        if not target.exists():
            target.parent.mkdir(exist_ok=True)
            tmp = target.with_name(f".{sha}.{os.getpid()}.tmp")
            with open(tmp, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, target)
        return sha

    def get(self, sha: str) -> bytes | None:
        try:
            return self.path(sha).read_bytes()
        except FileNotFoundError:
            return None
