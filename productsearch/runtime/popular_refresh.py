"""The `suggest` model's popular queries per shop (catalog/ranking/popular_queries.py), recounted
from each shop's search log in the background (catalog/refreshed.py), so a suggest request
never waits on the count: it reads the last snapshot, and one older than `popular_refresh_s`
starts a recount behind it. A shop's first request counts inline (its answer then already holds
the popular queries); a failed count keeps the previous snapshot and is retried after the
refresh interval. Snapshots are keyed by shop and each read from the shop's own log (events_path): one
shop's queries are never another's. Only shops whose catalog opened (known shops) are counted,
so no log database is made for a shop that does not exist.

Model parameters: `popular_refresh_s` (default 60), `popular_window_days` (30),
`popular_min_searchers` (2), `popular_queries` (on | off).
"""
from __future__ import annotations

import time
from pathlib import Path

from productsearch.catalog.events import EventStore, events_path
from productsearch.catalog.refreshed import RefreshedByKey
from productsearch.catalog.ranking.popular_queries import PopularQueries, count_popular

REFRESH_S = 60.0
WINDOW_DAYS = 30.0
MIN_SEARCHERS = 2


class PopularRefresher:
    """Per-shop PopularQueries, each recounted in the background once it is older than
    `refresh_s` (catalog/refreshed.py)."""

    def __init__(self, catalog_url: str, repository: Path | None, refresh_s: float = REFRESH_S,
                 window_days: float = WINDOW_DAYS, min_searchers: int = MIN_SEARCHERS, log=print):
        if refresh_s <= 0 or window_days <= 0 or min_searchers < 1:
            raise ValueError(f"popular queries need popular_refresh_s > 0, popular_window_days > 0 and "
                             f"popular_min_searchers >= 1 (got {refresh_s}, {window_days}, {min_searchers})")
        self.url, self.repository = catalog_url, repository
        self.window_s, self.min_searchers = window_days * 86400.0, min_searchers
        self.snapshots = RefreshedByKey(self.count, refresh_s, PopularQueries(), "suggest: popular queries", log)

    def of(self, shop: str) -> PopularQueries:
        """The shop's last snapshot; counted now when the shop has none yet."""
        return self.snapshots.read(shop)

    def count(self, shop: str) -> PopularQueries:
        store = EventStore(events_path(self.url, shop, self.repository), durable=False)
        try:  # opened and closed in the counting thread (a connection is its thread's)
            now = time.time()
            return PopularQueries(count_popular(store.db, now - self.window_s, self.min_searchers), now)
        finally:
            store.close()

    def close(self) -> None:
        self.snapshots.close()
