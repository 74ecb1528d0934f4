"""The catalog's lexical index: SQLite FTS5 (BM25) over each product's title, description, brand and
SKU, kept in the same transaction as the product by triggers, and searched per query.

Why FTS5: the catalog already lives in SQLite, so its full-text engine keeps the lexical index
exactly as current and as durable as the products (no second store to keep in step). What FTS5
does not do for us is analysis, so the text is analysed here into two columns:
- `words`: the text as FTS5's unicode61 tokenizer splits it (case and accents folded), plus each
  SKU / product code with its punctuation removed ("SKU-0042-RD" -> "sku0042rd"), so an exact
  code matches as one rare term;
- `grams`: character n-grams, for typo tolerance and for Chinese, which has no spaces: each Latin
  word of 4+ letters as its trigrams, padded ("0sn", "sne", ..., "rs0"), so "sneekers" still
  shares most grams with "sneakers"; each run of CJK characters as its single characters and
  bigrams (连衣裙 -> 连 衣 裙 连衣 衣裙), the standard n-gram approach for Chinese search without
  a segmenter (no dictionary to ship, and bigrams recall what a segmenter's words would).
A query is analysed the same way into an OR of its terms - the grams only of its words that the
index does not know (a typo) and of its Chinese runs, so a clean query stays a few word terms
(grams match most of the catalog, and BM25 costs per matching product); BM25 (column weights 3
for words, 1 for grams) ranks the products that share the most rare terms first.

The FTS5 row id is a 63-bit hash of the product id (products has no rowid), so the triggers
find a product's row directly; a hash collision (~2^-63 per pair) would merge two rows.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import re
import sqlite3

WORDS_WEIGHT, GRAMS_WEIGHT = 3.0, 1.0
CODE_FIELDS = ("sku",)
TEXT_FIELDS = ("description", "brand", "sku")
# Localized texts a catalog may carry beside the served ones (title_en, description_zh, ...): a
# query in one language then matches a product served in another.
LOCALIZED = re.compile(r"(title|description)_[a-z]{2}")  # fullmatch
MAX_QUERY_TERMS = 64
JOINT_CAP = 1000  # products holding every query word: counted up to this many
# Query words that match most of a catalog and say nothing about the product (single letters,
# as in "t-shirt", and English function words): left out of the query, kept in the index.
STOPWORDS = frozenset("a an and by for in of on or the to with".split())

CJK_RUN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")
LATIN_WORD = re.compile(r"[^\W\d_]{4,}")
TOKEN = re.compile(r"\w+")

SCHEMA = """
CREATE VIRTUAL TABLE IF NOT EXISTS lexical USING fts5(id UNINDEXED, words, grams, tokenize='unicode61 remove_diacritics 2');
CREATE VIRTUAL TABLE IF NOT EXISTS lexical_terms USING fts5vocab(lexical, 'col');
CREATE TRIGGER IF NOT EXISTS lexical_insert AFTER INSERT ON products BEGIN
  INSERT INTO lexical(rowid, id, words, grams)
  VALUES (lexical_key(new.id), new.id, lexical_words(new.title, new.fields), lexical_grams(new.title, new.fields));
END;
CREATE TRIGGER IF NOT EXISTS lexical_update AFTER UPDATE OF title, fields ON products BEGIN
  DELETE FROM lexical WHERE rowid = lexical_key(old.id);
  INSERT INTO lexical(rowid, id, words, grams)
  VALUES (lexical_key(new.id), new.id, lexical_words(new.title, new.fields), lexical_grams(new.title, new.fields));
END;
CREATE TRIGGER IF NOT EXISTS lexical_delete AFTER DELETE ON products BEGIN
  DELETE FROM lexical WHERE rowid = lexical_key(old.id);
