"""The scorer's search log: every answered row written to its shop's `searches` table
(catalog/events.py) off the request path.

Why a background writer: a search must not wait for a disk write. Rows are queued by execute()
and written by one thread every `flush_s` (default 0.1 s), one transaction per shop. What this
costs on kill -9: the rows of searches answered in the last flush interval that were not written
yet are lost (their query ids then get "unknown query id" from record_events); a written batch
survives a killed server. record_events knows a query id's age (catalog/query_ids.py) and waits
up to FLUSH_GRACE_S for a young one, so a click sent right after its search is never refused for
racing the flush. The same thread prunes rows older than the retention (`retention_days`,
default 90; at start and hourly). Scorer parameters: `search_log` (on | off: off is for the
benchmark of its cost; query ids are still returned, events for them are refused),
`search_log_flush_s`, `retention_days`.
"""
from __future__ import annotations

import threading
import time
from pathlib import Path

from productsearch.catalog.events import RETENTION_DAYS, EventStore, SearchRow, events_path

FLUSH_S = 0.1
FLUSH_GRACE_S = 2.0  # record_events waits this long at most for a young query id's row
PRUNE_EVERY_S = 3600.0


class SearchLog:
    """Queue of SearchRows per shop, written by one daemon thread."""

    def __init__(self, catalog_url: str, repository: Path | None, flush_s: float = FLUSH_S,
                 retention_days: float = RETENTION_DAYS, enabled: bool = True, log=print):
        self.url, self.repository, self.flush_s = catalog_url, repository, flush_s
        self.retention_s, self.enabled, self.log = retention_days * 86400.0, enabled, log
        self.pending: list[tuple[str, SearchRow]] = []
        self.lock = threading.Lock()
        self.stores: dict[str, EventStore] = {}
        self.pruned: dict[str, float] = {}
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.run, name="search-log", daemon=True)
        if enabled:
            self.thread.start()

    def add(self, shop: str, row: SearchRow) -> None:
        if self.enabled:
            with self.lock:
                self.pending.append((shop, row))

    def store(self, shop: str) -> EventStore:
        if shop not in self.stores:
            self.stores[shop] = EventStore(events_path(self.url, shop, self.repository), durable=False)
        return self.stores[shop]

    def flush(self) -> int:
        """Write what is queued (one transaction per shop); rows of a shop whose write failed are
        kept for the next flush. Returns the rows written."""
        with self.lock:
            batch, self.pending = self.pending, []
        by_shop: dict[str, list[SearchRow]] = {}
        for shop, row in batch:
            by_shop.setdefault(shop, []).append(row)
        written = 0
        for shop, rows in by_shop.items():
            try:
                self.store(shop).add_searches(rows)
                written += len(rows)
            except Exception as err:  # noqa: BLE001 - a busy or broken store: keep them, say so, go on
                self.log(f"search log: shop {shop!r}: {len(rows)} rows not written yet ({type(err).__name__}: {err})")
                with self.lock:
                    self.pending[:0] = [(shop, r) for r in rows]
            self.prune_due(shop)
        return written

    def prune_due(self, shop: str) -> None:
        now = time.time()
        if now - self.pruned.get(shop, 0.0) < PRUNE_EVERY_S:
            return
        self.pruned[shop] = now
        try:
            searches, events = self.store(shop).prune(now - self.retention_s)
            if searches or events:
                self.log(f"search log: shop {shop!r}: pruned {searches} searches and {events} events "
                         f"older than {self.retention_s / 86400:g} days")
        except Exception as err:  # noqa: BLE001 - pruning is retried at the next hour
            self.log(f"search log: shop {shop!r}: prune failed ({type(err).__name__}: {err})")

    def run(self) -> None:
        while not self.stopping.wait(self.flush_s):
            self.flush()
        self.flush()
        for store in self.stores.values():  # the connections are this thread's
            store.close()

    def close(self) -> None:
        """Write what is queued and stop (the model's finalize: a graceful unload loses no row)."""
        if self.enabled:
            self.stopping.set()
            self.thread.join(timeout=10)


def search_row(row, query_id: str, ids: list[bytes], generation: int, arm: str, latency_ms: float) -> SearchRow:
    """The search log's row of one answered query row (a RowQuery, catalog/ranking/batch.py)."""
    text = row.relevance.text.strip()
    query = (f"like {' '.join(row.seed_ids)}" if row.kind == "recommend" else
             text or ("photo" if row.kind == "image" or row.kind == "text+image" else ""))
    filters = {name: value for name, value in (("categories", row.categories), ("price_min", row.price_min),
                                               ("price_max", row.price_max), ("in_stock", row.in_stock or None),
                                               ("excluded", len(row.exclude_ids) or None),
                                               ("offset", row.offset or None)) if value is not None}
    return SearchRow(query_id, time.time(), row.kind, query, filters, generation, arm, row.user,
                     [i.decode("utf-8", errors="replace") if isinstance(i, bytes) else str(i) for i in ids], latency_ms)
