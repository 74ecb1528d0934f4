"""How the project's SQLite files are opened: the catalog stores (catalog/sqlite/store.py) and the
search and event log (catalog/events.py)."""
from __future__ import annotations

import sqlite3
from pathlib import Path


def connect(path: Path, synchronous: str = "FULL") -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit), WAL, waiting up to 30 s for a
    lock; `synchronous` FULL puts each commit on disk before it returns, NORMAL survives a killed
    process (not a power cut)."""
    db = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(f"PRAGMA synchronous={synchronous}")
    db.execute("PRAGMA busy_timeout=30000")
    return db
