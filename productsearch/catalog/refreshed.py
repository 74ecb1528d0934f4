"""Snapshots recounted off the request path: a value counted from a store (a shop's event
popularity, its popular queries, the words of its Milvus catalog) that a request reads as it was
last counted, so no request waits on the count once the first is done.

Rules (one `Refreshed` per value, `RefreshedByKey` for one per shop):
- the first read counts inline (its answer already holds the value);
- a read older than `refresh_s` is answered from the last snapshot at once and starts a recount in
  a background thread, one at a time per value (a read while one runs starts none);
- a failed count keeps the last snapshot (the empty one before any succeeded), says so through
  `log`, and is retried after `refresh_s` (a request never fails for it);
- `recount()` counts inline now, after any recount in flight (a setting the count reads changed);
- `close()` starts no more recounts and waits for the one in flight.
A snapshot is swapped in as one reference: a reader sees the old value or the new, never a mix.
"""
from __future__ import annotations

import threading
import time
from typing import Callable, Generic, Hashable, TypeVar

T = TypeVar("T")
K = TypeVar("K", bound=Hashable)


class Refreshed(Generic[T]):
    """One value of `count()`, recounted every `refresh_s` while it is read (the module's rules)."""

    def __init__(self, count: Callable[[], T], refresh_s: float, empty: T, name: str, log=print, clock=time.time):
        if not refresh_s > 0:
            raise ValueError(f"{name}: refresh_s must be above 0, got {refresh_s!r}")
        self.count, self.refresh_s, self.value, self.name, self.log, self.clock = count, refresh_s, empty, name, log, clock
        self.counted_at: float | None = None  # when the last count (good or failed) started
        self._counting = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False

    def read(self) -> T:
        """The last snapshot (counted now if there is none yet)."""
        if self.counted_at is None:
            with self._counting:
                if self.counted_at is None:
                    self._count()
        elif (not self._closed and self.clock() - self.counted_at >= self.refresh_s
              and self._counting.acquire(blocking=False)):
            self._thread = threading.Thread(target=self._behind, name=self.name, daemon=True)
            self._thread.start()
        return self.value

    def recount(self) -> T:
        """Count now, inline (after a recount in flight): what `count` reads has changed."""
        with self._counting:
            self._count()
        return self.value

    def settled(self) -> T:
        """The value once a background recount in flight has finished."""
        thread = self._thread
        if thread is not None:
            thread.join()
        return self.value

    def close(self) -> None:
        self._closed = True
        thread = self._thread
        if thread is not None:
            thread.join(timeout=10)

    def _behind(self) -> None:
        try:
            self._count()
        finally:
            self._counting.release()

    def _count(self) -> None:
        started = self.clock()
        try:
            self.value = self.count()
        except Exception as err:  # noqa: BLE001 - a busy or broken store: keep the last snapshot, say so
            self.log(f"{self.name}: not recounted, the last snapshot is kept ({type(err).__name__}: {err})")
        self.counted_at = started


class RefreshedByKey(Generic[K, T]):
    """A Refreshed `count(key)` per key (a shop), made on the key's first read."""

    def __init__(self, count: Callable[[K], T], refresh_s: float, empty: T, name: str, log=print, clock=time.time):
        if not refresh_s > 0:
            raise ValueError(f"{name}: refresh_s must be above 0, got {refresh_s!r}")
        self.count, self.refresh_s, self.empty, self.name, self.log, self.clock = count, refresh_s, empty, name, log, clock
        self.snapshots: dict[K, Refreshed[T]] = {}
        self._lock = threading.Lock()

    def of(self, key: K) -> Refreshed[T]:
        snapshot = self.snapshots.get(key)
        if snapshot is None:
            with self._lock:
                snapshot = self.snapshots.get(key)
                if snapshot is None:
                    snapshot = self.snapshots[key] = Refreshed(lambda: self.count(key), self.refresh_s, self.empty,
                                                               f"{self.name} of {key!r}", self.log, self.clock)
        return snapshot

    def read(self, key: K) -> T:
        return self.of(key).read()

    def close(self) -> None:
        with self._lock:
            snapshots = list(self.snapshots.values())
        for snapshot in snapshots:
            snapshot.close()
