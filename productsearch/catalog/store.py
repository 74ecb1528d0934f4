"""Which catalog store serves, from one URL: PRODUCTSEARCH_CATALOG, else the scorer's `catalog`
config parameter, else the embedded default beside the model repository.

    sqlite:///abs/path/dir   one SQLite database per shop in that folder (the embedded default,
                             <model repository>/catalog_store)
The store interface is what sqlite_store.SqliteCatalog offers: writes (upsert_one, update_one,
delete_one inside `transaction()`), reads (snapshot, changes, head), rebuild support
(needing_vectors, put_vectors) and meta (write fence, closed field lists).
"""
from __future__ import annotations

import os
from pathlib import Path

from productsearch.catalog.sqlite_store import DEFAULT_SHOP, SqliteCatalog, StoreError, check_shop, fence_writes, shops

CATALOG_ENV = "PRODUCTSEARCH_CATALOG"
DEFAULT_DIR = "catalog_store"


def catalog_url(repository: Path | None = None, configured: str | None = None) -> str:
    """The store URL: the environment, else `configured`, else <repository>/catalog_store."""
    url = os.environ.get(CATALOG_ENV) or configured
    if url:
        return url
    if repository is None:
        raise StoreError(f"no catalog store configured: set {CATALOG_ENV} (e.g. sqlite:///srv/catalog)")
    return f"sqlite://{Path(repository).resolve() / DEFAULT_DIR}"


def store_root(url: str) -> Path:
    if url.startswith("sqlite://"):
        return Path(url[len("sqlite://"):])
    if "://" not in url:
        return Path(url)
    raise StoreError(f"unknown catalog store URL {url!r}: use sqlite:///path")


def open_store(url: str, shop: str = DEFAULT_SHOP, create: bool = True) -> SqliteCatalog:
    """The catalog of `shop` in the store at `url` (created empty unless create=False)."""
    return SqliteCatalog(store_root(url), check_shop(shop), create=create)


def list_shops(url: str) -> list[str]:
    return shops(store_root(url))


def set_write_generation(url: str, generation: int) -> None:
    """The write fence of a generation swap: writers of other generations are refused (retry)."""
    fence_writes(store_root(url), generation)
