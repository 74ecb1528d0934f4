"""A shop's synonyms (checked, expanded on the lexical side, changed while serving and shown in
EXPLAIN) and "did you mean" (an unknown word corrected to a close known one, searched when the
query's words find nothing; a known word, a synonym and Chinese never corrected), on a real SQLite
catalog store and its FTS5 vocabulary, ranked in process by the scorer."""
import pytest

from productsearch.catalog.ranking import spelling, synonyms
from productsearch.catalog.store import catalog_url, open_store
from tests.unit.test_query_understanding import ask, catalog  # noqa: F401 - the module's catalog fixture


def test_both_json_forms_are_stored_normalized():
    stored = synonyms.check_synonyms([["Sneakers", "trainers", "运动鞋"], {"from": "Tee", "to": "T-Shirt"},
                                      {"from": "hoody", "to": ["hoodie", "sweatshirt"]}])
    assert stored == [{"words": ["sneakers", "trainers", "运动鞋"]}, {"from": "tee", "to": ["t shirt"]},
                      {"from": "hoody", "to": ["hoodie", "sweatshirt"]}]


@pytest.mark.parametrize("entries, message", [
    ({"sneakers": "trainers"}, "must be a JSON list"),
    (["sneakers"], "synonym 0 is neither"),
    ([["sneakers"]], "needs 2 to 32 phrases, got 1"),
    ([["sneakers", 3]], "synonym 0, phrase 1 must be a non-empty string"),
    ([["sneakers", "Sneakers!"]], "all the same after normalization"),
    ([{"from": "tee"}], 'a one-way entry is {"from": phrase'),
    ([{"from": "tee", "to": "t-shirt", "both": True}], "got keys ['both', 'from', 'to']"),
    ([{"from": "", "to": "t-shirt"}], "synonym 0: from must be a non-empty string"),
    ([{"from": "tee", "to": []}], "to needs 1 to 32 phrases, got 0"),
    ([{"from": "tee", "to": "TEE"}], "to names only the from phrase 'tee'"),
])
def test_bad_entries_are_refused_with_the_reason(entries, message):
    with pytest.raises(synonyms.SynonymError, match=None) as err:
        synonyms.check_synonyms(entries)
    assert message in str(err.value)


def test_expansion_is_multi_way_one_way_and_finds_chinese_inside_a_run():
    stored = synonyms.check_synonyms([["sneakers", "trainers", "运动鞋"], {"from": "tee", "to": "t-shirt"}])
    assert synonyms.expansion(stored, "White Trainers") == ["sneakers", "运动鞋"]
    assert synonyms.expansion(stored, "红色运动鞋") == ["sneakers", "trainers"]
    assert synonyms.expansion(stored, "red tee") == ["t shirt"]
    assert synonyms.expansion(stored, "red t-shirt") == []  # one-way: t-shirt does not find tees
    assert synonyms.expansion(stored, "teeth whitener") == []  # whole words only
    assert synonyms.readings(stored, "white trainers") == ["white sneakers", "white 运动鞋"]


@pytest.mark.parametrize("a, b, d", [("zorblx", "zorblax", 1), ("ketlte", "kettle", 1), ("snekaers", "sneakers", 1),
                                     ("dress", "dress", 0), ("abcdef", "uvwxyz", 4)])  # past the limit 3: 4
def test_edit_distance_counts_adjacent_swaps_as_one(a, b, d):
    assert spelling.distance(a, b, 3) == d


def test_synonyms_changed_while_serving_change_the_next_search(catalog):  # noqa: F811
    model, root, _, embeddings = catalog
    store = open_store(catalog_url(root))
    try:
        before = ask(model, "flibbertigibbet", embeddings[0])
        assert "ZX1" not in before.ids[:1]
        store.set_synonyms(synonyms.check_synonyms([["flibbertigibbet", "zorblax"]]))
        after = ask(model, "flibbertigibbet", embeddings[0])
        assert after.ids[0] == "ZX1"
        note = after.explanations[0]["query"]
        assert note["synonyms"] == {"added": ["zorblax"], "lexical_query": "flibbertigibbet zorblax"}
        assert "read through a synonym as 'zorblax'" in note["weight_reason"]
        assert after.corrected == ""  # a word the shop gave a synonym is never corrected
    finally:
        store.set_synonyms([])
        store.close()


@pytest.mark.parametrize("text, corrected, searched", [
    ("Zorblx", "zorblax", True), ("zorblax kettel", "zorblax kettle", False), ("Zorblx kettle", "zorblax kettle", False),
])
def test_a_misspelt_word_gets_a_correction_searched_when_nothing_else_is_found(catalog, text, corrected, searched):  # noqa: F811
    model, _, _, embeddings = catalog
    ranked = ask(model, text, embeddings[0])
    assert ranked.corrected.casefold() == corrected
    note = ranked.explanations[0]["query"]["corrected"]
    assert note["searched"] is searched and note["query"] == ranked.corrected
    assert ranked.ids[0] == "ZX1"  # searched, or the typed text weighed as its correction reads


@pytest.mark.parametrize("text", ["Zorblax", "red mug", "blue dress with logo", "红色连衣裙", "连衣裙", "sku0042rd"])
def test_known_words_codes_and_chinese_are_never_corrected(catalog, text):  # noqa: F811
    model, _, _, embeddings = catalog
    ranked = ask(model, text, embeddings[0])
    assert ranked.corrected == "" and "corrected" not in ranked.explanations[0]["query"]
