"""The embedded catalog store: one SQLite database (WAL) per shop, the source of truth for products,
their images, their embeddings per generation, and the update log.

Tables:
    products(id, title, fields JSON, image_sha, content_seq, seq, updated_at)
    images(sha, data)                         encoded image bytes, content-addressed (re-encoding source)
    vectors(generation, id, content_seq, text, image)   float32 embeddings made by generation N's encoders
    log(seq AUTOINCREMENT, op, id, at)        every change; seq is the SEQUENCE a write returns
    meta(key, value)                          write fence, closed field lists, encoder checksums, merchandising rules, synonyms
    lexical                                   FTS5 index over title, description, brand, SKU (catalog/ranking/lexical.py),
                                              kept by triggers in the products' own transactions
A write is one transaction (savepoint per request) committed with synchronous=FULL before it is
acknowledged, so an acknowledged write survives kill -9 of the server, the stubs or the machine's
power. Readers (the scorers) never block writers (WAL) and read a consistent snapshot in one read
transaction, so what they apply is exactly a prefix of the log.

`vectors.content_seq` must equal `products.content_seq` (the sequence of the last title or image
change) for the vectors to describe the product; update_fields changes neither.
"""
from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from productsearch.catalog.ranking import lexical
from productsearch.catalog.search_settings import SearchSettings
from productsearch.catalog.sqlite.connection import connect
from productsearch.catalog.records import RecordError, check_fields
from productsearch.catalog.rows import (DEFAULT_SHOP, ChangeSet, FencedWrite, ProductRow, ProductWrite, StoreError,  # noqa: F401
                                        UnknownProduct, UnknownShop, blob_vector, check_shop, vector_blob)

SCHEMA_VERSION = 2  # 2: the lexical index
FENCE_FILE = "write_generation.json"  # the write fence for shops created after it was set
SCHEMA = """
CREATE TABLE IF NOT EXISTS products (
  id TEXT PRIMARY KEY, title TEXT NOT NULL, fields TEXT NOT NULL, image_sha TEXT,
  content_seq INTEGER NOT NULL, seq INTEGER NOT NULL, updated_at REAL NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS images (sha TEXT PRIMARY KEY, data BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS vectors (
  generation INTEGER NOT NULL, id TEXT NOT NULL, content_seq INTEGER NOT NULL, text BLOB NOT NULL, image BLOB,
  PRIMARY KEY (generation, id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS log (seq INTEGER PRIMARY KEY AUTOINCREMENT, op TEXT NOT NULL, id TEXT NOT NULL, at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS vectors_by_id ON vectors(id);
CREATE INDEX IF NOT EXISTS products_by_image ON products(image_sha);
""" + lexical.SCHEMA


ROWS_QUERY = ("SELECT p.id, p.title, p.fields, v.text, v.image, p.updated_at FROM products p JOIN vectors v "
              "ON v.id = p.id AND v.generation = ? AND v.content_seq = p.content_seq ")


def row_of(pid: str, title: str, fields: str, text: bytes, image: bytes | None, updated: float) -> "ProductRow":
    return ProductRow(pid, title, json.loads(fields), blob_vector(text), blob_vector(image), updated)



