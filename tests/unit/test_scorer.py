"""The scorer's batched top-k over the live catalog equals numpy brute force on random data."""
import numpy as np
import pytest

from productsearch.runtime.model_io import RequestError
from productsearch.runtime.scorer import RowQuery, ScorerModel
from productsearch.runtime.scorer_inputs import check_top_k
from tests.catalog_fixtures import STORE_KINDS, catalog_store, random_vectors, scorer_args, write_store


@pytest.fixture(params=STORE_KINDS)
def scorer(request, tmp_path):
    with catalog_store(request.param, tmp_path):
        products = [{"id": f"P{i:04d}", "title": f"product {i}"} for i in range(500)]
        embeddings = write_store(tmp_path, products, random_vectors(500, 384, 7), random_vectors(500, 384, 17), generation=3)
        model = ScorerModel()
        model.initialize(scorer_args(tmp_path, 3))
        yield model, embeddings
        model.finalize()


def positions(ids: list[str]) -> list[int]:
    return [int(pid[1:]) for pid in ids]


def test_batched_top_k_equals_brute_force(scorer):
    model, embeddings = scorer
    queries = random_vectors(7, 768, 8)
    ks = [1, 5, 10, 10, 50, 3, 500]
    results = model.compute_ids([RowQuery(q, k) for q, k in zip(queries, ks)])
    for query, k, (ids, scores) in zip(queries, ks, results):
        brute = embeddings @ query
        expected = np.argsort(-brute, kind="stable")[:k]
        assert positions(ids) == list(expected)
        np.testing.assert_allclose(scores, brute[expected], atol=1e-5)
        assert np.all(np.diff(scores) <= 0)
    assert model.generation.tolist() == [3]


def test_top_k_larger_than_catalog_returns_whole_catalog_ranked(scorer):
    model, embeddings = scorer
    (ids, scores), = model.compute_ids([RowQuery(embeddings[0], 1000)])
    assert len(ids) == 500 and ids[0] == "P0000" and scores[0] == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("bad", [0, -1, 1001, 10**6])
def test_top_k_out_of_range_is_refused(bad):
    with pytest.raises(RequestError, match="TOP_K must be between 1 and 1000"):
        check_top_k(np.array([[bad]]), 1)


def test_the_catalog_reads_its_own_changes_before_each_batch(scorer, tmp_path):
    """A product written to the store after the scorer loaded is in the very next answer."""
    model, embeddings = scorer
    extra = write_store(tmp_path, [{"id": "NEW", "title": "new"}], random_vectors(1, 384, 99), random_vectors(1, 384, 98),
                        generation=3)
    (ids, scores), = model.compute_ids([RowQuery(extra[0], 1)])
    assert ids == ["NEW"] and scores[0] == pytest.approx(1.0, abs=1e-5)
