"""The audit trail: who (key id, never a secret) did which write, rule change or key operation,
when, to which shop, on which ids, at which catalog sequence. `<key store>/audit.sqlite`, its own
file so audit writes never make the key caches re-read; written before the write is answered.
"""
from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from productsearch.catalog.sqlite.connection import connect

MAX_IDS = 1000  # ids recorded per entry (a bigger request records its count and the first ones)


class AuditLog:
    def __init__(self, folder: Path):
        self.path = Path(folder) / "audit.sqlite"
        self._lock = threading.Lock()
        self._db = connect(self.path, "NORMAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS audit (at REAL NOT NULL, key_id TEXT NOT NULL, action TEXT NOT NULL,"
                         " shop TEXT, ids TEXT NOT NULL, count INTEGER NOT NULL, sequence INTEGER, detail TEXT)")
        self._db.execute("CREATE INDEX IF NOT EXISTS audit_shop_at ON audit (shop, at)")

    def record(self, entries: list[tuple[str, str, str | None, list[str], int | None, dict | None]]) -> None:
        """(key id, action, shop, ids, sequence, detail) each, in one transaction."""
        if not entries:
            return
        now = time.time()
        rows = [(now, key_id, action, shop, json.dumps(list(ids)[:MAX_IDS]), len(ids), sequence,
                 json.dumps(detail) if detail else None) for key_id, action, shop, ids, sequence, detail in entries]
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany("INSERT INTO audit VALUES (?,?,?,?,?,?,?,?)", rows)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def entries(self, shop: str | None = None, since: float = 0.0, limit: int = 1000) -> list[dict]:
        """Newest first."""
        sql = "SELECT * FROM audit WHERE at >= ?" + (" AND shop = ?" if shop else "") + " ORDER BY at DESC, rowid DESC LIMIT ?"
        params = (since, shop, limit) if shop else (since, limit)
        with self._lock:
            rows = self._db.execute(sql, params).fetchall()
        names = ("at", "key_id", "action", "shop", "ids", "count", "sequence", "detail")
        out = []
        for row in rows:
            entry = dict(zip(names, row))
            entry["ids"] = json.loads(entry["ids"])
            entry["detail"] = json.loads(entry["detail"]) if entry["detail"] else None
            out.append(entry)
        return out

    def close(self) -> None:
        self._db.close()
