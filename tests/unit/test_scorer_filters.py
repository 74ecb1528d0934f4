"""Filters, pagination and recommendations in the scorer equal brute force on random catalogs.

The scorer's parse() reads Triton tensors through `input_array`; here a dict of numpy arrays
stands in for the request (the integration tests send the same through a real tritonserver).
"""
import re

import numpy as np
import pytest

from productsearch.runtime import scorer_inputs as scorer_module
from productsearch.runtime.model_io import RequestError
from productsearch.core.limits import EMPTY_QUERY, MAX_DEPTH
from productsearch.runtime.scorer import ScorerModel
from productsearch.catalog.ranking.batch import RECENCY_DECAY
from productsearch.core.vectors import fuse, normalize
from tests.catalog_fixtures import STORE_KINDS, catalog_store, random_vectors, scorer_args, write_store

CATEGORIES = ["hat", "mug", "watch", "dress", "jeans", "bag"]
COUNT, DIM = 3000, 32


@pytest.fixture(scope="module", params=STORE_KINDS)
def catalog(request, tmp_path_factory):
    rng = np.random.default_rng(11)
    root = tmp_path_factory.mktemp("filters")
    with catalog_store(request.param, root):
        for model, embeddings, products in scorer_over(root, rng):
            model.kind = request.param
            yield model, embeddings, products


