"""The shop's search log and shopper events: two tables in the shop's store, what analytics and
experiments read.

Tables (in the shop's own SQLite database `<root>/<shop>.sqlite` beside its catalog; on a Milvus
deployment, which has no table store of ours, in `<key store folder>/events/<shop>.sqlite`, the
folder the replicas share):
    searches(query_id, at, kind, query, filters JSON, generation, arm, user, results JSON,
             latency_ms, zero_result)       one row per answered search / recommend row
    events(query_id, event, product_id, position, value, user, at)
                                            one row per (query id, event, product): idempotent
Searches are written by the scorer off the request path in batches (runtime/search_log.py) with
synchronous=NORMAL: a committed batch survives kill -9 of the server (the WAL is in the OS), only
a power loss can take the last ones. Events are acknowledged only once committed with
synchronous=FULL (fsync), like catalog writes. Rows older than the retention are pruned
(`prune`). The catalog's own tables and its log are never touched here.
"""
from __future__ import annotations

import json
import sqlite3
import threading
from dataclasses import dataclass, field
from pathlib import Path

from productsearch.catalog.keys.store import keys_dir
from productsearch.catalog.sqlite.connection import connect

EVENT_KINDS = ("click", "add_to_cart", "purchase")
RETENTION_DAYS = 90.0
EVENTS_DIR = "events"  # beside the key store, for stores that are not SQLite folders
SCHEMA = """
CREATE TABLE IF NOT EXISTS searches (
  query_id TEXT PRIMARY KEY, at REAL NOT NULL, kind TEXT NOT NULL, query TEXT NOT NULL, filters TEXT NOT NULL,
  generation INTEGER NOT NULL, arm TEXT NOT NULL, user TEXT NOT NULL, results TEXT NOT NULL,
  latency_ms REAL NOT NULL, zero_result INTEGER NOT NULL) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS searches_by_time ON searches(at);
CREATE TABLE IF NOT EXISTS events (
  query_id TEXT NOT NULL, event TEXT NOT NULL, product_id TEXT NOT NULL, position INTEGER NOT NULL,
  value REAL NOT NULL, user TEXT NOT NULL, at REAL NOT NULL,
  PRIMARY KEY (query_id, event, product_id)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS events_by_time ON events(at);
"""


@dataclass
class SearchRow:
    """One answered query row, as the search log keeps it."""

    query_id: str
    at: float
    kind: str  # text, image, text+image, recommend, embedding
    query: str  # the words, "photo" for a photo alone, the seed ids of a recommendation
    filters: dict
    generation: int
    arm: str
    user: str
    results: list[str]
    latency_ms: float

    def values(self) -> tuple:
        return (self.query_id, self.at, self.kind, self.query, json.dumps(self.filters, ensure_ascii=False),
                self.generation, self.arm, self.user, json.dumps(self.results, ensure_ascii=False),
                round(self.latency_ms, 3), int(not self.results))


@dataclass
class EventRow:
    query_id: str
    event: str
    product_id: str
    position: int | None = None  # 1-based; None: the product's rank in the answer
    value: float = 0.0
    user: str = ""
    at: float = 0.0
    status: str = field(default="", compare=False)


def events_path(catalog_url: str, shop: str, repository: Path | None = None) -> Path:
    """The database that holds `shop`'s searches and events (see the module's docstring)."""
    if catalog_url.startswith("sqlite://"):
        return Path(catalog_url[len("sqlite://"):]) / f"{shop}.sqlite"
    if "://" not in catalog_url:
        return Path(catalog_url) / f"{shop}.sqlite"
    return keys_dir(catalog_url, repository) / EVENTS_DIR / f"{shop}.sqlite"


class EventStore:
    """One shop's searches and events; one connection per thread. `durable`: commit with fsync
    (events), else with synchronous=NORMAL (the search log: survives a killed process)."""

    def __init__(self, path: Path, durable: bool = True):
        self.path, self.durable = Path(path), durable
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self.db.executescript(SCHEMA)

    @property
    def db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = self._local.db = connect(self.path, "FULL" if self.durable else "NORMAL")
        return db

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None

    def add_searches(self, rows: list[SearchRow]) -> None:
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany("INSERT OR IGNORE INTO searches VALUES (?,?,?,?,?,?,?,?,?,?,?)", [r.values() for r in rows])
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def results_of(self, query_ids: list[str]) -> dict[str, list[str]]:
        """query id -> the product ids its answer showed, for the ids the log has."""
        found: dict[str, list[str]] = {}
        unique = sorted(set(query_ids))
        for start in range(0, len(unique), 500):
            chunk = unique[start:start + 500]
            marks = ",".join("?" * len(chunk))
            for qid, results in self.db.execute(f"SELECT query_id, results FROM searches WHERE query_id IN ({marks})",
                                                chunk):
                found[qid] = json.loads(results)
        return found

    def add_events(self, rows: list[EventRow]) -> None:
        """Insert rows whose status is still "" (checked ones): one transaction, committed before
        return; sets each such row's status to "recorded" or "duplicate" (already recorded)."""
        pending = [r for r in rows if not r.status]
        if not pending:
            return
        if any(r.position is None for r in pending):  # OR IGNORE would drop it silently as a "duplicate"
            raise ValueError("an event row needs its position resolved (the product's rank in the answer)")
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            for row in pending:
                cursor = db.execute("INSERT OR IGNORE INTO events VALUES (?,?,?,?,?,?,?)",
                                    (row.query_id, row.event, row.product_id, row.position, row.value, row.user, row.at))
                row.status = "recorded" if cursor.rowcount else "duplicate"
        except BaseException:
            db.execute("ROLLBACK")
            for row in pending:
                row.status = ""
            raise
        db.execute("COMMIT")

    def prune(self, before: float) -> tuple[int, int]:
        """Delete searches and events older than `before` (seconds since the epoch): (searches, events)."""
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            searches = db.execute("DELETE FROM searches WHERE at < ?", (before,)).rowcount
            events = db.execute("DELETE FROM events WHERE at < ?", (before,)).rowcount
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        return searches, events

    def counts(self) -> tuple[int, int]:
        return (self.db.execute("SELECT count(*) FROM searches").fetchone()[0],
                self.db.execute("SELECT count(*) FROM events").fetchone()[0])
