"""Each result card's catalog record (price, stock, category): the search answers ids, titles and
scores only, so the page asks catalog_admin's `products` for the rest (one call per page). Records are kept per shop for the catalog
sequence the answer reflects (CATALOG_SEQUENCE): any write moves the sequence and the next page
asks again, so a card never shows a price older than the search beside it."""
from __future__ import annotations

import threading

from clients.connection import ServiceError

MAX_RECORDS = 4096  # per shop


class ProductRecords:
    """(shop, sequence) -> id -> record, filled on demand."""

    def __init__(self):
        self._shops: dict[str, tuple[int, dict]] = {}
        self._lock = threading.Lock()

    def forget(self) -> None:
        with self._lock:
            self._shops.clear()

    def records(self, client, shop: str | None, ids: list[str], sequence: int) -> dict[str, dict]:
        """The records of `ids` as of `sequence` or later (one `products` call for the ids not kept)."""
        with self._lock:
            kept_sequence, kept = self._shops.get(shop or "", (None, {}))
            if kept_sequence != sequence or len(kept) > MAX_RECORDS:
                kept = {}
                self._shops[shop or ""] = (sequence, kept)
            missing = [pid for pid in ids if pid not in kept]
        fetched = {}
        if missing:
            try:
                fetched = client.products(missing, shop)
            except ServiceError:
                fetched = {}  # the cards show what the search answered; the next page asks again
        with self._lock:
            kept.update(fetched)
            return {pid: kept[pid] for pid in ids if pid in kept}