def scorer_over(root, rng):
    products = []
    for i in range(COUNT):
        product = {"id": f"P{i:05d}", "title": f"product {i}", "category": CATEGORIES[rng.integers(len(CATEGORIES))]}
        if rng.random() > 0.05:  # some products have no price: no price filter passes them
            product["price"] = round(float(rng.uniform(5, 200)), 2)
        products.append(product)
    # clustered vectors, so that ties and near-ties happen
    embeddings = write_store(root, products, random_vectors(COUNT, DIM // 2, 11, clusters=40),
                             random_vectors(COUNT, DIM // 2, 21, clusters=40))
    model = ScorerModel()
    model.initialize(scorer_args(root, 1))
    model.root = root
    yield model, embeddings, products
    model.finalize()


@pytest.fixture
def ask(catalog, monkeypatch):
    """ask(TOP_K=..., QUERY_EMBEDDING=..., ...) -> [(ids, scores)] through parse + compute."""
    model = catalog[0]
    monkeypatch.setattr(scorer_module, "input_array", lambda request, name: request.get(name))

    def run(**inputs):
        request = {name: np.asarray(value) for name, value in inputs.items()}
        rows = model.parse(request)
        return model.compute_ids(rows)
    return run


def brute_force(embeddings, products, query, k, offset=0, categories=None, price_min=None, price_max=None,
                exclude=()):
    scores = embeddings @ query
    allowed = [i for i, p in enumerate(products)
               if (categories is None or p["category"] in categories)
               and (price_min is None or ("price" in p and p["price"] >= price_min))
               and (price_max is None or ("price" in p and p["price"] <= price_max))
               and p["id"] not in exclude]
    ranked = sorted(allowed, key=lambda i: (-scores[i], i))[offset:offset + k]
    return [products[i]["id"] for i in ranked], scores[ranked]


def test_filtered_top_k_equals_brute_force_over_the_filtered_catalog(catalog, ask):
    _, embeddings, products = catalog
    rng = np.random.default_rng(12)
    for trial in range(60):
        query = normalize(rng.standard_normal(DIM))
        k = int(rng.choice([1, 5, 10, 50]))
        chosen = list(rng.choice(CATEGORIES, size=int(rng.integers(1, 4)), replace=False))
        low = float(rng.uniform(0, 150))
        high = low + float(rng.uniform(1, 120))
        exclude = [products[i]["id"] for i in rng.integers(0, COUNT, 20)]
        inputs = dict(QUERY_EMBEDDING=[query], TOP_K=[[k]], CATEGORIES=[[c.encode() for c in chosen]],
                      EXCLUDE_IDS=[[e.encode() for e in exclude]])
        if trial % 3:
            inputs.update(PRICE_MIN=[[low]], PRICE_MAX=[[high]])
        (ids, scores), = ask(**inputs)
        expected, expected_scores = brute_force(embeddings, products, query, k, categories=chosen, exclude=exclude,
                                                price_min=low if trial % 3 else None,
                                                price_max=high if trial % 3 else None)
        assert ids == expected
        np.testing.assert_allclose(scores, expected_scores, atol=1e-5)
        by_id = {p["id"]: p for p in products}
        for pid in ids:
            assert by_id[pid]["category"] in chosen and pid not in exclude
            if trial % 3:
                assert low <= by_id[pid]["price"] <= high


def test_a_batch_mixes_filtered_and_plain_rows(catalog, ask):
    _, embeddings, products = catalog
    queries = normalize(np.random.default_rng(13).standard_normal((3, DIM)))
    results = ask(QUERY_EMBEDDING=queries, TOP_K=[[10]] * 3,
                  CATEGORIES=[[b"mug", b""], [b"", b""], [b"hat", b"bag"]])  # "" is padding
    assert results[0][0] == brute_force(embeddings, products, queries[0], 10, categories=["mug"])[0]
    assert results[1][0] == brute_force(embeddings, products, queries[1], 10)[0]
    assert results[2][0] == brute_force(embeddings, products, queries[2], 10, categories=["hat", "bag"])[0]


@pytest.mark.parametrize("filters", [{}, {"CATEGORIES": [[b"watch"]]}, {"EXCLUDE_IDS": [[b"P00001", b"P00002"]]}])
def test_pages_fit_together_into_one_long_list(catalog, ask, filters):
    query = normalize(np.random.default_rng(14).standard_normal(DIM))
    whole, _ = ask(QUERY_EMBEDDING=[query], TOP_K=[[60]], **filters)[0]
    pages = [ask(QUERY_EMBEDDING=[query], TOP_K=[[20]], OFFSET=[[offset]], **filters)[0][0] for offset in (0, 20, 40)]
    assert pages[0] + pages[1] + pages[2] == whole and len(set(whole)) == 60


def test_a_page_past_the_end_is_empty_and_the_last_page_short(catalog, ask):
    query = normalize(np.ones(DIM))
    (ids, _), = ask(QUERY_EMBEDDING=[query], TOP_K=[[10]], OFFSET=[[COUNT - 4]])
    assert len(ids) == 4
    (ids, scores), = ask(QUERY_EMBEDDING=[query], TOP_K=[[10]], OFFSET=[[COUNT + 5]])
    assert ids == [] and len(scores) == 0


def test_more_like_this_is_the_products_own_embedding_without_itself(catalog, ask):
    _, embeddings, products = catalog
    (ids, scores), = ask(SEED_IDS=[[b"P00042"]], TOP_K=[[10]])
    expected, expected_scores = brute_force(embeddings, products, embeddings[42], 10, exclude={"P00042"})
    assert ids == expected and "P00042" not in ids
    np.testing.assert_allclose(scores, expected_scores, atol=1e-5)


def test_for_this_shopper_weighs_recent_views_more_and_excludes_them(catalog, ask):
    _, embeddings, products = catalog
    viewed = [7, 1500, 2999]  # most recent first
    ids_in = [[f"P{i:05d}".encode() for i in viewed]]
    exclude = {f"P{i:05d}" for i in viewed}
    weights = RECENCY_DECAY ** np.arange(3)
    query = normalize((embeddings[viewed] * weights[:, None]).sum(axis=0))
    (ids, _), = ask(SEED_IDS=ids_in, TOP_K=[[20]])
    assert ids == brute_force(embeddings, products, query, 20, exclude=exclude)[0]
    explicit = [[0.0, 0.0, 1.0]]  # all the weight on the oldest view: more like that one
    (ids, _), = ask(SEED_IDS=ids_in, SEED_WEIGHTS=explicit, TOP_K=[[20]])
    assert ids == brute_force(embeddings, products, embeddings[2999], 20, exclude=exclude)[0]
    (ids, _), = ask(SEED_IDS=ids_in, TOP_K=[[20]], CATEGORIES=[[b"mug"]])
    assert ids == brute_force(embeddings, products, query, 20, categories=["mug"], exclude=exclude)[0]


@pytest.mark.parametrize("inputs, message", [
    ({"SEED_IDS": [[b"P00001", b"NOPE"]]}, "unknown product id.*'NOPE'"),
    ({"SEED_IDS": [[b""]]}, "SEED_IDS is empty"),
    ({"SEED_IDS": [[b"P00001"]], "SEED_WEIGHTS": [[1.0, 2.0]]}, "one weight per id"),
    ({"SEED_IDS": [[b"P00001"]], "SEED_WEIGHTS": [[-1.0]]}, "SEED_WEIGHTS must be finite"),
    ({"SEED_IDS": [[b"P00001", b"P00002"]], "SEED_WEIGHTS": [[0.0, 0.0]]}, "not all 0"),
    ({"CATEGORIES": [[b"spaceship"]]}, "unknown category 'spaceship'; this catalog has: bag, dress"),
    ({"PRICE_MIN": [[50.0]], "PRICE_MAX": [[10.0]]}, "PRICE_MIN 50 is above PRICE_MAX 10"),
    ({"PRICE_MIN": [[np.inf]]}, "PRICE_MIN must be a finite number"),
    ({"OFFSET": [[-1]]}, "OFFSET must be >= 0"),
    ({"OFFSET": [[MAX_DEPTH]]}, f"OFFSET \\+ TOP_K <= {MAX_DEPTH}"),
    ({"OFFSET": [[0], [1]]}, "OFFSET needs one entry per query"),
    ({"EXCLUDE_IDS": [[b"x"] * 1001]}, "EXCLUDE_IDS takes at most 1000"),
])
def test_bad_options_are_refused_with_a_clear_message(ask, inputs, message):
    inputs = dict(inputs)
    if "SEED_IDS" not in inputs:
        inputs["QUERY_EMBEDDING"] = [normalize(np.ones(DIM))]
    with pytest.raises(RequestError, match=message):
        ask(TOP_K=[[10]], **inputs)


def test_a_query_needs_exactly_one_of_embedding_and_seeds(ask):
    with pytest.raises(RequestError, match="either QUERY_EMBEDDING or SEED_IDS"):
        ask(TOP_K=[[10]])
    with pytest.raises(RequestError, match="either QUERY_EMBEDDING or SEED_IDS"):
        ask(TOP_K=[[10]], QUERY_EMBEDDING=[normalize(np.ones(DIM))], SEED_IDS=[[b"P00001"]])


def test_the_scorer_fuses_the_encoders_outputs_as_fusion_does(catalog, ask):
    """The search ensemble hands the scorer the encoders' outputs: the answer equals the one for
    the vector `fuse` makes of them (the generation's weight, or the request's TEXT_WEIGHT)."""
    model = catalog[0]
    assert model.query_weight == model.text_weight  # no query_text_weight set: the generation's
    rng = np.random.default_rng(5)
    text, image = normalize(rng.standard_normal(DIM // 2)), normalize(rng.standard_normal(DIM // 2))
    for text_present, image_present, weight in ((True, True, None), (True, False, None), (False, True, 0.7),
                                                (True, True, 0.0), (True, True, 1.0)):
        inputs = dict(TEXT_EMBEDDING=[text], IMAGE_EMBEDDING=[image], TEXT_PRESENT=[[text_present]],
                      IMAGE_PRESENT=[[image_present]])
        if weight is not None:
            inputs["TEXT_WEIGHT"] = [[weight]]
        fused = fuse(text[None], image[None], [text_present], [image_present],
                     model.query_weight if weight is None else weight)[0]
        (ids, scores), = ask(TOP_K=[[10]], **inputs)
        (expected_ids, expected_scores), = ask(TOP_K=[[10]], QUERY_EMBEDDING=[fused])
        assert ids == expected_ids and np.array_equal(scores, expected_scores)


@pytest.mark.parametrize("inputs, message", [
    (dict(TEXT_PRESENT=[[False]], IMAGE_PRESENT=[[False]]), re.escape(EMPTY_QUERY)),
    (dict(TEXT_PRESENT=[[True]], IMAGE_PRESENT=[[True]], TEXT_WEIGHT=[[1.5]]), r"TEXT_WEIGHT must be within \[0, 1\]"),
    (dict(TEXT_PRESENT=[[True]]), "needs TEXT_EMBEDDING, TEXT_PRESENT, IMAGE_EMBEDDING and IMAGE_PRESENT"),
])
def test_bad_encoder_outputs_are_refused_with_the_reason(ask, inputs, message):
    vector = normalize(np.ones(DIM // 2))
    with pytest.raises(RequestError, match=message):
        ask(TOP_K=[[10]], TEXT_EMBEDDING=[vector], IMAGE_EMBEDDING=[vector], **inputs)


def test_unknown_excluded_ids_exclude_nothing(catalog, ask):
    _, embeddings, products = catalog
    query = normalize(np.ones(DIM))
    (ids, _), = ask(QUERY_EMBEDDING=[query], TOP_K=[[10]], EXCLUDE_IDS=[[b"GONE-1", b"GONE-2"]])
    assert ids == brute_force(embeddings, products, query, 10)[0]


@pytest.mark.parametrize("catalog", ["sqlite"], indirect=True)
def test_the_ivf_path_filters_inside_the_scan_when_many_products_pass(catalog, monkeypatch):
    """Above exact_filter_max passing products the IVF scan skips the others: every result
    passes, and with every list probed it finds the filtered brute-force answer (up to the
    fp16 coding of the index: near-ties may swap). The embedded store's faiss path; Milvus's own
    IVF with a filter: test_catalog_stores.py::test_milvus_ivf_finds_the_filtered_top_k_with_nprobe_scaled_by_the_filter."""
    _, embeddings, products = catalog
    monkeypatch.setattr(scorer_module, "input_array", lambda request, name: request.get(name))
    model = ScorerModel()
    model.initialize(scorer_args(catalog[0].root, 1, {"search": "ivf", "exact_filter_max": 100, "nprobe": 1000,
                                                        "ivf_nlist": 16}))
    assert model.index().search_method == "ivf"
    by_id = {p["id"]: p for p in products}
    rng = np.random.default_rng(15)
    for _ in range(10):
        query = normalize(rng.standard_normal(DIM))
        chosen = list(rng.choice(CATEGORIES, size=2, replace=False))
        rows = model.parse({"QUERY_EMBEDDING": np.asarray([query]), "TOP_K": np.asarray([[10]]),
                            "CATEGORIES": np.asarray([[c.encode() for c in chosen]]), "OFFSET": np.asarray([[5]])})
        (index, scores), = model.compute(rows)
        ids = [f"P{i:05d}" for i in index]
        expected, expected_scores = brute_force(embeddings, products, query, 10, offset=5, categories=chosen)
        assert len(ids) == 10 and all(by_id[pid]["category"] in chosen for pid in ids)
        assert len(set(ids) & set(expected)) >= 8
        np.testing.assert_allclose(scores, expected_scores, atol=2e-3)
