"""Rate limits per key: a token bucket per key in a small SQLite table on this host
(`<key store>/rate_<hostname>.sqlite`), so every model instance and server on the host draws from
the same bucket. A request takes one token or is refused at once (no queueing); the bucket holds
at most `burst` tokens and refills at `rate` per second. Not durable on purpose (synchronous=OFF):
a crash forgets at most the last few takes.
"""
from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

from productsearch.catalog.sqlite.connection import connect


class RateLimiter:
    """Token buckets shared through one SQLite file (BEGIN IMMEDIATE serialises the takes)."""

    def __init__(self, folder: Path):
        self.path = Path(folder) / f"rate_{socket.gethostname()}.sqlite"
        self._lock = threading.Lock()
        self._db = connect(self.path, "OFF", busy_s=5.0)
        self._db.execute("CREATE TABLE IF NOT EXISTS buckets (key_id TEXT PRIMARY KEY, tokens REAL NOT NULL, at REAL NOT NULL)")

    def take(self, key_id: str, rate: float, burst: float, now: float | None = None) -> float:
        """0.0 when a token was taken; else the seconds until one is free (nothing taken)."""
        now = time.time() if now is None else now
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                row = db.execute("SELECT tokens, at FROM buckets WHERE key_id=?", (key_id,)).fetchone()
                tokens = burst if row is None else min(burst, row[0] + max(0.0, now - row[1]) * rate)
                wait = 0.0 if tokens >= 1.0 else (1.0 - tokens) / rate
                if not wait:
                    tokens -= 1.0
                db.execute("INSERT INTO buckets VALUES (?, ?, ?) ON CONFLICT(key_id) DO UPDATE SET "
                           "tokens=excluded.tokens, at=excluded.at", (key_id, tokens, now))
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
            return wait

    def close(self) -> None:
        self._db.close()
