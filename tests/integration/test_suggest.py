"""`suggest` through the public contract on the session tritonserver: prefixes of real demo
titles complete to suggestions (words and phrases) that each find products, Chinese and one-typo prefixes, a product
upserted is suggestable in the next call, refusals (the server lives on); popular queries from
the search log (suggest reloaded with a short refresh), kept per shop and shown only once enough
shoppers searched them."""
from __future__ import annotations

import json

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from clients.catalog import CatalogClient
from clients.contract import Filters, Product, ReadOptions, key_headers
from clients.keys import KeyClient
from clients.search import SearchClient
from clients.suggest import SuggestClient
from productsearch.control.model_configs import read_config, to_json
from tests.conftest import DEMO_CATALOG
from tests.polling import wait_until

pytestmark = pytest.mark.integration
PRIVATE = "suggest-private"
POPULAR_SHOP = "suggest-popular"


def suggest(server, prefix, top_k=None, shop=None, key=None, dtype=np.int32):
    inputs = [grpcclient.InferInput("PREFIX", [1, 1], "BYTES")]
    inputs[0].set_data_from_numpy(np.array([[prefix.encode() if isinstance(prefix, str) else prefix]], dtype=object))
    if shop is not None:
        inputs.append(grpcclient.InferInput("SHOP", [1, 1], "BYTES"))
        inputs[-1].set_data_from_numpy(np.array([[shop.encode()]], dtype=object))
    if top_k is not None:
        inputs.append(grpcclient.InferInput("TOP_K", [1, 1], "INT32" if dtype == np.int32 else "FP32"))
        inputs[-1].set_data_from_numpy(np.array([[top_k]], dtype=dtype))
    with grpcclient.InferenceServerClient(server.grpc_url) as client:
        result = client.infer("suggest", inputs, headers=key_headers(key))
    texts, counts = result.as_numpy("SUGGESTIONS")[0], result.as_numpy("SUGGESTION_COUNTS")[0]
    return [(t.decode(), int(c)) for t, c in zip(texts, counts) if t]


def test_prefixes_of_real_titles_lead_to_results(triton):
    titles = [json.loads(line)["title"] for line in DEMO_CATALOG.read_text().splitlines()[:400]]
    latin = [t for t in titles if t[:1].isascii() and t[:1].isalpha()][:5]
    with SearchClient(triton.grpc_url, timeout_s=30) as client:
        for title in latin:
            got = suggest(triton, title[:3], top_k=5)
            assert got and all(text.startswith(title[:3].casefold()) and count > 0 for text, count in got), title
            for text, _ in got:
                assert client.search(text, top_k=3).ids, text


def test_two_typed_words_complete_to_phrases_of_titles_that_lead_to_results(triton):
    titles = [json.loads(line).get("title_en", "") for line in DEMO_CATALOG.read_text().splitlines()[:400]]
    pairs = [t.casefold().split()[:2] for t in titles if len(t.split()) >= 3 and "".join(t.split()[:2]).isalpha()]
    prefix = " ".join([pairs[0][0], pairs[0][1][:3]])
    got = suggest(triton, prefix, top_k=10)
    assert [text for text, _ in got if len(text.split()) > 2], got
    with SearchClient(triton.grpc_url, timeout_s=30) as client:
        for text, count in got:
            assert text.startswith(prefix) and count > 0 and client.search(text, top_k=3).ids, text


def test_chinese_and_one_typo_prefixes(triton):
    assert all(text.startswith("红") for text, _ in suggest(triton, "红", top_k=5)) and suggest(triton, "红")
    assert "nordia" in [text for text, _ in suggest(triton, "nirdia", top_k=5)]


def test_a_product_upserted_is_suggested_in_the_next_call(triton):
    assert not suggest(triton, "zorblaxq")
    with CatalogClient(triton.grpc_url, timeout_s=60, key=triton.key) as client:
        client.upsert([Product("SG-1", "Zorblaxquix quantum kettle in teal", None, {"brand": "Zorblaxquix"})])
        try:
            assert suggest(triton, "zorblaxq") == [("zorblaxquix", 1), ("zorblaxquix quantum kettle", 1)]
        finally:  # the session catalog stays the demo's for the tests that count it
            client.delete(["SG-1"])
    assert not suggest(triton, "zorblaxq")  # a delete is current in the next call too


def test_private_shop_needs_its_search_key(triton):
    with KeyClient(triton.grpc_url, timeout_s=30, key=triton.key) as admin:
        admin.create_shop(PRIVATE)
        admin.upsert([Product("SG-P", "Quillfeather notebook", None, {})], shop=PRIVATE)
        key = admin.create("search", [PRIVATE])["secret"]
    with pytest.raises(InferenceServerException, match="UNAUTHENTICATED"):
        suggest(triton, "quill", shop=PRIVATE)
    assert suggest(triton, "quill", shop=PRIVATE, key=key) == [("quillfeather", 1), ("quillfeather notebook", 1)]


