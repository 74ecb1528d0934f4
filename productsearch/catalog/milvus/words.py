"""A shop's catalog words on Milvus, for `suggest` and "did you mean". Milvus keeps each lexical
term only as a hash token (schema.py), so it has no vocabulary to complete a prefix from or to
correct a word against. What it does have is every product's title and fields: a snapshot reads
the shop's texts (a query iterator over its partition key, `title` and `fields` only, the
fields cut to the text ones the lexical analysis reads) into an in-memory SQLite catalog made by
the embedded store's own schema, triggers and analysis (catalog/sqlite/memory.py),
so suggestions.suggest, spelling.read_vocabulary and lexical.term_profile (did you mean, the hybrid
weight per query) run on it unchanged:
no second analyzer, no second index code.

Kept by catalog/refreshed.py: the first read of a shop builds it inline, after that it is rebuilt
in the background once older than `refresh_s` (default 60 s). So on Milvus a product written
becomes suggestable within about `refresh_s` (on the embedded store: in the next call); a
spelling correction never replaces a word some product holds now, as the query's words the
snapshot lacks are asked of Milvus itself before one is corrected (known_words).
Bounded: at most MAX_PRODUCTS products are read per shop (the rest do not suggest or correct;
`truncated` says so), ~1-2 KB of memory per product.
"""
from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass

from productsearch.catalog.ranking.lexical import CODE_FIELDS, LOCALIZED, TEXT_FIELDS, term_profile
from productsearch.catalog.ranking.spelling import Vocabulary, read_vocabulary
from productsearch.catalog.milvus.schema import term_token
from productsearch.catalog.sqlite.memory import memory_catalog

MAX_PRODUCTS = 200_000
REFRESH_S = 60.0


@dataclass
class CatalogWords:
    """One snapshot: `db` an in-memory catalog of the shop's texts, its spelling `vocabulary`."""

    db: sqlite3.Connection
    vocabulary: Vocabulary
    products: int
    truncated: bool


def text_fields(fields: dict) -> str:
    """The fields the lexical analysis reads (lexical.document), as JSON."""
    return json.dumps({name: value for name, value in (fields or {}).items()
                       if name in TEXT_FIELDS or name in CODE_FIELDS or LOCALIZED.fullmatch(name)}, ensure_ascii=False)


def read_words(store, collection: str | None = None, cap: int = MAX_PRODUCTS) -> CatalogWords:
    """The shop's words now, from `collection` (a generation's; None: the one taking writes)."""
    collection = collection or store.serving()
    products = []
    if collection is not None and store.client.has_collection(collection):
        for entity in store._scan(collection, ["id", "title", "fields"]):
            if len(products) >= cap:
                break
            products.append((entity["id"], entity["title"], text_fields(entity["fields"])))
    db = memory_catalog(products)
    return CatalogWords(db, read_vocabulary(db), len(products), len(products) >= cap)


def known_words(store, words: list[str], collection: str) -> set[str]:
    """Those of `words` (lexical query words) that some product of the shop holds now, asked of
    the `words` BM25 field in one search (a term's hash token matches only itself)."""
    if not words or not store.client.has_collection(collection):
        return set()
    hits = store.client.search(collection, [term_token(w) for w in words], anns_field="words_bm25", limit=1,
                               filter=f'shop == "{store.shop}"', output_fields=["id"])
    return {word for word, found in zip(words, hits) if len(found)}


def no_words() -> CatalogWords:
    """The snapshot before one was read (or when the first read failed): no words."""
    db = memory_catalog([])
    return CatalogWords(db, read_vocabulary(db), 0, False)


def words_profile(words: CatalogWords, store, collection: str):
    """profile(text) for "did you mean" and the hybrid weight per query (ranking/batch.py), for one
    batch: the snapshot's term profile, with the words it lacks asked of Milvus (a word a product
    written since holds is known, never corrected)."""
    profiles: dict[str, dict] = {}  # per text: one batch asks each at most once

    def profile(text: str) -> dict:
        if text not in profiles:
            stats = term_profile(words.db, text)
            missing = [w for w in stats["words"] if w not in stats["documents"]]
            for word in known_words(store, missing, collection) if missing else ():
                stats["documents"][word] = 1  # held by some product (how many: not needed to tell known words)
            profiles[text] = stats
        return profiles[text]
    return profile
