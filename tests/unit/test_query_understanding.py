"""Query understanding in the scorer: negation parsed into exclusions applied before ranking (the
parser's forms, closed values, the lexical fallback), and the hybrid weight chosen per query from
the catalog's term statistics (a rare name leans lexical, a Chinese or unknown-word query on the
vectors, LEXICAL_WEIGHT overrides), on a real SQLite catalog store (its FTS5 index)."""
import json

import numpy as np
import pytest

from productsearch.catalog.ranking import negation, query_weight
from productsearch.catalog.ranking.lexical import term_profile
from productsearch.catalog.ranking.relevance import Relevance
from productsearch.catalog.store import catalog_url, open_store
from productsearch.runtime.scorer import RowQuery, ScorerModel
from tests.catalog_fixtures import random_vectors, scorer_args, write_store

NAMES = {"color": ["red", "blue", "grey"], "pattern": ["striped", "polka-dot", "plain", "checked"],
         "category": ["dress", "t-shirt", "water bottle"], "brand": ["Kestrel", "Blue Fox"]}


@pytest.mark.parametrize("text, positive, excluded, words", [
    ("dress -red", "dress", {"color": ["red"]}, []),
    ("dress not red", "dress", {"color": ["red"]}, []),
    ("t-shirt no stripes", "t-shirt", {"pattern": ["striped"]}, []),
    ("t-shirt without checks", "t-shirt", {"pattern": ["checked"]}, []),
    ("dress no polka-dots", "dress", {"pattern": ["polka-dot"]}, []),
    ("mug without logo", "mug", {}, ["logo"]),
    ("dresses -kestrel", "dresses", {"brand": ["Kestrel"]}, []),
    ("red t-shirt not dresses", "red t-shirt", {"category": ["dress"]}, []),
    ("连衣裙不要红色", "连衣裙", {"color": ["red"]}, []),
    ("非红色的T恤", "T恤", {"color": ["red"]}, []),
    ("除了红色以外的连衣裙", "连衣裙", {"color": ["red"]}, []),
    ("非红色连衣裙", "连衣裙", {"color": ["red"]}, []),
    ("T恤 不要条纹", "T恤", {"pattern": ["striped"]}, []),
    ("不要蓝色 不要红色 T恤", "T恤", {"color": ["blue", "red"]}, []),
])
def test_negation_forms_become_exclusions_of_closed_values(text, positive, excluded, words):
    parsed = negation.resolve(text, NAMES)
    assert (parsed.positive, parsed.excluded, parsed.lexical) == (positive, excluded, words)


@pytest.mark.parametrize("text", ["t-shirt red", "red striped t-shirt", "nothing to see", "non-iron shirt", "红色连衣裙"])
def test_text_without_a_negation_is_left_alone(text):
    parsed = negation.resolve(text, NAMES)
    assert parsed.positive == text and not parsed.negated and not parsed.excluded


def profile(words, documents, joint, chinese=False):
    return {"words": words, "documents": documents, "joint": joint, "chinese": chinese}


def test_the_weight_rule_reads_rare_brand_common_chinese_and_unknown_words():
    rule = query_weight.DEFAULT_RULE
    assert query_weight.choose(profile(["zorblax"], {"zorblax": 1}, 1), 5000, None)[0] == rule.named
    assert query_weight.choose(profile(["kestrel", "backpack"], {"kestrel": 800, "backpack": 440}, 70), 5000,
                               "kestrel")[0] == rule.named
    assert query_weight.choose(profile(["red", "mug"], {"red": 480, "mug": 440}, 40), 5000, None)[0] == rule.common
    assert query_weight.choose(profile(["cosy", "top"], {"top": 30}, 0), 5000, None)[0] == rule.base
    assert query_weight.choose(profile(["red", "mug"], {"red": 480, "mug": 440}, 0), 5000, None)[0] == rule.base
    assert query_weight.choose(profile([], {}, 0, chinese=True), 5000, None)[0] == rule.base
    weight, why = query_weight.choose(None, 5000, None)
    assert weight == rule.base and "no term statistics" in why


