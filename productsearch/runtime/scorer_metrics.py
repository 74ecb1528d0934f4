"""What the scorer counts and times (runtime/metrics.py names and serves it): queries by kind,
results, zero-result and paged queries, refusals by reason, its time per batch end to end and per
stage, and each shop's live index (products, applied sequence, lag, builds)."""
from __future__ import annotations

import time

from productsearch.runtime.metrics import UNKNOWN_SHOP, Metrics, StageClock


class ScorerMetrics:
    """One scorer instance's metrics; `shops` is the scorer's shop -> follower map (read at each flush)."""

    def __init__(self, ctx, shops: dict):
        self.metrics = Metrics.of_model(ctx)
        self.shops = shops
        self.metrics.set("productsearch_generation_serving", 1)
        self.metrics.collectors.append(self.collect_catalog)

    def batch(self, shop: str) -> "Batch":
        return Batch(self.metrics, self.metrics.shop(shop))

    def refused(self, shop: str | None, reason: str) -> None:
        self.metrics.add("productsearch_refused_searches_total", 1, shop=UNKNOWN_SHOP if shop is None else
                         self.metrics.shop(shop), reason=reason)

    def collect_catalog(self) -> None:
        """Gauges of each shop's live index (Milvus shops are searched in place: no index of ours)."""
        for shop, follower in list(self.shops.items()):
            if follower.in_place:
                continue
            labels = {"shop": self.metrics.shop(shop)}
            index = follower.index
            sequences, seconds = follower.lag()
            self.metrics.set("productsearch_catalog_products", len(index), **labels)
            self.metrics.set("productsearch_catalog_applied_sequence", index.applied, **labels)
            self.metrics.set("productsearch_catalog_lag_sequences", sequences, **labels)
            self.metrics.set("productsearch_catalog_lag_seconds", round(seconds, 3), **labels)
            while follower.builds:
                self.metrics.add("productsearch_index_builds_total", 1, **labels)
                self.metrics.observe("productsearch_index_build_seconds", follower.builds.pop(0), **labels)

    def close(self) -> None:
        self.metrics.set("productsearch_generation_serving", 0)
        self.metrics.close()


class Batch:
    """The scorer's work on one shop's rows in one execute(): counted when the block ends."""

    def __init__(self, metrics: Metrics, shop: str):
        self.metrics, self.shop = metrics, shop
        self.clock = StageClock()
        self.kinds: dict[str, int] = {}
        self.results = self.zero = self.paged = 0
        self.refusals: dict[str, int] = {}

    def __enter__(self) -> "Batch":
        self.started = time.perf_counter()
        return self

    def refused(self, reason: str) -> None:
        self.refusals[reason] = self.refusals.get(reason, 0) + 1

    def answered(self, rows: list, results: list) -> None:
        for row, ranked in zip(rows, results):
            self.kinds[row.kind] = self.kinds.get(row.kind, 0) + 1
            found = len(ranked.slots)
            self.results += found
            self.zero += found == 0
            self.paged += row.offset > 0

    def __exit__(self, *exc) -> None:
        m, shop = self.metrics, self.shop
        if not m.enabled:
            return
        for kind, count in self.kinds.items():
            m.add("productsearch_searches_total", count, shop=shop, kind=kind)
        m.add("productsearch_results_total", self.results, shop=shop)
        m.add("productsearch_zero_result_searches_total", self.zero, shop=shop)
        m.add("productsearch_paged_searches_total", self.paged, shop=shop)
        for reason, count in self.refusals.items():
            m.add("productsearch_refused_searches_total", count, shop=shop, reason=reason)
        if self.kinds:
            m.observe("productsearch_scorer_seconds", time.perf_counter() - self.started, shop=shop)
            for stage, seconds in self.clock.seconds.items():
                m.observe("productsearch_scorer_stage_seconds", seconds, shop=shop, stage=stage)
