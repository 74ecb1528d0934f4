"""The refreshed snapshot (catalog/refreshed.py) that event popularity, popular queries and the
Milvus catalog words share: the first read counts inline, a stale read is answered at once and
recounted behind it (one recount at a time), a failure keeps the last snapshot, `recount` is
inline, `close` starts no more. The counts here are plain functions: what they read is each
user's own test (test_event_popularity, test_popular_queries, test_milvus_words)."""
from __future__ import annotations

import threading

import pytest

from productsearch.catalog.refreshed import Refreshed, RefreshedByKey


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Counter:
    """count() returns 1, 2, 3...; `gate` (when set) holds a count until it is opened; `fail`
    makes the next counts raise."""

    def __init__(self):
        self.calls, self.fail = 0, False
        self.gate: threading.Event | None = None
        self.started = threading.Event()

    def __call__(self) -> int:
        self.started.set()
        if self.gate is not None:
            assert self.gate.wait(10)
        if self.fail:
            raise OSError("store unreadable")
        self.calls += 1
        return self.calls


def test_first_read_inline_stale_read_answered_at_once_and_recounted_behind_it():
    clock, count, logged = Clock(), Counter(), []
    value = Refreshed(count, 10, 0, "words", logged.append, clock)
    assert value.read() == 1  # inline: the first answer holds the count
    clock.now += 5
    assert value.read() == 1 and count.calls == 1  # fresh: no count
    clock.now += 6
    count.gate = threading.Event()
    assert value.read() == 1  # stale: the old snapshot at once, the count runs behind it
    assert count.started.wait(10)
    assert value.read() == 1 and value.read() == 1  # a recount in flight: no second one starts
    count.gate.set()
    assert value.settled() == 2 and count.calls == 2
    assert value.read() == 2 and value.counted_at == clock.now and not logged


def test_a_failed_count_keeps_the_last_snapshot_says_so_and_is_retried_after_refresh_s():
    clock, count, logged = Clock(), Counter(), []
    value = Refreshed(count, 10, 0, "words of 'shop-a'", logged.append, clock)
    assert value.read() == 1
    count.fail = True
    clock.now += 10
    value.read()
    assert value.settled() == 1
    assert logged == ["words of 'shop-a': not recounted, the last snapshot is kept (OSError: store unreadable)"]
    assert value.read() == 1 and len(logged) == 1  # not retried before refresh_s
    count.fail = False
    clock.now += 10
    value.read()
    assert value.settled() == 2


def test_a_first_count_that_fails_serves_the_empty_snapshot():
    count, logged = Counter(), []
    count.fail = True
    assert Refreshed(count, 10, "empty", "words", logged.append).read() == "empty" and len(logged) == 1


def test_recount_is_inline_and_waits_for_one_in_flight():
    clock, count = Clock(), Counter()
    value = Refreshed(count, 10, 0, "words", print, clock)
    value.read()
    clock.now += 10
    count.gate = threading.Event()
    value.read()
    assert count.started.wait(10)
    threading.Timer(0.05, count.gate.set).start()
    assert value.recount() == 3  # the one in flight (2), then its own


def test_close_starts_no_more_recounts():
    clock, count = Clock(), Counter()
    value = Refreshed(count, 10, 0, "words", print, clock)
    value.read()
    value.close()
    clock.now += 100
    assert value.read() == 1 and value.settled() == 1 and count.calls == 1


def test_keys_are_counted_apart_and_refresh_s_is_checked():
    counted = []
    by_shop = RefreshedByKey(lambda shop: counted.append(shop) or f"words of {shop}", 10, "", "words")
    assert by_shop.read("shop-a") == "words of shop-a" and by_shop.read("shop-b") == "words of shop-b"
    assert by_shop.read("shop-a") == "words of shop-a" and counted == ["shop-a", "shop-b"]
    by_shop.close()
    for bad in (0, -1, float("nan")):
        with pytest.raises(ValueError, match="refresh_s must be above 0"):
            Refreshed(lambda: 1, bad, 0, "words")
