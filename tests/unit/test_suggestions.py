"""Suggestions read from a real SQLite catalog store (FTS5 vocabulary) holding demo products."""
from __future__ import annotations

import json

import numpy as np
import pytest

from productsearch.catalog.ranking.suggestions import one_edit, suggest
from productsearch.catalog.sqlite.bulk import bulk_insert
from productsearch.catalog.sqlite.store import SqliteCatalog
from tests.conftest import DEMO_CATALOG


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    if not DEMO_CATALOG.exists():
        pytest.skip("demo catalog not built")
    records = [json.loads(line) for line in DEMO_CATALOG.read_text().splitlines()[:600]]
    store = SqliteCatalog(tmp_path_factory.mktemp("suggest"), "default")
    vector = np.ones(4, dtype=np.float32)
    rows = [(r["id"], r["title"], {k: v for k, v in r.items() if k not in ("id", "title", "image")}, vector, None)
            for r in records]
    bulk_insert(store, 1, rows)
    store.records = records
    yield store
    store.close()


def test_prefixes_of_real_titles_complete_to_words_of_the_catalog(store):
    latin = [r["title_en"] for r in store.records if r.get("title_en")][:20]
    for title in latin:
        word = title.split()[0]
        prefix = word[:3]
        got = suggest(store.db, prefix, 5)
        assert got, prefix
        assert all(s.startswith(prefix.casefold()) and n > 0 for s, n in got)
        assert word.casefold() in [s for s, _ in suggest(store.db, word[:-1] if len(word) > 1 else word, 50)] or len(word) < 2


def test_counts_are_the_products_holding_the_word(store):
    (suggestion, count), *_ = suggest(store.db, "nordi", 1)
    holding = sum("nordia" in json.dumps(r, ensure_ascii=False).casefold() for r in store.records)
    assert suggestion == "nordia" and 0 < count <= holding


def test_one_typo_prefix_is_corrected():
    assert one_edit("sneek", "sneak") and one_edit("snek", "sneak"[:4]) and not one_edit("sxyz", "sneak")


def test_one_typo_latin_prefix(store):
    assert "nordia" in [s for s, _ in suggest(store.db, "nirdia", 5)]


def test_words_before_the_partial_one_are_kept(store):
    got = suggest(store.db, "red pla", 5)
    assert got and all(s.startswith("red pla") for s, _ in got)


def test_chinese_character_prefix(store):
    got = suggest(store.db, "红", 5)
    assert got and all(s.startswith("红") and len(s) == 2 for s, _ in got)
    assert suggest(store.db, "连衣", 5) or suggest(store.db, "红色", 5)


def test_nothing_for_an_unknown_prefix(store):
    assert suggest(store.db, "qqqqzzz", 5) == []
