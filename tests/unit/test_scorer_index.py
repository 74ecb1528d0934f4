"""The scorer's indexed path (large catalogs): recall against brute force, the persisted index,
complete answers when the probed lists are short, and the lean catalog columns."""
import json

import numpy as np
import pytest

from productsearch.catalog import ann as ann_module
from productsearch.runtime.scorer import RowQuery, ScorerModel
from productsearch.catalog.ann import IndexSpec, index_path
from productsearch.catalog.columns import StringColumn
from productsearch.catalog.files import open_catalog, write_catalog
from productsearch.runtime.fusion import normalize

COUNT, DIM = 20_000, 64


def clustered(rng, count, centres):
    """Unit vectors around random centres (real embeddings cluster; uniform noise has no neighbours)."""
    origin = rng.integers(0, len(centres), size=count)
    return normalize(centres[origin] + 0.6 / np.sqrt(centres.shape[1]) * rng.standard_normal((count, centres.shape[1])))


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    root = tmp_path_factory.mktemp("index")
    rng = np.random.default_rng(11)
    centres = normalize(rng.standard_normal((300, DIM)))
    embeddings = clustered(rng, COUNT, centres)
    products = [{"id": f"P{i:05d}", "title": f"product {i} \u00e9"} for i in range(COUNT)]
    write_catalog(root / "scorer" / "2", embeddings, products)
    queries = clustered(rng, 60, centres)
    return root, embeddings, queries


def make_scorer(root, **parameters):
    model = ScorerModel()
    model.initialize({
        "model_config": json.dumps({"parameters": {k: {"string_value": str(v)} for k, v in parameters.items()}}),
        "model_version": "2", "model_name": "scorer", "model_repository": str(root / "scorer"), "model_instance_kind": "CPU",
    })
    return model


def test_indexed_search_recall_against_brute_force_and_persisted_index(catalog, monkeypatch):
    root, embeddings, queries = catalog
    model = make_scorer(root, exact_max_products=10_000, nprobe=12)
    assert model.searcher.method == "ivf" and not hasattr(model.searcher, "matrix")
    assert index_path(open_catalog(root / "scorer" / "2").root, IndexSpec(), COUNT).exists()

    results = model.compute([RowQuery(q, 10) for q in queries])
    exact = np.argsort(-(queries @ embeddings.T), axis=1)[:, :10]
    recall = np.mean([len(set(index) & set(truth)) / 10 for (index, _), truth in zip(results, exact)])
    assert recall >= 0.95
    for (index, scores), query in zip(results, queries):
        assert np.all(np.diff(scores) <= 1e-6)
        np.testing.assert_allclose(scores, embeddings[index] @ query, atol=2e-3)  # fp16 codes

    def no_rebuild(*args, **kwargs):
        raise AssertionError("the persisted index should have been loaded")

    monkeypatch.setattr(ann_module, "build_index", no_rebuild)
    again = make_scorer(root, exact_max_products=10_000, nprobe=12)
    assert [list(i) for i, _ in again.compute([RowQuery(q, 10) for q in queries[:5]])] == [list(i) for i, _ in results[:5]]


def test_short_probed_lists_still_give_k_results(catalog):
    root, embeddings, queries = catalog
    model = make_scorer(root, exact_max_products=10_000, nprobe=1)
    (index, scores), = model.compute([RowQuery(queries[0], 1000)])
    assert len(index) == 1000 and len(set(index.tolist())) == 1000 and index.min() >= 0
    assert model.searcher.index.nprobe == 1


def test_small_catalog_stays_exact(catalog):
    root, _, _ = catalog
    assert make_scorer(root).searcher.method == "exact"  # 20k < default threshold
    assert make_scorer(root, search="ivf", nprobe=8).searcher.method == "ivf"


def test_string_column_round_trip():
    values = [b"a", b"", "\u00e9t\u00e9".encode(), b"xyz"]
    column = StringColumn(values)
    assert len(column) == 4 and column[2] == values[2]
    taken = column.take(np.array([[3, 0], [1, 2]]))
    assert taken.dtype == object and taken.tolist() == [[b"xyz", b"a"], [b"", values[2]]]