COUNT, DIM = 400, 16
COLORS = ["red", "blue", "grey", "green"]
KINDS = ["dress", "mug", "t-shirt", "backpack"]


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    root = tmp_path_factory.mktemp("query")
    products = [{"id": f"P{i:04d}", "title": f"{COLORS[i % 4]} {KINDS[(i // 4) % 4]}" + (" with logo" if i % 5 == 0 else ""),
                 "category": KINDS[(i // 4) % 4], "color": COLORS[i % 4], "brand": ["Acme", "Dune"][i % 2]}
                for i in range(COUNT)]
    products.append({"id": "ZX1", "title": "Zorblax quantum kettle in teal"})
    embeddings = write_store(root, products, random_vectors(len(products), DIM // 2, 1),
                             random_vectors(len(products), DIM // 2, 2))
    model = ScorerModel()
    model.initialize(scorer_args(root, 1))
    yield model, root, {p["id"]: p for p in products}, embeddings
    model.finalize()


def ask(model, text, query, weight=None, k=10):
    row = RowQuery(query.astype(np.float32), k)
    row.relevance = Relevance(text=text, lexical_weight=weight, explain=True)
    ranked = model.compute_ranked([row])[0]
    ranked.explanations = [json.loads(e) for e in ranked.explanations]
    return ranked


def test_negated_values_never_reach_the_top_and_explain_shows_the_parse(catalog):
    model, _, products, embeddings = catalog
    red_dress = next(i for i, p in enumerate(products.values()) if p.get("color") == "red" and p.get("category") == "dress")
    for text, field, value in [("dress not red", "color", "red"), ("dress -red", "color", "red"),
                               ("连衣裙不要红色", "color", "red"), ("red things without mugs", "category", "mug"),
                               ("dress -acme", "brand", "Acme")]:
        ranked = ask(model, text, embeddings[red_dress], k=50)
        assert len(ranked.ids) == 50
        assert all(products[pid].get(field) != value for pid in ranked.ids), text
        assert ranked.explanations[0]["query"]["negation"]["excluded"] == {field: [value]}


def test_an_unknown_negated_word_excludes_its_lexical_matches(catalog):
    model, _, products, embeddings = catalog
    ranked = ask(model, "blue mug without logo", embeddings[5], k=50)
    assert all("logo" not in products[pid]["title"] for pid in ranked.ids)
    assert ranked.explanations[0]["query"]["negation"]["excluded_words"] == ["logo"]


def test_a_rare_name_leans_lexical_and_the_override_wins(catalog):
    model, _, _, embeddings = catalog
    for text in ("Zorblax", "Zorblax quantum kettle in teal"):
        ranked = ask(model, text, embeddings[0])
        assert ranked.ids[0] == "ZX1", text
        note = ranked.explanations[0]["query"]
        assert note["lexical_weight"] == query_weight.DEFAULT_RULE.named and "rare word 'zorblax'" in note["weight_reason"]
    forced = ask(model, "Zorblax", embeddings[0], weight=0.0)
    assert forced.explanations[0]["query"] == {"lexical_weight": 0.0, "weight_reason": "LEXICAL_WEIGHT sent"}


def test_the_term_profile_counts_documents_and_joint_matches(catalog):
    _, root, products, _ = catalog
    store = open_store(catalog_url(root))
    try:
        red_mugs = sum(p.get("color") == "red" and p.get("category") == "mug" for p in products.values())
        got = term_profile(store.db, "red mug")
        assert got["documents"]["red"] == sum(p.get("color") == "red" for p in products.values())
        assert got["joint"] == red_mugs and not got["chinese"]
        assert term_profile(store.db, "red zzzunknown")["joint"] == 0
    finally:
        store.close()
