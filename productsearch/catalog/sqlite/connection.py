"""How the project's SQLite files are opened: the catalog stores (catalog/sqlite/store.py), the
search and event log (catalog/events.py), the key store, its audit trail and rate-limit buckets
(catalog/keys/)."""
from __future__ import annotations

import sqlite3
import time
from pathlib import Path

WAL_TRIES = 50  # x 0.1 s: switching a new file to WAL needs it alone, and a server's stubs open it together


def connect(path: Path, synchronous: str = "FULL", busy_s: float = 30.0) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit), WAL, waiting up to `busy_s` for
    a lock; `synchronous` FULL puts each commit on disk before it returns, NORMAL survives a killed
    process (not a power cut), OFF is for what may be lost (rate-limit buckets)."""
    db = sqlite3.connect(path, timeout=busy_s, isolation_level=None, check_same_thread=False)
    db.execute(f"PRAGMA busy_timeout={int(busy_s * 1000)}")
    use_wal(db)
    db.execute(f"PRAGMA synchronous={synchronous}")
    return db


def use_wal(db: sqlite3.Connection) -> None:
    """WAL mode (persistent in the file: a file already in WAL is left alone). Setting it takes the
    file exclusively and SQLite answers "database is locked" at once, without its busy wait, when
    other connections are open: retried for a few seconds."""
    for attempt in range(WAL_TRIES):
        try:
            if db.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as err:
            if "locked" not in str(err) or attempt == WAL_TRIES - 1:
                raise
            time.sleep(0.1)