@pytest.mark.parametrize("prefix, top_k, dtype, message", [
    ("", None, np.int32, "PREFIX is empty"),
    ("x" * 300, None, np.int32, "at most 256 bytes"),
    (b"\xff\xfe", None, np.int32, "UTF-8"),
    ("dre", 0, np.int32, "TOP_K must be between 1 and 100"),
    ("dre", 101, np.int32, "TOP_K must be between 1 and 100"),
    ("dre", 5, np.float32, "TOP_K"),
])
def test_refusals(triton, prefix, top_k, dtype, message):
    with pytest.raises(InferenceServerException, match=message):
        suggest(triton, prefix, top_k=top_k, dtype=dtype)
    assert suggest(triton, "dre")  # the server lives on


def test_client_and_cli(triton, capsys):
    from clients.suggest import main

    with SuggestClient(triton.grpc_url, timeout_s=30) as client:
        got = client.suggest("nordi", top_k=3)
    assert got and "nordia" in [text for text, _ in got] and all(count > 0 for _, count in got)
    main(["nordi", "--top-k", "3", "--url", triton.grpc_url])
    assert "nordia" in capsys.readouterr().out


@pytest.fixture
def quick_refresh(triton):
    """`suggest` reloaded with its popular queries recounted every 0.2 s; its on-disk config after."""
    config = read_config(triton.model_repository, "suggest")
    config.parameters["popular_refresh_s"].string_value = "0.2"
    with grpcclient.InferenceServerClient(triton.grpc_url) as client:
        client.load_model("suggest", config=to_json(config), headers=triton.admin_headers, client_timeout=120)
        try:
            yield
        finally:
            client.load_model("suggest", headers=triton.admin_headers, client_timeout=120)


def texts(server, prefix, **kwargs):
    return [text for text, _ in suggest(server, prefix, top_k=10, **kwargs)]


def test_popular_queries_per_shop_once_enough_shoppers_searched(triton, quick_refresh):
    with KeyClient(triton.grpc_url, timeout_s=30, key=triton.key) as admin:
        admin.create_shop(POPULAR_SHOP)
        admin.upsert([Product("SG-W", "Walnut writing desk", None, {})], shop=POPULAR_SHOP)
        key = admin.create("search", [POPULAR_SHOP])["secret"]
    with SearchClient(triton.grpc_url, timeout_s=30) as public, \
            SearchClient(triton.grpc_url, timeout_s=30, key=key) as private:
        for user in ("pq-1", "pq-2"):
            assert public.search("Velvet  cushion popular", top_k=3, user=user).ids
            assert private.search("velvet cushion walnut", top_k=3, user=user, read=ReadOptions(POPULAR_SHOP)).ids
        for _ in range(3):  # one shopper, three times: never offered to others
            assert public.search("velvet cushion private", top_k=3, user="pq-1").ids
        public.search("velvet cushion anonymous", top_k=3)
        public.search("velvet cushion anonymous", top_k=3)  # no USER: each search counts
        # both queries' rows may reach the log in different flushes, so a recount may see one first
        wait_until(lambda: {"velvet cushion popular", "velvet cushion anonymous"} <= set(texts(triton, "velvet c")), 20,
                   "the default shop's popular queries suggested")
        assert ("velvet cushion popular", 2) in suggest(triton, "Velvet cu", top_k=10)  # the count: its shoppers
        wait_until(lambda: "velvet cushion walnut" in texts(triton, "velvet c", shop=POPULAR_SHOP, key=key), 20,
                   "the private shop's popular query suggested")
        default, own = texts(triton, "velvet c"), texts(triton, "velvet c", shop=POPULAR_SHOP, key=key)
        assert "velvet cushion anonymous" in default and "velvet cushion private" not in default
        assert "velvet cushion walnut" not in default  # another shop's query never leaks
        assert not {"velvet cushion popular", "velvet cushion anonymous"} & set(own)
        assert "velvet cushion popular" in texts(triton, "velvet cusj")  # one typo in the partial word
        for text in default:
            assert public.search(text, top_k=3).ids, text
        # the same query now finds nothing (a filter no product passes): its latest search drops it
        assert not public.search("velvet cushion popular", top_k=3, user="pq-3", filters=Filters(price_min=1e12)).ids
        wait_until(lambda: "velvet cushion popular" not in texts(triton, "velvet cushion p"), 20,
                   "a query whose latest search found nothing dropped out")
