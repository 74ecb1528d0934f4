"""Suggestions read from a real SQLite catalog store (FTS5 vocabulary) holding demo products."""
from __future__ import annotations

import json

import numpy as np
import pytest

from productsearch.catalog.ranking.lexical import STOPWORDS, TOKEN, words
from productsearch.catalog.ranking.suggestions import PHRASE_WORDS, fold, one_edit, suggest
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


def holding(store, phrase: str) -> int:
    """Products whose indexed words hold the phrase's words in a row, counted here from the records."""
    if not hasattr(store, "tokens"):
        store.tokens = [TOKEN.findall(fold(words(r["title"], json.dumps({k: v for k, v in r.items() if k != "title"}))))
                        for r in store.records]
    want = TOKEN.findall(fold(phrase))
    return sum(any(have[i:i + len(want)] == want for i in range(len(have))) for have in store.tokens)


def test_two_words_of_real_titles_complete_to_phrases_that_many_products_hold(store):
    titles = [r["title_en"] for r in store.records if len(r.get("title_en", "").split()) >= 4
              and "".join(r["title_en"].split()[:2]).isalpha()][:10]
    offered = 0
    for title in titles:
        first, second = title.casefold().split()[:2]
        prefix = f"{first} {second[:3]}"
        got = suggest(store.db, prefix, 20)
        assert got and all(s.startswith(prefix) for s, _ in got), prefix
        phrases = [(s, n) for s, n in got if len(s.split()) > 2]
        offered += bool(phrases)
        for phrase, count in phrases:
            assert len([w for w in TOKEN.findall(phrase) if len(w) > 1]) <= PHRASE_WORDS
            assert TOKEN.findall(phrase)[-1] not in STOPWORDS
            assert count == holding(store, phrase) > 0, phrase
    assert offered >= len(titles) // 2


@pytest.fixture
def small(tmp_path):
    store = SqliteCatalog(tmp_path, "default")
    titles = ["Zorblax quantum kettle in teal", "Zorblax quantum kettle large", "Zorblax quantum toaster",
              "Quillo desk lamp brass", "Quillo desk lamp brass", "Café crème mug"]
    bulk_insert(store, 1, [(f"S-{i}", t, {}, np.ones(4, dtype=np.float32), None) for i, t in enumerate(titles)])
    yield store
    store.close()


def test_phrases_alternate_with_words_most_products_first(small):
    assert suggest(small.db, "Zorblax qu", 20) == [  # "quillo": a word completion counts the word alone
        ("zorblax quantum", 3), ("zorblax quantum kettle", 2), ("zorblax quillo", 2),
        ("zorblax quantum kettle large", 1), ("zorblax quantum toaster", 1)]  # "... kettle in" ends on a stopword; "in teal" is a 5th word


def test_a_phrase_every_product_goes_on_from_gives_way_to_the_longer_one(small):
    assert suggest(small.db, "quillo d", 20) == [("quillo desk", 2), ("quillo desk lamp brass", 2)]


def test_phrases_fold_accents_and_need_the_catalogs_typed_words(small):
    assert suggest(small.db, "café cr", 20) == [("café creme", 1), ("café creme mug", 1)]  # typed words as typed
    assert [s for s, _ in suggest(small.db, "zorblux qu", 20) if len(s.split()) > 2] == []
