"""Query ids: what `search` and `recommend` return per row (QUERY_ID) and `record_events` refers to.

A query id is `<shop tag>-<issued, ms since the epoch, hex>-<random>`: 8 hex of SHA-256 over the
shop name, so an event naming another shop's query id is refused as such (without saying which
shop it came from), and the time it was issued, so `record_events` can tell a search whose row
the scorer has not flushed yet (runtime/search_log.py: at most a flush interval old) from one
never issued. The random part (64 bits) makes ids unguessable and unique.
"""
from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass

TAG_CHARS = 8
MAX_QUERY_ID_BYTES = 64


def shop_tag(shop: str) -> str:
    return hashlib.sha256(shop.encode()).hexdigest()[:TAG_CHARS]


def new_query_id(shop: str, now: float | None = None) -> str:
    issued = int((time.time() if now is None else now) * 1000)
    return f"{shop_tag(shop)}-{issued:x}-{secrets.token_hex(8)}"


@dataclass(frozen=True)
class QueryId:
    text: str
    tag: str
    issued: float  # seconds since the epoch

    def of_shop(self, shop: str) -> bool:
        return self.tag == shop_tag(shop)


def parse_query_id(text: str) -> QueryId | None:
    """The parts of a query id, or None for text this service never issues."""
    if not text or len(text) > MAX_QUERY_ID_BYTES:
        return None
    parts = text.split("-")
    if len(parts) != 3 or len(parts[0]) != TAG_CHARS or len(parts[2]) != 16:
        return None
    try:
        int(parts[0], 16), int(parts[2], 16)
        issued = int(parts[1], 16) / 1000.0
    except ValueError:
        return None
    return QueryId(text, parts[0], issued)
