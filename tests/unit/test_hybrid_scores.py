"""The scorer's hybrid scores against the README's formulas computed here directly (weighted and
RRF, over the vector top 100 and the lexical top 200), and the lexical search against one plain
FTS5 statement: the same hits, ties in the same order.
"""
import numpy as np
import pytest

from productsearch.catalog.ranking import lexical
from productsearch.catalog.ranking.relevance import LEXICAL_DEPTH, MIN_DEPTH, RRF_K, Relevance
from productsearch.catalog.store import catalog_url, open_store
from productsearch.runtime.scorer import RowQuery, ScorerModel
from tests.catalog_fixtures import random_vectors, scorer_args, write_store

COUNT = 600
KINDS = ["sneakers", "mug", "dress", "backpack", "连衣裙"]
COLORS = ["red", "blue", "green"]
TEXTS = ["red mug", "blue", "green sneakers backpack", "sneekers", "连衣裙 red", "mug mug red"]
# the lexical text searched: a query none of whose words the catalog knows is searched as its
# correction (did you mean, catalog/ranking/spelling.py)
SEARCHED = {"sneekers": "sneakers"}


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    root = tmp_path_factory.mktemp("hybrid")
    # few distinct titles: many products tie on BM25
    products = [{"id": f"P{i:04d}", "title": f"{COLORS[i % 3]} {KINDS[(i // 3) % 5]}" + (" classic" if i % 7 == 0 else ""),
                 "category": KINDS[(i // 3) % 5], "brand": f"B{i % 4}"} for i in range(COUNT)]
    embeddings = write_store(root, products, random_vectors(COUNT, 16, 1), random_vectors(COUNT, 16, 2))
    model = ScorerModel()
    model.initialize(scorer_args(root, 1))
    store = open_store(catalog_url(root))
    yield model, store, embeddings
    model.finalize()
    store.close()


def reference_scores(store, embeddings, query, text, weight, fusion) -> dict[str, float]:
    cosine = embeddings @ query
    vector = [f"P{i:04d}" for i in np.argsort(-cosine, kind="stable")[:MIN_DEPTH]]
    hits = store.lexical(SEARCHED.get(text, text), LEXICAL_DEPTH)
    top = max(score for _, score in hits)
    lex_rank = {pid: r + 1 for r, (pid, _) in enumerate(hits)}
    lex_score = dict(hits)
    out = {}
    for pid in dict.fromkeys(vector + [pid for pid, _ in hits]):
        if fusion == "rrf":
            out[pid] = ((1 - weight) / (RRF_K + vector.index(pid) + 1) if pid in vector else 0.0) + \
                (weight / (RRF_K + lex_rank[pid]) if pid in lex_rank else 0.0)
        else:
            out[pid] = (1 - weight) * float(cosine[int(pid[1:])]) + weight * lex_score.get(pid, 0.0) / top
    return out


@pytest.mark.parametrize("fusion", ["weighted", "rrf"])
@pytest.mark.parametrize("weight", [0.1, 0.7])
def test_hybrid_scores_follow_the_formula(catalog, fusion, weight):
    model, store, embeddings = catalog
    queries = random_vectors(len(TEXTS), 32, 9)
    rows = []
    for query, text in zip(queries, TEXTS):
        row = RowQuery(query.astype(np.float32), 20)
        row.relevance = Relevance(text=text, lexical_weight=weight, fusion=fusion)
        rows.append(row)
    for query, text, ranked in zip(queries, TEXTS, model.compute_ranked(rows)):
        expected = reference_scores(store, embeddings, query, text, weight, fusion)
        np.testing.assert_allclose(ranked.scores, [expected[pid] for pid in ranked.ids], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(ranked.scores, sorted(expected.values(), reverse=True)[:20], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("text", TEXTS + ["classic", "red classic mug", "t", ""])
@pytest.mark.parametrize("limit", [LEXICAL_DEPTH, 7])
def test_lexical_search_equals_one_fts5_statement(catalog, text, limit):
    _, store, _ = catalog
    expression = lexical.match_expression(text, store.db)
    expected = [] if expression is None else [(pid, float(score)) for pid, score in store.db.execute(
        f"SELECT id, -bm25(lexical, 0, {lexical.WORDS_WEIGHT}, {lexical.GRAMS_WEIGHT}) AS score FROM lexical "
        "WHERE lexical MATCH ? ORDER BY score DESC LIMIT ?", (expression, limit))]
    assert lexical.search(store.db, text, limit) == expected


class DeletesBetweenStatements:
    """A connection whose first statement is followed by another connection's committed delete of
    `victim`, as a writer's commit can land between the lexical search's two statements."""

    def __init__(self, db, root, victim: str):
        self.db, self.root, self.victim, self.statements = db, root, victim, 0

    def execute(self, sql, params=()):
        cursor = self.db.execute(sql, params)
        rows = cursor.fetchall()
        self.statements += 1
        if self.statements == 2:  # after match_expression's lookup and the ranked query
            writer = open_store(catalog_url(self.root))
            with writer.transaction() as db:
                writer.delete_one(db, self.victim, 0.0)
            writer.close()
        return rows_cursor(rows)


def rows_cursor(rows):
    class Cursor(list):
        def fetchall(self):
            return list(self)
    return Cursor(rows)


def test_a_product_deleted_between_the_lexical_statements_is_left_out(tmp_path):
    products = [{"id": f"Q{i}", "title": f"red mug {i}", "category": "mug"} for i in range(20)]
    write_store(tmp_path, products, random_vectors(20, 8, 1), random_vectors(20, 8, 2))
    store = open_store(catalog_url(tmp_path))
    try:
        before = lexical.search(store.db, "red mug", 10)
        victim = before[0][0]
        hits = lexical.search(DeletesBetweenStatements(store.db, tmp_path, victim), "red mug", 10)
        assert victim not in [pid for pid, _ in hits]
        assert hits == [hit for hit in before if hit[0] != victim]
    finally:
        store.close()
