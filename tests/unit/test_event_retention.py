"""Retention of the search log and the shopper events: rows older than `retention_days` go,
newer ones stay, on the shop's real SQLite event store (catalog/events.py), pruned by the
search log's writer thread (runtime/search_log.py) at its first flush of a shop."""
from __future__ import annotations

import time

import pytest

from productsearch.catalog.events import EventRow, EventStore, SearchRow, events_path
from productsearch.runtime.search_log import SearchLog

DAY = 86400.0


def search(query_id: str, at: float) -> SearchRow:
    return SearchRow(query_id, at, "text", "red mug", {}, 1, "control", "u1", ["P1", "P2"], 3.0)


def test_prune_deletes_only_rows_older_than_the_cut(tmp_path):
    store = EventStore(tmp_path / "events.sqlite")
    now = time.time()
    store.add_searches([search("old", now - 100 * DAY), search("new", now - DAY)])
    store.add_events([EventRow("old", "click", "P1", 1, at=now - 100 * DAY), EventRow("new", "click", "P2", 2, at=now - DAY)])
    assert store.counts() == (2, 2)
    assert store.prune(now - 90 * DAY) == (1, 1)
    assert store.counts() == (1, 1) and set(store.results_of(["old", "new"])) == {"new"}
    assert store.prune(now - 90 * DAY) == (0, 0)  # nothing more to cut
    with pytest.raises(ValueError, match="position"):  # never dropped quietly as a "duplicate"
        store.add_events([EventRow("new", "purchase", "P2", None, at=now)])
    store.close()


def test_the_search_log_prunes_past_its_retention_when_it_first_writes_a_shop(tmp_path):
    url = f"sqlite://{tmp_path / 'catalog'}"
    path = events_path(url, "north", tmp_path)
    seeded = EventStore(path)
    now = time.time()
    seeded.add_searches([search("ancient", now - 10 * DAY), search("recent", now - 0.5 * DAY)])
    seeded.close()
    log = SearchLog(url, tmp_path, flush_s=0.05, retention_days=1, log=lambda *a: None)
    try:
        log.add("north", search("fresh", now))
        deadline = time.monotonic() + 10
        reader = EventStore(path, durable=False)
        while set(reader.results_of(["ancient", "recent", "fresh"])) != {"recent", "fresh"}:
            assert time.monotonic() < deadline, reader.results_of(["ancient", "recent", "fresh"])
            time.sleep(0.05)
        reader.close()
    finally:
        log.close()
