"""Keeps a live index of one shop's catalog current: loads it from the store, tails the store's log
(every `poll_s` in a background thread, and before each batch of searches), waits for a
MIN_SEQUENCE, and rebuilds the index in the background when it has drifted.

Catching up before each batch makes every search read its own writes by default on the embedded
store: a write acknowledged before a search was sent is in that search's answer. The background
thread keeps the index current while no searches come (and bounds the visible lag to `poll_s`).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import threading
import time
from collections import OrderedDict
from contextlib import contextmanager

from productsearch.catalog.index.live import LiveIndex
from productsearch.catalog.index.tail_pause import tailing_paused
from productsearch.catalog.ranking.batch import rank
from productsearch.catalog.ranking.event_popularity import event_popularity
from productsearch.catalog.ranking.lexical import term_profile
from productsearch.catalog.ranking.spelling import Vocabulary, read_vocabulary
from productsearch.catalog.sqlite.store import SqliteCatalog

POLL_S = 0.05
REBUILD_CHECK_S = 5.0
# Lexical results and term profiles kept per query until the catalog changes, the least recently
# used dropped first. It once emptied itself when full: with more distinct queries than places,
# every ~60 s all of them were lost at once and the scorer ran ~5x slower until it refilled (an
# uncached FTS5 query costs ~14 ms on the demo catalog; BENCHMARKS "API keys").
LEXICAL_CACHE_SIZE = 4096


def release_freed_memory() -> None:
    """Hand the heap pages freed by a dropped index back to the OS (glibc keeps them otherwise,
    so a rebuilt index would leave the process at twice its size); no-op without glibc."""
    try:
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class Lagging(RuntimeError):
    """The index has not reached the sequence a request asked for within the wait."""


class ShopFollower:
    """The store of one shop, and the index of it for `generation`. `make_index()` returns an
    empty LiveIndex with the scorer's settings; `popularity`: the shop's ShopPopularity (its
    shoppers' events as the popularity boost, when its setting opts in; None: never)."""

    in_place = False

    def __init__(self, store: SqliteCatalog, generation: int, make_index, log=print, poll_s: float = POLL_S,
                 popularity=None):
        self.store, self.generation, self.make_index, self.log = store, generation, make_index, log
        self.popularity = popularity
        self.poll_s = poll_s
        self.head = 0  # the store's head when last asked
        self.caught_up_at = time.time()  # when the index was last seen at the store's head
        self.builds: list[float] = []  # seconds of each (re)build not yet reported (the scorer's metrics)
        self.index = self.build()
        self._stop = threading.Event()
        self._catch_up_lock = threading.Lock()
        self._rebuilding = False
        self._lexical_lock = threading.Lock()
        self._lexical: OrderedDict[tuple, object] = OrderedDict()
        self._lexical_at = -1
        self._thread = threading.Thread(target=self._follow, name=f"follow-{store.shop}", daemon=True)
        self._thread.start()

    def build(self) -> LiveIndex:
        """A fresh index: the store's snapshot for the generation, then its method (IVF if large)."""
        started = time.monotonic()
        index = self.make_index()
        missing = 0
        for chunk in self.store.snapshot(self.generation):
            index.apply(chunk)
            missing += len(chunk.missing)
        index.choose_method()
        self.builds.append(time.monotonic() - started)
        note = f", {missing} products without generation {self.generation} vectors yet" if missing else ""
        self.log(f"catalog {self.store.shop!r}: {len(index)} products at sequence {index.applied}, "
                 f"{index.search_method} search ({time.monotonic() - started:.1f} s){note}")
        return index

    def catch_up(self) -> LiveIndex:
        """Apply every change the store has now; returns the (current) index."""
        with self._catch_up_lock:
            index = self.index
            while True:
                changes = self.store.changes(self.generation, index.applied)
                self.head = changes.head
                if changes.head <= index.applied:
                    self.caught_up_at = time.time()
                    return index
                if tailing_paused(self.store.shop):  # a test hook (tail_pause.py), off in production
                    return index
                index.apply(changes)

    def lexical(self, text: str, limit: int) -> list[tuple[str, float]]:
        """The store's lexical search, cached per (text, limit) until the index applies another
        change: shoppers repeat queries, and an FTS5 query costs ~1 us per matching product."""
        return self._cached(("hits", text, limit), lambda: self.store.lexical(text, limit))

    def lexical_profile(self, text: str) -> dict:
        """The store's term profile of a query (lexical.term_profile): the hybrid weight's evidence."""
        return self._cached(("profile", text), lambda: term_profile(self.store.db, text))

    def _cached(self, key: tuple, compute):
        applied = self.index.applied
        with self._lexical_lock:
            if self._lexical_at != applied:
                self._lexical.clear()
                self._lexical_at = applied
            value = self._lexical.get(key)
            if value is not None:
                self._lexical.move_to_end(key)
        if value is None:
            value = compute()
            with self._lexical_lock:
                if self._lexical_at == applied:
                    self._lexical[key] = value
                    while len(self._lexical) > LEXICAL_CACHE_SIZE:
                        self._lexical.popitem(last=False)
        return value

    def wait_for(self, sequence: int, timeout_s: float) -> LiveIndex:
        """The index once it has applied `sequence`; Lagging after `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        index = self.catch_up()
        while index.applied < sequence:
            if time.monotonic() >= deadline:
                raise Lagging(f"the catalog of shop {self.store.shop!r} is at sequence {index.applied}, the request "
                              f"asked for MIN_SEQUENCE {sequence} ({sequence - index.applied} behind after "
                              f"{timeout_s:g} s); retry")
            time.sleep(min(self.poll_s, max(deadline - time.monotonic(), 0)))
            index = self.catch_up()
        return index

    def beyond(self, sequence: int, wait_s: float) -> str | None:
        """Why `sequence` can never be reached by waiting (it is past the store's own head: no
        write was acknowledged with it), or None. Such a request is refused at once instead of
        holding its batch-mates for `wait_s`."""
        if sequence <= self.index.applied:
            return None
        self.catch_up()
        if sequence <= self.head:
            return None
        return (f"MIN_SEQUENCE {sequence} is beyond the catalog of shop {self.store.shop!r} (its last write has "
                f"sequence {self.head}): send a SEQUENCE a write returned")

    def vocabulary(self) -> Vocabulary:
        """The catalog's words (ranking/spelling.py), read when a query has an unknown word and
        kept until the index applies another change."""
        return self._cached(("vocabulary",), lambda: read_vocabulary(self.store.db))

    @property
    def dim(self) -> int | None:
        return self.index.dim

    @contextmanager
    def searching(self, rows: list, min_sequence: int, wait_s: float, exact_filter_max: int, clock=None):
        """(index, a Ranked or QueryError per row) once the index has applied `min_sequence`; the
        index is locked until the block ends (the caller reads ids and titles off its slots).
        `clock`: rank()'s stage timer."""
        index = self.wait_for(min_sequence, wait_s)
        rules, synonyms = self.store.rules(), self.store.synonyms()
        popularity = event_popularity(self.popularity, self.store, rows)
        with index.lock:
            yield index, rank(index, rows, self.generation, exact_filter_max, self.lexical, rules, clock,
                              self.lexical_profile, synonyms, self.vocabulary, popularity)

    # ------------------------------------------------------------------ background

    def lag(self) -> tuple[int, float]:
        """(sequences, seconds) behind the store: the head last seen minus what is applied, and
        the time since the index was last seen at the head (grows when following stops)."""
        return max(self.head - self.index.applied, 0), max(time.time() - self.caught_up_at, 0.0)

    def _follow(self) -> None:
        last_check = time.monotonic()
        while not self._stop.wait(self.poll_s):
            try:
                self.catch_up()
                if time.monotonic() - last_check >= REBUILD_CHECK_S:
                    last_check = time.monotonic()
                    if self.index.needs_rebuild and not self._rebuilding:
                        self._rebuild()
            except Exception as err:  # noqa: BLE001 - the store is busy or a disk hiccup: next poll
                self.log(f"catalog {self.store.shop!r}: following the log failed ({type(err).__name__}: {err})")

    def _rebuild(self) -> None:
        """A fresh index from the store (compaction, IVF retraining), caught up, then swapped in;
        searches keep using the old one meanwhile."""
        self._rebuilding = True
        try:
            fresh = self.build()
            with self._catch_up_lock:
                while True:
                    changes = self.store.changes(self.generation, fresh.applied)
                    if changes.head <= fresh.applied:
                        break
                    fresh.apply(changes)
                old, self.index = self.index, fresh
            del old
            release_freed_memory()
        finally:
            self._rebuilding = False

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
