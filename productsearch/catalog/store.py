"""Which catalog store serves, from one URL: PRODUCTSEARCH_CATALOG, else the scorer's `catalog`
config parameter, else the embedded default beside the model repository.

    sqlite:///abs/path/dir   one SQLite database per shop in that folder (the embedded default,
                             <model repository>/catalog_store); each scorer holds the catalog in
                             memory and follows the store's log
    milvus://host:19530?images=/shared/dir
                             a Milvus server (standalone or cluster), searched in place by every
                             replica (catalog/milvus/store.py); milvus+lite:///abs/dir is the same
                             on an embedded milvus-lite file (one process only: tests, benchmarks)
The store interface is what sqlite/store.py's SqliteCatalog offers: writes (upsert_one, update_one,
delete_one inside `transaction()`, then `committed()` for the SEQUENCEs), reads (snapshot,
changes, head, lexical, product, info), rebuild support (needing_vectors, put_vectors), the
products adapt trains on (products_with_photos) and meta (write fence, closed field lists, rules,
synonyms). `searched_in_place` tells the scorer which way to search.
pymilvus is imported only for a Milvus URL.
"""
from __future__ import annotations

import os
from pathlib import Path

from productsearch.catalog.sqlite.folder import fence_writes, shops
from productsearch.catalog.sqlite.store import DEFAULT_SHOP, SqliteCatalog, StoreError, check_shop

CATALOG_ENV = "PRODUCTSEARCH_CATALOG"
DEFAULT_DIR = "catalog_store"
MILVUS_SCHEMES = ("milvus://", "milvus+lite://")


def catalog_url(repository: Path | None = None, configured: str | None = None) -> str:
    """The store URL: the environment, else `configured`, else <repository>/catalog_store."""
    url = os.environ.get(CATALOG_ENV) or configured
    if url:
        return url
    if repository is None:
        raise StoreError(f"no catalog store configured: set {CATALOG_ENV} (e.g. sqlite:///srv/catalog)")
    return f"sqlite://{Path(repository).resolve() / DEFAULT_DIR}"


def is_milvus(url: str) -> bool:
    return url.startswith(MILVUS_SCHEMES)


def store_root(url: str) -> Path:
    """The folder of an embedded (SQLite) store."""
    if url.startswith("sqlite://"):
        return Path(url[len("sqlite://"):])
    if "://" not in url:
        return Path(url)
    raise StoreError(f"catalog URL {url!r} is not a SQLite folder (sqlite:///path)")


def open_store(url: str, shop: str = DEFAULT_SHOP, create: bool = True):
    """The catalog of `shop` in the store at `url` (created empty unless create=False)."""
    if is_milvus(url):
        from productsearch.catalog.milvus.store import open_milvus

        return open_milvus(url, check_shop(shop), create)
    return SqliteCatalog(store_root(url), check_shop(shop), create=create)


def list_shops(url: str) -> list[str]:
    if is_milvus(url):
        from productsearch.catalog.milvus.store import milvus_shops

        return milvus_shops(url)
    return shops(store_root(url))


def set_write_generation(url: str, generation: int) -> None:
    """The write fence of a generation swap: writers of other generations are refused (retry)."""
    if is_milvus(url):
        from productsearch.catalog.milvus.store import fence_milvus

        fence_milvus(url, generation)
        return
    fence_writes(store_root(url), generation)


def register_generation(url: str, generation: int, text_weight: float) -> None:
    """What a generation's models tell the store when they load: its fusion weight (the Milvus
    store keeps fused vectors; the embedded one fuses in each scorer and needs nothing)."""
    if is_milvus(url):
        from productsearch.catalog.milvus.store import register_fusion

        register_fusion(url, generation, text_weight)
