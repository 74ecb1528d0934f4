"""The `suggest` model's popular queries per shop (catalog/ranking/popular_queries.py), recounted
from each shop's search log by one background thread, so a suggest request never waits on the
count: it reads the last snapshot. A shop's first request counts inline (its answer then already
holds the popular queries); a failed count keeps the previous snapshot and is retried at the next
refresh. Snapshots are keyed by shop and each read from the shop's own log (events_path): one
shop's queries are never another's. Only shops whose catalog opened (known shops) are counted,
so no log database is made for a shop that does not exist.

Model parameters: `popular_refresh_s` (default 60), `popular_window_days` (30),
`popular_min_searchers` (2), `popular_queries` (on | off).
"""
from __future__ import annotations

import threading
import time
from pathlib import Path

from productsearch.catalog.events import EventStore, events_path
from productsearch.catalog.ranking.popular_queries import PopularQueries, count_popular

REFRESH_S = 60.0
WINDOW_DAYS = 30.0
MIN_SEARCHERS = 2


class PopularRefresher:
    """Per-shop PopularQueries, kept current by one daemon thread."""

    def __init__(self, catalog_url: str, repository: Path | None, refresh_s: float = REFRESH_S,
                 window_days: float = WINDOW_DAYS, min_searchers: int = MIN_SEARCHERS, log=print):
        if refresh_s <= 0 or window_days <= 0 or min_searchers < 1:
            raise ValueError(f"popular queries need popular_refresh_s > 0, popular_window_days > 0 and "
                             f"popular_min_searchers >= 1 (got {refresh_s}, {window_days}, {min_searchers})")
        self.url, self.repository, self.refresh_s = catalog_url, repository, refresh_s
        self.window_s, self.min_searchers, self.log = window_days * 86400.0, min_searchers, log
        self.snapshots: dict[str, PopularQueries] = {}
        self.stores: dict[str, EventStore] = {}  # one connection per thread each (EventStore)
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.run, name="popular-queries", daemon=True)
        self.thread.start()

    def of(self, shop: str) -> PopularQueries:
        """The shop's last snapshot; counted now when the shop has none yet."""
        snapshot = self.snapshots.get(shop)
        if snapshot is None:
            snapshot = self.snapshots[shop] = self.count(shop) or PopularQueries()
        return snapshot

    def count(self, shop: str) -> PopularQueries | None:
        try:
            with self.lock:
                if shop not in self.stores:
                    self.stores[shop] = EventStore(events_path(self.url, shop, self.repository), durable=False)
                store = self.stores[shop]
            now = time.time()
            return PopularQueries(count_popular(store.db, now - self.window_s, self.min_searchers), now)
        except Exception as err:  # noqa: BLE001 - a busy or broken log: keep the last snapshot, say so
            self.log(f"suggest: shop {shop!r}: popular queries not recounted ({type(err).__name__}: {err})")
            return None

    def run(self) -> None:
        while not self.stopping.wait(self.refresh_s):
            for shop in list(self.snapshots):
                snapshot = self.count(shop)
                if snapshot is not None:
                    self.snapshots[shop] = snapshot  # one reference swap: readers see the old or the new
        self.close_connections()

    def close_connections(self) -> None:
        """Close the calling thread's connections (each thread's are its own)."""
        with self.lock:
            stores = list(self.stores.values())
        for store in stores:
            store.close()

    def close(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=10)
        self.close_connections()