class SqliteCatalog(SearchSettings):
    """The catalog of one shop in `<root>/<shop>.sqlite`. One connection per instance and thread
    (sqlite3 connections are not shared across threads)."""

    searched_in_place = False  # each scorer loads it into a live index and follows the log
    def __init__(self, root: Path, shop: str = DEFAULT_SHOP, create: bool = True):
        self.root, self.shop = Path(root), check_shop(shop)
        self.path = self.root / f"{shop}.sqlite"
        if not self.path.exists() and not create:
            raise UnknownShop(shop)
        self.root.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self.db.executescript(SCHEMA)  # idempotent; executescript commits by itself
        with self.transaction() as db:
            version = db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
            if version is None:
                db.execute("INSERT INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
            elif int(version[0]) == 1:  # written before the lexical index: fill it once
                db.execute(lexical.BACKFILL)
                db.execute("UPDATE meta SET value=? WHERE key='schema'", (str(SCHEMA_VERSION),))
            elif int(version[0]) != SCHEMA_VERSION:
                raise StoreError(f"{self.path} has schema {version[0]}, this code reads {SCHEMA_VERSION}")
            fence = self.root / FENCE_FILE
            if fence.exists() and db.execute("SELECT 1 FROM meta WHERE key='write_generation'").fetchone() is None:
                db.execute("INSERT INTO meta VALUES ('write_generation', ?)", (fence.read_text().strip(),))

    @property
    def db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = connect(self.path)  # synchronous=FULL: the commit is on disk when it returns
            lexical.register(db)
            self._local.db = db
        return db

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None

    @contextmanager
    def transaction(self, write: bool = True):
        """BEGIN IMMEDIATE (a writer) or BEGIN (a consistent read snapshot) ... COMMIT."""
        db = self.db
        db.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    @contextmanager
    def savepoint(self, db: sqlite3.Connection):
        """One request inside a batch's transaction: its changes or none of them."""
        db.execute("SAVEPOINT request")
        try:
            yield
        except BaseException:
            db.execute("ROLLBACK TO request")
            db.execute("RELEASE request")
            raise
        db.execute("RELEASE request")

    def committed(self, db: sqlite3.Connection, sequences: list[int]) -> list[int]:
        return sequences  # the SEQUENCEs of a committed request's writes, known inside the transaction here

    def prefetch(self, db: sqlite3.Connection, generation: int, ids: list[str]) -> None:
        """Nothing to read ahead: a local database answers each write's reads at once."""

    def meta(self, key: str, default=None):
        row = self.db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return default if row is None else json.loads(row[0])

    def set_meta(self, key: str, value, db: sqlite3.Connection | None = None) -> None:
        if db is None:
            with self.transaction() as db:
                self.set_meta(key, value, db)
            return
        db.execute("INSERT INTO meta VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                   (key, json.dumps(value)))

    def closed_values(self) -> dict[str, list[str]]:
        """field -> allowed values, for the fields this catalog keeps a closed list of."""
        return self.meta("closed_values", {})

    def _set_logged(self, key: str, value) -> int:
        """Set a meta value searches read (search_settings.py) with its log entry, in one transaction."""
        with self.transaction() as db:
            seq = self._log(db, key, "", time.time())
            self.set_meta(key, value, db)
        return seq

    def lexical(self, text: str, limit: int) -> list[tuple[str, float]]:
        """(id, BM25 score) of the best lexical matches for a shopper's text."""
        return lexical.search(self.db, text, limit)

    def write_generation(self) -> int | None:
        """The generation whose writers may write (None: any, until a deploy sets it)."""
        return self.meta("write_generation")

    def _log(self, db: sqlite3.Connection, op: str, pid: str, now: float) -> int:
        return db.execute("INSERT INTO log (op, id, at) VALUES (?, ?, ?)", (op, pid, now)).lastrowid

    def _fence(self, db: sqlite3.Connection, generation: int) -> None:
        fence = db.execute("SELECT value FROM meta WHERE key='write_generation'").fetchone()
        if fence is not None and json.loads(fence[0]) != generation:
            raise FencedWrite(f"catalog writes moved from generation {generation} to {json.loads(fence[0])} "
                              "during this request; send it again")

    def _drop_unused_image(self, db: sqlite3.Connection, sha: str | None) -> None:
        if sha and db.execute("SELECT 1 FROM products WHERE image_sha=? LIMIT 1", (sha,)).fetchone() is None:
            db.execute("DELETE FROM images WHERE sha=?", (sha,))

    def upsert_one(self, db: sqlite3.Connection, generation: int, write: ProductWrite, now: float) -> int:
        """Insert or replace one product (inside a transaction); returns its sequence."""
        self._fence(db, generation)
        check_fields(write.id, write.fields, self.closed_values())
        old = db.execute("SELECT title, image_sha FROM products WHERE id=?", (write.id,)).fetchone()
        if old is None and not write.title:
            raise RecordError(f"product {write.id!r}: TITLE is required for a new product")
        title = write.title or old[0]
        image_sha = old[1] if old is not None and write.image is None else None
        if write.image:
            image_sha = hashlib.sha256(write.image).hexdigest()
            db.execute("INSERT OR IGNORE INTO images VALUES (?, ?)", (image_sha, write.image))
        kept = db.execute("SELECT text, image FROM vectors WHERE generation=? AND id=?", (generation, write.id)).fetchone()
        text = vector_blob(write.text_vector) if write.text_vector is not None else (kept[0] if kept else None)
        image = vector_blob(write.image_vector) if write.image is not None else (kept[1] if kept else None)
        if text is None:
            raise StoreError(f"product {write.id!r}: no text vector for generation {generation} to keep")
        seq = self._log(db, "upsert", write.id, now)
        db.execute("INSERT INTO products VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET "
                   "title=excluded.title, fields=excluded.fields, image_sha=excluded.image_sha, "
                   "content_seq=excluded.content_seq, seq=excluded.seq, updated_at=excluded.updated_at",
                   (write.id, title, json.dumps(write.fields, ensure_ascii=False), image_sha, seq, seq, now))
        db.execute("DELETE FROM vectors WHERE id=? AND generation<>?", (write.id, generation))  # stale now
        db.execute("INSERT OR REPLACE INTO vectors VALUES (?, ?, ?, ?, ?)", (generation, write.id, seq, text, image))
        if old is not None and old[1] != image_sha:
            self._drop_unused_image(db, old[1])
        return seq

    def update_one(self, db: sqlite3.Connection, pid: str, fields: dict, now: float) -> int:
        """Merge `fields` into a product's fields (a null value removes the field); no re-encoding."""
        row = db.execute("SELECT fields FROM products WHERE id=?", (pid,)).fetchone()
        if row is None:
            raise UnknownProduct(f"unknown product id {pid!r} (update_fields changes existing products only)")
        merged = {**json.loads(row[0]), **fields}
        merged = {k: v for k, v in merged.items() if v is not None}
        check_fields(pid, merged, self.closed_values())
        seq = self._log(db, "update", pid, now)
        db.execute("UPDATE products SET fields=?, seq=?, updated_at=? WHERE id=?",
                   (json.dumps(merged, ensure_ascii=False), seq, now, pid))
        return seq

    def delete_one(self, db: sqlite3.Connection, pid: str, now: float) -> int:
        row = db.execute("SELECT image_sha FROM products WHERE id=?", (pid,)).fetchone()
        if row is None:
            raise UnknownProduct(f"unknown product id {pid!r} (nothing to delete)")
        seq = self._log(db, "delete", pid, now)
        db.execute("DELETE FROM products WHERE id=?", (pid,))
        db.execute("DELETE FROM vectors WHERE id=?", (pid,))
        self._drop_unused_image(db, row[0])
        return seq

    def put_vectors(self, generation: int, vectors: list[tuple[str, int, np.ndarray, np.ndarray | None]]) -> int:
        """Vectors by generation N's encoders for products as of their content_seq (a rebuild);
        a product changed or deleted since is skipped. Logged, so the scorers of N pick them up.
        Returns how many were stored."""
        stored = 0
        now = time.time()
        with self.transaction() as db:
            for pid, content_seq, text, image in vectors:
                current = db.execute("SELECT content_seq FROM products WHERE id=?", (pid,)).fetchone()
                if current is None or current[0] != content_seq:
                    continue
                db.execute("INSERT OR REPLACE INTO vectors VALUES (?, ?, ?, ?, ?)",
                           (generation, pid, content_seq, vector_blob(text), vector_blob(image)))
                self._log(db, "vectors", pid, now)
                stored += 1
        return stored

    def drop_generation(self, generation: int) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM vectors WHERE generation=?", (generation,))
            db.execute("DELETE FROM meta WHERE key=?", (f"encoders:{generation}",))

    # ------------------------------------------------------------------ reads

    def head(self) -> int:
        row = self.db.execute("SELECT seq FROM log ORDER BY seq DESC LIMIT 1").fetchone()
        return 0 if row is None else int(row[0])

    def count(self) -> int:
        return int(self.db.execute("SELECT count(*) FROM products").fetchone()[0])

    def _rows(self, db: sqlite3.Connection, generation: int, where: str = "", args: tuple = ()) -> list[ProductRow]:
        return [row_of(*r) for r in db.execute(ROWS_QUERY + where, (generation, *args))]

    def snapshot(self, generation: int, chunk: int = 20_000):
        """Every product with vectors for the generation, at one sequence (one read transaction),
        in ChangeSets of at most `chunk` rows (the last one also lists the products still
        missing vectors); every chunk carries the snapshot's head."""
        with self.transaction(write=False) as db:
            head = self.head()
            total = db.execute("SELECT count(*) FROM products").fetchone()[0]
            cursor = db.execute(ROWS_QUERY + "ORDER BY p.id", (generation,))
            loaded = 0
            while True:
                batch = [row_of(*r) for r in cursor.fetchmany(chunk)]
                loaded += len(batch)
                if len(batch) < chunk:
                    yield ChangeSet(head, batch, [], [] if total == loaded else self._missing(db, generation))
                    return
                yield ChangeSet(head, batch)

    def changes(self, generation: int, after: int, limit: int = 100_000) -> ChangeSet:
        """What changed after sequence `after`, as of the head (one read transaction); at most
        `limit` log entries at a time (the head is then the last of them)."""
        with self.transaction(write=False) as db:
            entries = db.execute("SELECT seq, id FROM log WHERE seq > ? ORDER BY seq LIMIT ?", (after, limit)).fetchall()
            if not entries:
                return ChangeSet(after)
            head = entries[-1][0] if len(entries) == limit else self.head()
            ids = sorted({pid for _, pid in entries})
            rows, present = [], set()
            for start in range(0, len(ids), 500):
                chunk = ids[start:start + 500]
                marks = ",".join("?" * len(chunk))
                rows += self._rows(db, generation, f"WHERE p.id IN ({marks})", tuple(chunk))
                present.update(r[0] for r in db.execute(f"SELECT id FROM products WHERE id IN ({marks})", chunk))
            found = {r.id for r in rows}
        return ChangeSet(head, rows, [pid for pid in ids if pid not in present],
                         [pid for pid in ids if pid in present and pid not in found])

    def _missing(self, db: sqlite3.Connection, generation: int) -> list[str]:
        return [r[0] for r in db.execute(
            "SELECT p.id FROM products p LEFT JOIN vectors v ON v.id = p.id AND v.generation = ? "
            "AND v.content_seq = p.content_seq WHERE v.id IS NULL ORDER BY p.id", (generation,))]

    def needing_vectors(self, generation: int, limit: int = 1000) -> list[tuple[str, int, str, bytes | None]]:
        """(id, content_seq, title, image bytes) of products without current vectors for the
        generation: what a rebuild encodes next."""
        return [(pid, seq, title, data) for pid, seq, title, data in self.db.execute(
            "SELECT p.id, p.content_seq, p.title, i.data FROM products p LEFT JOIN images i ON i.sha = p.image_sha "
            "LEFT JOIN vectors v ON v.id = p.id AND v.generation = ? AND v.content_seq = p.content_seq "
            "WHERE v.id IS NULL ORDER BY p.id LIMIT ?", (generation, limit))]

    def products_with_photos(self) -> list[dict]:
        """Every product that has a photo, by id: {id, title, fields, image (bytes)} (what adapt trains on)."""
        return [{"id": pid, "title": title, "fields": json.loads(fields), "image": data} for pid, title, fields, data in
                self.db.execute("SELECT p.id, p.title, p.fields, i.data FROM products p JOIN images i ON i.sha = p.image_sha "
                                "ORDER BY p.id")]

    def product(self, pid: str) -> dict | None:
        return self.products([pid]).get(pid)

    def products(self, pids: list[str]) -> dict[str, dict]:
        """The records of those of `pids` that exist, by id, read in one query (one snapshot)."""
        rows = self.db.execute("SELECT id, title, fields, image_sha, seq, updated_at FROM products WHERE id IN "
                               f"({','.join('?' * len(pids))})", list(pids)).fetchall() if pids else []
        return {row[0]: {"id": row[0], "title": row[1], "fields": json.loads(row[2]), "has_image": row[3] is not None,
                         "sequence": row[4], "updated_at": row[5]} for row in rows}

    def info(self) -> dict:
        """Sizes and counts for the catalog CLI."""
        db = self.db
        generations = {str(g): n for g, n in db.execute("SELECT generation, count(*) FROM vectors GROUP BY generation")}
        return {"shop": self.shop, "products": self.count(), "sequence": self.head(), "vectors": generations,
                "images": int(db.execute("SELECT count(*) FROM images").fetchone()[0]),
                "write_generation": self.write_generation(), "closed_values": self.closed_values(),
                "bytes": os.path.getsize(self.path) + (os.path.getsize(f"{self.path}-wal") if os.path.exists(f"{self.path}-wal") else 0)}
