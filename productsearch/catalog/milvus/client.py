"""The connection to Milvus shared by a process's catalog stores, and the clock their sequences come
from. One MilvusClient per server and process (it is thread-safe; an embedded milvus-lite file
admits one process), wrapped so that a collection Milvus holds released (after a restart) is
loaded and the call made again instead of failing every search until an operator loads it.
"""
from __future__ import annotations

import threading
import time
from pathlib import Path

from productsearch.catalog.milvus.schema import MilvusUrl

_clock_lock = threading.Lock()
_last_stamp = 0
_clients: dict[str, object] = {}


def stamp() -> int:
    """Microseconds since the epoch, strictly increasing in this process."""
    global _last_stamp
    with _clock_lock:
        _last_stamp = max(time.time_ns() // 1000, _last_stamp + 1)
        return _last_stamp


class LoadingClient:
    """A MilvusClient that loads a released collection and asks again: a restarted Milvus (and
    milvus-lite always) keeps collections released until someone loads them."""

    RELEASED = 101  # Milvus's "collection not loaded" error code

    def __init__(self, client):
        self.client = client

    def __getattr__(self, name: str):
        method = getattr(self.client, name)
        if not callable(method):
            return method

        def call(*args, **kwargs):
            from pymilvus.exceptions import MilvusException

            try:
                return method(*args, **kwargs)
            except MilvusException as err:
                collection = args[0] if args and isinstance(args[0], str) else kwargs.get("collection_name")
                if getattr(err, "code", None) != self.RELEASED or not collection:
                    raise
                self.client.load_collection(collection)
                return method(*args, **kwargs)
        return call


def client_for(url: MilvusUrl):
    """One MilvusClient per server and process (it is thread-safe; milvus-lite files allow one)."""
    if url.uri not in _clients:
        from pymilvus import MilvusClient

        if not url.uri.startswith("http"):
            Path(url.uri).parent.mkdir(parents=True, exist_ok=True)
        _clients[url.uri] = LoadingClient(MilvusClient(url.uri))
    return _clients[url.uri]


def point_alias(client, url: MilvusUrl, generation: int) -> None:
    """`<prefix>_live` -> generation N's collection (one atomic alias change)."""
    name = url.collection(generation)
    aliases = client.list_aliases()
    aliases = aliases.get("aliases", []) if isinstance(aliases, dict) else aliases
    if url.alias in aliases:
        client.alter_alias(name, url.alias)
    else:
        client.create_alias(name, url.alias)
