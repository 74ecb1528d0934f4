"""An in-memory catalog in the embedded store's own schema: a read-only snapshot of another
store's product texts (catalog/milvus/words.py) that the lexical readers read unchanged."""
from __future__ import annotations

import sqlite3

from productsearch.catalog.ranking import lexical
from productsearch.catalog.sqlite.store import SCHEMA


def memory_catalog(products) -> sqlite3.Connection:
    """An in-memory catalog of `products` ((id, title, fields JSON) each) in this store's own schema,
    its lexical index filled by the same triggers and analysis, so what reads a shop's lexical
    index (suggestions, spelling, term profiles) reads it unchanged: a snapshot of another store's
    texts (catalog/milvus/words.py). Read-only once made; shareable across threads."""
    db = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
    lexical.register(db)
    db.executescript(SCHEMA)
    db.execute("BEGIN")
    db.executemany("INSERT OR IGNORE INTO products VALUES (?, ?, ?, NULL, 0, 0, 0)", products)
    db.execute("COMMIT")
    return db
