"""The scorer's searchers of shops it was asked for, bounded: at most `max_shops` kept, least
recently used first out, and any not asked for in `idle_s` closed (checked on each use).

Why: a follower holds its shop's catalog in memory and polls the store's log every 50 ms, so one
kept per shop ever searched would grow without end in a service of many shops. An evicted shop is
loaded again from the store on its next search (a rebuild: seconds for a large catalog). The
default shop is never evicted (the scorer loads it at start). Scorer parameters `max_shops`
(default 64) and `shop_idle_s` (default 900); the README's Operations section lists them.
"""
from __future__ import annotations

import time
from collections import OrderedDict
from typing import Callable

MAX_SHOPS = 64
SHOP_IDLE_S = 900.0


class ShopSearchers:
    """shop -> searcher (ShopFollower or MilvusShopSearch), opened by `open_searcher(shop)`."""

    def __init__(self, open_searcher: Callable[[str], object], max_shops: int = MAX_SHOPS, idle_s: float = SHOP_IDLE_S,
                 pinned: str = "default", clock: Callable[[], float] = time.monotonic, log=print):
        if max_shops < 1 or idle_s <= 0:
            raise ValueError(f"max_shops must be >= 1 and shop_idle_s > 0, got {max_shops} and {idle_s}")
        self.open_searcher, self.max_shops, self.idle_s = open_searcher, max_shops, idle_s
        self.pinned, self.clock, self.log = pinned, clock, log
        self.shops: OrderedDict[str, object] = OrderedDict()  # least recently used first (read by the metrics)
        self.used: dict[str, float] = {}

    def get(self, shop: str):
        """The shop's searcher, opened on first use (its errors propagate: nothing is kept)."""
        searcher = self.shops.get(shop)
        if searcher is None:
            searcher = self.open_searcher(shop)
            self.shops[shop] = searcher
        self.shops.move_to_end(shop)
        self.used[shop] = self.clock()
        self.evict(keep=shop)
        return searcher

    def evict(self, keep: str | None = None) -> None:
        """Close the idle ones, then the least recently used beyond `max_shops` (never `keep`,
        the one being handed out, nor the pinned one)."""
        now = self.clock()
        candidates = [s for s in self.shops if s not in (self.pinned, keep)]  # least recently used first
        for shop in [s for s in candidates if now - self.used[s] > self.idle_s]:
            candidates.remove(shop)
            self.drop(shop, f"idle {now - self.used[shop]:.0f} s")
        while len(self.shops) > self.max_shops and candidates:
            self.drop(candidates.pop(0), f"least recently used of more than {self.max_shops} shops")

    def drop(self, shop: str, why: str) -> None:
        searcher = self.shops.pop(shop)
        self.used.pop(shop, None)
        searcher.close()
        self.log(f"catalog {shop!r}: released ({why}); loaded again on its next search")

    def close(self) -> None:
        for searcher in self.shops.values():
            searcher.close()
        self.shops.clear()
