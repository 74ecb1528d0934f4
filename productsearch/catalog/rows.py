"""What the catalog stores take in and hand out: a product write, a product row with its vectors,
a set of changes, and the errors a store raises. Shared by every store implementation and the
live index that follows one.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from productsearch.catalog.records import RecordError

SHOP_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")  # always fullmatch: "$" passes a trailing "\n"
DEFAULT_SHOP = "default"


class StoreError(RuntimeError):
    """The store cannot do this (missing database, wrong schema, a fenced writer)."""


class UnknownShop(StoreError):
    """The shop has no catalog: an admin creates it (catalog_admin ACTION create_shop). The message
    names only the shop asked for, never the store's path or other shops."""

    def __init__(self, shop: str):
        super().__init__(f"shop {shop!r} has no catalog: an admin creates a shop first "
                         "(catalog_admin ACTION create_shop; python -m clients.catalog --shop S create-shop)")


class FencedWrite(StoreError):
    """This writer's generation no longer takes writes (a swap moved them on): retry the request."""


class UnknownProduct(RecordError):
    """An update or delete names a product the catalog does not have."""


@dataclass
class ProductWrite:
    """One upsert as the writer has it: the record and its embeddings by this generation's
    encoders. title "" / image None keep the product's current ones (and their vectors)."""

    id: str
    title: str
    fields: dict
    image: bytes | None
    text_vector: np.ndarray | None  # None when title is "" (kept)
    image_vector: np.ndarray | None  # None when image is None (kept) or the product has no image


@dataclass
class ProductRow:
    """A product as a scorer serves it: its record and its vectors for one generation."""

    id: str
    title: str
    fields: dict
    text: np.ndarray
    image: np.ndarray | None
    updated_at: float


@dataclass
class ChangeSet:
    """What changed in (after, head]: the products' state at `head` (those with vectors for the
    generation), the ids gone, and the ids whose vectors for the generation are not there yet."""

    head: int
    rows: list[ProductRow] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)


def vector_blob(vector: np.ndarray | None) -> bytes | None:
    return None if vector is None else np.ascontiguousarray(vector, dtype=np.float32).tobytes()


def blob_vector(blob: bytes | None) -> np.ndarray | None:
    return None if blob is None else np.frombuffer(blob, dtype=np.float32)


def check_shop(shop: str) -> str:
    if not isinstance(shop, str) or not SHOP_NAME.fullmatch(shop):
        raise RecordError(f"shop name {shop!r} must be 1-64 letters, digits, '_', '-' or '.' (starting with a letter or digit)")
    return shop
