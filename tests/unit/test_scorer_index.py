"""The scorer's IVF path (large catalogs): recall against brute force, complete answers when the
probed lists are short, and the index kept current as products are added, replaced and deleted
(a deleted product is never returned, from the sequence its delete was applied)."""
import time

import numpy as np
import pytest

from productsearch.catalog.store import DEFAULT_DIR, open_store
from productsearch.core.vectors import normalize
from productsearch.runtime.scorer import RowQuery, ScorerModel
from tests.catalog_fixtures import scorer_args, write_store

COUNT, HALF = 20_000, 32


def clustered(rng, count, centres):
    """Unit vectors around random centres (real embeddings cluster; uniform noise has no neighbours)."""
    origin = rng.integers(0, len(centres), size=count)
    return normalize(centres[origin] + 0.6 / np.sqrt(centres.shape[1]) * rng.standard_normal((count, centres.shape[1])))


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    root = tmp_path_factory.mktemp("index")
    rng = np.random.default_rng(11)
    centres = normalize(rng.standard_normal((300, 2 * HALF)))
    products = [{"id": f"P{i:05d}", "title": f"product {i} \u00e9"} for i in range(COUNT)]
    both = clustered(rng, COUNT, centres)  # text and image halves from the same cluster, as a product's are
    embeddings = write_store(root, products, normalize(both[:, :HALF]), normalize(both[:, HALF:]), generation=2)
    queries = embeddings[rng.integers(0, COUNT, 60)] + 0.02 * rng.standard_normal((60, 2 * HALF)).astype(np.float32)
    return root, embeddings, normalize(queries)


def make_scorer(root, **parameters):
    model = ScorerModel()
    model.initialize(scorer_args(root, 2, parameters))
    return model


def test_indexed_search_recall_against_brute_force(catalog):
    root, embeddings, queries = catalog
    model = make_scorer(root, exact_max_products=10_000, nprobe=12)
    assert model.index().search_method == "ivf"
    results = model.compute([RowQuery(q, 10) for q in queries])
    exact = np.argsort(-(queries @ embeddings.T), axis=1)[:, :10]
    recall = np.mean([len(set(index) & set(truth)) / 10 for (index, _), truth in zip(results, exact)])
    assert recall >= 0.95
    for (index, scores), query in zip(results, queries):
        assert np.all(np.diff(scores) <= 1e-6)
        np.testing.assert_allclose(scores, embeddings[index] @ query, atol=2e-3)  # fp16 codes
    model.finalize()


def test_short_probed_lists_still_give_k_results(catalog):
    root, embeddings, queries = catalog
    model = make_scorer(root, exact_max_products=10_000, nprobe=1)
    (index, scores), = model.compute([RowQuery(queries[0], 1000)])
    assert len(index) == 1000 and len(set(index.tolist())) == 1000 and index.min() >= 0
    assert model.index().ivf.index.nprobe == 1
    model.finalize()


def test_small_catalog_stays_exact(catalog):
    root, _, _ = catalog
    for parameters, method in (({}, "exact"), ({"search": "ivf", "nprobe": 8}, "ivf")):  # 20k < default threshold
        model = make_scorer(root, **parameters)
        assert model.index().search_method == method
        model.finalize()


def test_the_ivf_index_follows_upserts_and_deletes(catalog, tmp_path):
    """Products changed in the store after the IVF index was built: a replaced vector is found
    where it now is, a deleted product never comes back, a new one is found at once."""
    root, embeddings, queries = catalog
    model = make_scorer(root, exact_max_products=10_000, nprobe=16)
    index = model.index()
    store = open_store(f"sqlite://{root / DEFAULT_DIR}")
    target = embeddings[123]
    (before, _), = model.compute([RowQuery(target, 5)])
    assert index.ids[before[0]] == b"P00123"
    with store.transaction() as db:
        store.delete_one(db, "P00123", time.time())
    (after, _), = model.compute([RowQuery(target, 50)])
    assert b"P00123" not in [index.ids[s] for s in after]
    rng = np.random.default_rng(5)
    text, image = normalize(rng.standard_normal((1, HALF))), normalize(rng.standard_normal((1, HALF)))
    fused = write_store(root, [{"id": "FRESH", "title": "fresh"}], text, image, generation=2)
    (found, scores), = model.compute([RowQuery(fused[0], 1)])
    assert index.ids[found[0]] == b"FRESH" and scores[0] == pytest.approx(1.0, abs=2e-3)
    with store.transaction() as db:
        store.delete_one(db, "FRESH", time.time())
    (found, _), = model.compute([RowQuery(fused[0], 20)])
    assert b"FRESH" not in [index.ids[s] for s in found]
    store.close()
    model.finalize()
