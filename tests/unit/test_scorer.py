"""The scorer's batched top-k equals numpy brute force on random data."""
import json

import numpy as np
import pytest

from productsearch.runtime.model_io import RequestError
from productsearch.runtime.scorer import RowQuery, ScorerModel, check_top_k
from productsearch.catalog.files import CatalogError, load_catalog, write_catalog
from productsearch.runtime.fusion import normalize


@pytest.fixture
def scorer(tmp_path):
    rng = np.random.default_rng(7)
    embeddings = normalize(rng.standard_normal((500, 768)))
    products = [{"id": f"P{i:04d}", "title": f"product {i}"} for i in range(500)]
    (tmp_path / "scorer").mkdir()
    write_catalog(tmp_path / "scorer" / "3", embeddings, products)
    model = ScorerModel()
    model.initialize({
        "model_config": json.dumps({"parameters": {}}), "model_version": "3", "model_name": "scorer",
        "model_repository": str(tmp_path / "scorer"), "model_instance_kind": "CPU",
    })
    return model, embeddings


def test_batched_top_k_equals_brute_force(scorer):
    model, embeddings = scorer
    rng = np.random.default_rng(8)
    queries = normalize(rng.standard_normal((7, 768)))
    ks = [1, 5, 10, 10, 50, 3, 500]
    results = model.compute([RowQuery(q, k) for q, k in zip(queries, ks)])
    for query, k, (index, scores) in zip(queries, ks, results):
        brute = embeddings @ query
        expected = np.argsort(-brute, kind="stable")[:k]
        assert list(index) == list(expected)
        np.testing.assert_allclose(scores, brute[expected], atol=1e-5)
        assert np.all(np.diff(scores) <= 0)
    assert model.generation.tolist() == [3]


def test_top_k_larger_than_catalog_returns_whole_catalog_ranked(scorer):
    model, embeddings = scorer
    (index, scores), = model.compute([RowQuery(embeddings[0], 1000)])
    assert len(index) == 500 and index[0] == 0 and scores[0] == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("bad", [0, -1, 1001, 10**6])
def test_top_k_out_of_range_is_refused(bad):
    with pytest.raises(RequestError, match="TOP_K must be between 1 and 1000"):
        check_top_k(np.array([[bad]]), 1)


def test_truncated_catalog_is_refused(tmp_path):
    write_catalog(tmp_path, normalize(np.ones((4, 8))), [{"id": str(i)} for i in range(4)])
    path = tmp_path / "catalog" / "embeddings.npy"
    path.write_bytes(path.read_bytes()[:-16])
    with pytest.raises(CatalogError, match="checksum"):
        load_catalog(tmp_path)
