"""Popular queries counted from a real SQLite search log (catalog/events.py's `searches` table,
written through EventStore as the scorer's search log writes it), their prefix matching, how they
mix with catalog completions, and the per-shop background refresher."""
from __future__ import annotations

import itertools
import time

import pytest

from productsearch.catalog.events import EventStore, SearchRow, events_path
from productsearch.catalog.ranking.popular_queries import MAX_QUERY_CHARS, PopularQueries, count_popular, normalise
from productsearch.catalog.ranking.suggestions import mix
from productsearch.runtime.popular_refresh import PopularRefresher
from tests.polling import wait_until

ids = itertools.count()
DAY = 86400.0


def row(query: str, user: str = "", kind: str = "text", results=("P-1",), at: float | None = None,
        arm: str = "control") -> SearchRow:
    return SearchRow(f"q{next(ids)}", time.time() if at is None else at, kind, query, {}, 1, arm, user,
                     list(results), 1.0)


@pytest.fixture
def log(tmp_path):
    store = EventStore(tmp_path / "default.sqlite", durable=False)
    yield store
    store.close()


def counted(log, min_searchers=2, window_days=30.0):
    return count_popular(log.db, time.time() - window_days * DAY, min_searchers)


def test_distinct_users_and_anonymous_searches(log):
    log.add_searches([row("Red Dress", "u1"), row("red  dress", "u2"), row("red dress ", "u1"),  # 2 users
                      row("odd private string", "u1"), row("odd private string", "u1"),  # 1 user, 2 searches
                      row("blue mug"), row("blue mug"), row("blue mug"),  # anonymous: each search counts
                      row("lone query")])
    assert counted(log) == {"blue mug": 3, "red dress": 2}
    assert counted(log, min_searchers=3) == {"blue mug": 3}
    assert counted(log, min_searchers=1)["odd private string"] == 1


def test_only_answered_text_searches_in_the_window(log):
    old = time.time() - 40 * DAY
    log.add_searches([row("lamp", "u1", kind="recommend"), row("lamp", "u2", kind="recommend"),
                      row("photo", "u1", kind="text+image"), row("photo", "u2", kind="text+image"),
                      row("photo", "u1", kind="image"), row("photo", "u2", kind="image"),
                      row("green scarf", "u1", kind="text+image"), row("green scarf", "u2", kind="text+image"),
                      row("old hat", "u1", at=old), row("old hat", "u2", at=old),
                      row("mirror", "u1", arm="shadow"), row("mirror", "u2", arm="shadow"),
                      row("ghost sofa", "u1", results=()), row("ghost sofa", "u2", results=()),
                      row("x" * (MAX_QUERY_CHARS + 1), "u1"), row("x" * (MAX_QUERY_CHARS + 1), "u2")])
    assert counted(log) == {"green scarf": 2}
    assert "old hat" in counted(log, window_days=50)


def test_a_query_whose_latest_search_found_nothing_drops_out(log):
    now = time.time()
    log.add_searches([row("teal kettle", "u1", at=now - 60), row("teal kettle", "u2", at=now - 50)])
    assert counted(log) == {"teal kettle": 2}
    log.add_searches([row("teal kettle", "u3", results=(), at=now - 10)])
    assert counted(log) == {}
    log.add_searches([row("teal kettle", "u4", at=now)])  # answers again
    assert counted(log) == {"teal kettle": 3}


def test_complete_prefixes_typos_and_chinese():
    popular = PopularQueries({"red dress": 9, "red denim jacket": 4, "red dot": 2, "连衣裙": 5, "连帽衫": 7,
                              "dress red": 3})
    assert popular.complete("Red  d", 5) == [("red dress", 9), ("red denim jacket", 4), ("red dot", 2)]
    assert popular.complete("red d", 2) == [("red dress", 9), ("red denim jacket", 4)]
    assert popular.complete("red ", 5)[0] == ("red dress", 9)
    assert popular.complete("red drss", 5) == [("red dress", 9)]  # one typo in a 4+ letter word
    assert popular.complete("red dx", 5) == []  # too short a word to correct
    assert popular.complete("连", 5) == [("连帽衫", 7), ("连衣裙", 5)]
    assert popular.complete("连衣", 5) == [("连衣裙", 5)]
    assert PopularQueries().complete("red", 5) == [] and normalise("  A\tB  c ") == "a b c"


def test_mix_popular_first_half_kept_for_the_catalog():
    popular = [("red dress", 9), ("red denim jacket", 4), ("red dot", 2)]
    catalog = [("red dress", 120), ("red dresses", 30), ("red duvet", 5)]
    assert mix(popular, catalog, 4) == [("red dress", 9), ("red denim jacket", 4), ("red dresses", 30),
                                        ("red duvet", 5)]
    assert mix(popular, catalog, 1) == [("red dress", 9)]
    assert mix(popular, [], 4) == popular  # the popular ones fill the catalog's empty places
    assert mix([], catalog, 2) == catalog[:2]
    assert mix(popular[:1], catalog, 10) == [("red dress", 9), ("red dresses", 30), ("red duvet", 5)]  # deduped


def test_refresher_keeps_shops_apart_and_recounts_in_the_background(tmp_path):
    url = f"sqlite://{tmp_path}"
    shop_a = EventStore(events_path(url, "shop-a"), durable=False)
    shop_b = EventStore(events_path(url, "shop-b"), durable=False)
    shop_a.add_searches([row("walnut desk", "u1"), row("walnut desk", "u2")])
    refresher = PopularRefresher(url, None, refresh_s=0.05)
    try:
        assert refresher.of("shop-a").complete("wal", 5) == [("walnut desk", 2)]  # the first count is inline
        assert refresher.of("shop-b").complete("wal", 5) == []
        shop_b.add_searches([row("walnut bowl", "u1"), row("walnut bowl", "u2")])
        wait_until(lambda: refresher.of("shop-b").complete("wal", 5) == [("walnut bowl", 2)], 10, "shop-b recounted")
        assert refresher.of("shop-a").complete("wal", 5) == [("walnut desk", 2)]
    finally:
        refresher.close()
        shop_a.close()
        shop_b.close()


def test_refresher_refuses_bad_settings(tmp_path):
    for settings in ({"refresh_s": 0}, {"window_days": -1}, {"min_searchers": 0}):
        with pytest.raises(ValueError, match="popular_min_searchers >= 1"):
            PopularRefresher(f"sqlite://{tmp_path}", None, **settings)
