"""The connection to Milvus shared by a process's catalog stores, and the clock their sequences come
from. One MilvusClient per server and process (it is thread-safe; an embedded milvus-lite file
admits one process), wrapped so that a collection Milvus holds released (after a restart) is
loaded and the call made again instead of failing every search until an operator loads it.
"""
from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from productsearch.catalog.milvus.schema import MilvusUrl
from productsearch.catalog.rows import StoreError

# Milvus credentials as "user:password" (MilvusClient's token), from a file (a compose secret or a
# mounted Kubernetes Secret) or the environment, never the catalog URL or a command line.
TOKEN_FILE_ENV = "PRODUCTSEARCH_MILVUS_TOKEN_FILE"
TOKEN_ENV = "PRODUCTSEARCH_MILVUS_TOKEN"
# Milvus's documented root password and the stand-ins a template might carry: refused, not sent.
DEFAULT_PASSWORDS = frozenset({"milvus", "minioadmin", "replace-with-a-random-password", "changeme", ""})

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


def milvus_token(environ=os.environ) -> str | None:
    """The "user:password" to sign in to a Milvus server with (None: no authentication, as
    milvus-lite), from PRODUCTSEARCH_MILVUS_TOKEN_FILE or PRODUCTSEARCH_MILVUS_TOKEN; a default
    or placeholder password is refused (the message never shows it)."""
    if environ.get(TOKEN_FILE_ENV):
        try:
            token = Path(environ[TOKEN_FILE_ENV]).read_text().strip()
        except OSError as err:
            raise StoreError(f"{TOKEN_FILE_ENV}: cannot read the Milvus credentials file ({err.strerror})") from None
    else:
        token = environ.get(TOKEN_ENV, "").strip()
    if not token:
        return None
    user, colon, password = token.partition(":")
    if not colon or not user:
        raise StoreError(f"the Milvus credentials ({TOKEN_FILE_ENV} / {TOKEN_ENV}) must read user:password")
    if password.strip().lower() in DEFAULT_PASSWORDS:
        raise StoreError(f"the Milvus credentials ({TOKEN_FILE_ENV} / {TOKEN_ENV}) carry a default or placeholder "
                         "password: make a random one (python3 deploy/make_secrets.py)")
    return token


def client_for(url: MilvusUrl):
    """One MilvusClient per server and process (it is thread-safe; milvus-lite files allow one).
    A server (http://) is signed in to with milvus_token(); an embedded milvus-lite file has no users."""
    if url.uri not in _clients:
        from pymilvus import MilvusClient

        if not url.uri.startswith("http"):
            Path(url.uri).parent.mkdir(parents=True, exist_ok=True)
            _clients[url.uri] = LoadingClient(MilvusClient(url.uri))
        else:
            token = milvus_token()
            _clients[url.uri] = LoadingClient(MilvusClient(url.uri, token=token) if token else MilvusClient(url.uri))
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