END;
"""
BACKFILL = ("INSERT INTO lexical(rowid, id, words, grams) SELECT lexical_key(id), id, lexical_words(title, fields), "
            "lexical_grams(title, fields) FROM products")


def key(pid: str) -> int:
    return int.from_bytes(hashlib.sha256(pid.encode()).digest()[:8], "big") >> 1


def document(title: str, fields_json: str) -> tuple[str, list[str]]:
    """(the searchable text, the product codes) of a product."""
    fields = json.loads(fields_json) if fields_json else {}
    names = list(TEXT_FIELDS) + sorted(name for name in fields if LOCALIZED.fullmatch(name))
    parts = [title] + [str(fields[name]) for name in names if isinstance(fields.get(name), (str, int, float))]
    codes = [str(fields[name]) for name in CODE_FIELDS if isinstance(fields.get(name), (str, int))]
    return " ".join(parts), codes


def compact(code: str) -> str:
    return "".join(TOKEN.findall(code.casefold()))


def words(title: str, fields_json: str) -> str:
    text, codes = document(title, fields_json)
    return " ".join([text] + [compact(c) for c in codes])


def iter_grams(text: str, query: bool = False):
    """A text's grams, one at a time (a query's are cut at MAX_QUERY_TERMS: none made past it);
    for a query, a CJK run of 2+ characters gives its bigrams only (single characters such as 色
    match most of a Chinese catalog)."""
    text = text.casefold()
    for word in LATIN_WORD.finditer(text):
        padded = f"0{word.group()}0"
        yield from (padded[i:i + 3] for i in range(len(padded) - 2))
    for match in CJK_RUN.finditer(text):
        run = match.group()
        bigrams = (run[i:i + 2] for i in range(len(run) - 1))
        yield from bigrams if (query and len(run) > 1) else itertools.chain(run, bigrams)


def grams_of(text: str, query: bool = False) -> list[str]:
    return list(iter_grams(text, query))


def first_distinct(items, limit: int) -> list:
    """The first `limit` distinct items, in order, reading no further than needed."""
    seen: dict = {}
    for item in items:
        if len(seen) >= limit:
            break
        seen.setdefault(item, None)
    return list(seen)


def grams(title: str, fields_json: str) -> str:
    return " ".join(grams_of(document(title, fields_json)[0]))


def register(db: sqlite3.Connection) -> None:
    """The analysis functions the triggers call; on every connection that writes products."""
    db.create_function("lexical_key", 1, key, deterministic=True)
    db.create_function("lexical_words", 2, words, deterministic=True)
    db.create_function("lexical_grams", 2, grams, deterministic=True)


def quoted(term: str) -> str:
    return '"' + term.replace('"', '""') + '"'


def known_words(db: sqlite3.Connection, words: list[str]) -> set[str]:
    if not words:
        return set()
    marks = ",".join("?" * len(words))
    return {row[0] for row in db.execute(f"SELECT term FROM lexical_terms WHERE col='words' AND term IN ({marks})", words)}


def match_expression(text: str, db: sqlite3.Connection | None = None) -> str | None:
    """The FTS5 query for a shopper's text: an OR of its words, codes and the grams of its unknown
    words and Chinese runs (of all its words without `db`); None if it has none."""
    folded = text.casefold()
    tokens = (t for t in map(re.Match.group, TOKEN.finditer(folded)) if not CJK_RUN.search(t) and t not in STOPWORDS
              and (len(t) > 1 or t.isdigit()))
    joined = [compact(text)] if len(TOKEN.findall(text)) > 1 and any(c.isdigit() for c in text) else []
    word_terms = first_distinct(itertools.chain(tokens, (t for t in joined if t)), MAX_QUERY_TERMS)
    known = known_words(db, word_terms) if db is not None else set()
    unknown = " ".join(w for w in LATIN_WORD.findall(folded) if w not in known)
    gram_terms = first_distinct(itertools.chain(iter_grams(unknown), iter_grams(" ".join(CJK_RUN.findall(folded)),
                                                                                  query=True)), MAX_QUERY_TERMS)
    parts = []
    if word_terms:
        parts.append("words : (" + " OR ".join(map(quoted, word_terms)) + ")")
    if gram_terms:
        parts.append("grams : (" + " OR ".join(map(quoted, gram_terms)) + ")")
    return " OR ".join(parts) or None


def query_words(text: str) -> list[str]:
    """The word terms of a query (no Chinese runs, stopwords or single letters), in order."""
    return list(dict.fromkeys(t for t in TOKEN.findall(text.casefold()) if not CJK_RUN.search(t)
                              and t not in STOPWORDS and (len(t) > 1 or t.isdigit())))[:MAX_QUERY_TERMS]


def term_profile(db: sqlite3.Connection, text: str, cap: int = JOINT_CAP) -> dict:
    """What the query's words are in this catalog (the hybrid weight's evidence, ranking/query_weight.py):
    {"words": its word terms, "documents": products per known word, "joint": products holding
    every word (counted up to `cap`; 0 when a word is unknown), "chinese": has a Chinese run}."""
    terms = query_words(text)
    documents = {}
    if terms:
        marks = ",".join("?" * len(terms))
        documents = dict(db.execute(f"SELECT term, doc FROM lexical_terms WHERE col='words' AND term IN ({marks})",
                                    terms).fetchall())
    joint = 0
    if terms and len(documents) == len(terms):
        expression = "words : (" + " AND ".join(map(quoted, terms)) + ")"
        joint = db.execute("SELECT count(*) FROM (SELECT rowid FROM lexical WHERE lexical MATCH ? LIMIT ?)",
                           (expression, cap)).fetchone()[0]
    return {"words": terms, "documents": documents, "joint": int(joint), "chinese": bool(CJK_RUN.search(text))}


def search(db: sqlite3.Connection, text: str, limit: int) -> list[tuple[str, float]]:
    """(product id, BM25 score > 0) of the `limit` best lexical matches, best first."""
    expression = match_expression(text, db)
    if expression is None or limit <= 0:
        return []
    # Ranked by row id, then the ids of the `limit` best only: carrying the id column through the
    # sort reads it for every matching row (~15% of the query on the demo catalog). Ties keep the
    # same order: the sort key and the scan are the same.
    top = db.execute(f"SELECT rowid, -bm25(lexical, 0, {WORDS_WEIGHT}, {GRAMS_WEIGHT}) AS score FROM lexical "
                     "WHERE lexical MATCH ? ORDER BY score DESC LIMIT ?", (expression, limit)).fetchall()
    if not top:
        return []
    marks = ",".join("?" * len(top))
    ids = dict(db.execute(f"SELECT rowid, id FROM lexical WHERE rowid IN ({marks})", [r for r, _ in top]))
    # Each statement reads its own snapshot: a product deleted by a write committed between the two
    # is gone (found by the catalog benchmark under writes; it failed the search with a KeyError)
    return [(ids[rowid], float(score)) for rowid, score in top if rowid in ids]
