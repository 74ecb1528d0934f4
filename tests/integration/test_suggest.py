"""`suggest` through the public contract on the session tritonserver: prefixes of real demo
titles complete to suggestions that each find products, Chinese and one-typo prefixes, a product
upserted is suggestable in the next call, refusals (the server lives on)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from clients.catalog import CatalogClient
from clients.contract import Product, key_headers
from clients.keys import KeyClient
from clients.search import SearchClient
from clients.suggest import SuggestClient
from tests.conftest import DEMO_CATALOG

pytestmark = pytest.mark.integration
PRIVATE = "suggest-private"


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


def test_chinese_and_one_typo_prefixes(triton):
    assert all(text.startswith("红") for text, _ in suggest(triton, "红", top_k=5)) and suggest(triton, "红")
    assert "nordia" in [text for text, _ in suggest(triton, "nirdia", top_k=5)]


def test_a_product_upserted_is_suggested_in_the_next_call(triton):
    assert not suggest(triton, "zorblaxq")
    with CatalogClient(triton.grpc_url, timeout_s=60, key=triton.key) as client:
        client.upsert([Product("SG-1", "Zorblaxquix quantum kettle in teal", None, {"brand": "Zorblaxquix"})])
        try:
            assert suggest(triton, "zorblaxq") == [("zorblaxquix", 1)]
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
    assert suggest(triton, "quill", shop=PRIVATE, key=key) == [("quillfeather", 1)]


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
    assert got and got[0][0] == "nordia" and got[0][1] > 0
    main(["nordi", "--top-k", "3", "--url", triton.grpc_url])
    assert "nordia" in capsys.readouterr().out
