"""Bulk transfers into and out of a SQLite catalog: a copy of a shop's catalog (all of it or some
products) into an empty store - a private catalog for a test or a benchmark - and a bulk insert
of new products with their vectors (an import, a synthetic benchmark catalog).
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from productsearch.catalog.rows import StoreError, vector_blob
from productsearch.catalog.sqlite.store import SqliteCatalog


def copy_catalog(source: SqliteCatalog, root: Path, ids: list[str] | None = None) -> SqliteCatalog:
    """`source`'s products (all, or `ids`), with their images and vectors, into an empty
    store under `root` (a private catalog for a test or a benchmark), logged anew there."""
    target = SqliteCatalog(root, source.shop)
    target.db.execute("ATTACH DATABASE ? AS src", (str(source.path),))
    try:
        with target.transaction() as db:
            if db.execute("SELECT count(*) FROM products").fetchone()[0]:
                raise StoreError(f"{target.path} is not empty")
            chosen = ids if ids is not None else [r[0] for r in db.execute("SELECT id FROM src.products ORDER BY id")]
            now = time.time()
            for pid in chosen:
                row = db.execute("SELECT content_seq FROM src.products WHERE id=?", (pid,)).fetchone()
                if row is None:
                    raise StoreError(f"{source.path} has no product {pid!r}")
                seq = target._log(db, "upsert", pid, now)
                db.execute("INSERT INTO products SELECT id, title, fields, image_sha, ?, ?, updated_at FROM src.products "
                           "WHERE id=?", (seq, seq, pid))
                db.execute("INSERT OR IGNORE INTO images SELECT i.sha, i.data FROM src.images i JOIN src.products p "
                           "ON p.image_sha = i.sha WHERE p.id=?", (pid,))
                db.execute("INSERT INTO vectors SELECT generation, id, ?, text, image FROM src.vectors "
                           "WHERE id=? AND content_seq=?", (seq, pid, row[0]))
            db.execute("INSERT OR REPLACE INTO meta SELECT key, value FROM src.meta WHERE key LIKE 'encoders:%' "
                       "OR key='closed_values'")
    finally:
        target.db.execute("DETACH DATABASE src")
    return target


def bulk_insert(store: SqliteCatalog, generation: int, rows: list[tuple[str, str, dict, np.ndarray, np.ndarray | None]]) -> int:
    """New products (id, title, fields, text vector, image vector) in one transaction, with
    executemany: an import into a store, or a synthetic benchmark catalog. Images are not
    stored (the products cannot be re-encoded). Returns the last sequence."""
    now = time.time()
    with store.transaction() as db:
        first = db.execute("SELECT coalesce(max(seq), 0) FROM log").fetchone()[0] + 1
        db.executemany("INSERT INTO log (seq, op, id, at) VALUES (?, 'upsert', ?, ?)",
                       [(first + i, row[0], now) for i, row in enumerate(rows)])
        db.executemany("INSERT INTO products VALUES (?, ?, ?, NULL, ?, ?, ?)",
                       [(pid, title, json.dumps(fields), first + i, first + i, now)
                        for i, (pid, title, fields, _, _) in enumerate(rows)])
        db.executemany("INSERT INTO vectors VALUES (?, ?, ?, ?, ?)",
                       [(generation, row[0], first + i, vector_blob(row[3]), vector_blob(row[4]))
                        for i, row in enumerate(rows)])
    return first + len(rows) - 1
