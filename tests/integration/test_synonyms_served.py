"""Synonyms and "did you mean" through the public contract on the real tritonserver: synonyms set
while serving (client and CLI) change the next search that passes their SEQUENCE as MIN_SEQUENCE
(read-your-writes), show in EXPLAIN, and are refused with the reason for bad JSON, no key, a
search key and another shop's key (nothing changed, the server answering on); CORRECTED_QUERY
corrects a misspelt word of a real title to a search that returns the product, and leaves known
words and Chinese alone."""
from __future__ import annotations

import json

import pytest

from clients import catalog as catalog_cli
from clients.connection import ADMIN_KEY_ENV
from clients.contract import Product, ReadOptions, Relevance
from clients.keys import KeyClient
from clients.search import SearchClient
from tests.refusals import refused

pytestmark = pytest.mark.integration

SHOP, OTHER = "synonyms-a", "synonyms-b"
NEW_ID = "SY-ZORBLAX"
PRODUCTS = [Product(f"SY-{i}", title, None, {"category": category}) for i, (title, category) in enumerate([
    ("white canvas sneakers", "shoes"), ("black leather sneakers", "shoes"), ("blue ceramic coffee mug", "mug"),
    ("striped cotton t-shirt", "t-shirt"), ("green summer linen dress", "dress"), ("red enamel camping mug", "mug")])]
PRODUCTS.append(Product(NEW_ID, "Zorblax quantum kettle in teal", None, {"category": "kettle"}))


class Shops:
    """Two private shops on the session server, the admin's client, and keys per scope."""

    def __init__(self, server):
        self.server = server
        self.admin = KeyClient(server.grpc_url, timeout_s=30, key=server.key)
        for shop in (SHOP, OTHER):
            self.admin.create_shop(shop)
        self.sequence = max(self.admin.upsert(PRODUCTS, shop=SHOP))
        self.keys = {name: self.admin.create(scope, [shop])["secret"]
                     for name, scope, shop in (("write", "write", SHOP), ("search", "search", SHOP), ("other", "write", OTHER))}

    def search(self, text: str, sequence: int, key: str | None = None):
        with SearchClient(self.server.grpc_url, timeout_s=30, key=key or self.keys["search"]) as client:
            return client.search(text, top_k=5, read=ReadOptions(SHOP, sequence), relevance=Relevance(explain=True))


@pytest.fixture(scope="module")
def shops(triton):
    made = Shops(triton)
    try:
        yield made
    finally:
        made.admin.set_synonyms([], shop=SHOP)
        made.admin.close()


def test_synonyms_set_while_serving_change_the_next_search(shops):
    before = shops.search("flibbertigibbet", shops.sequence)
    assert "synonyms" not in before.explanations[0]["query"]
    with KeyClient(shops.server.grpc_url, timeout_s=30, key=shops.keys["write"]) as writer:
        sequence = writer.set_synonyms([["flibbertigibbet", "zorblax"], {"from": "tee", "to": "t-shirt"}], shop=SHOP)
        assert writer.synonyms(shop=SHOP) == [{"words": ["flibbertigibbet", "zorblax"]}, {"from": "tee", "to": ["t shirt"]}]
    after = shops.search("flibbertigibbet", sequence)  # read-your-writes: the synonyms' own SEQUENCE
    assert after.ids[0] == NEW_ID and after.catalog_sequence >= sequence
    assert after.explanations[0]["query"]["synonyms"] == {"added": ["zorblax"], "lexical_query": "flibbertigibbet zorblax"}
    tee = shops.search("tee", sequence)
    assert tee.ids[0] == "SY-3" and tee.explanations[0]["query"]["synonyms"]["added"] == ["t shirt"]
    assert tee.corrected_query == ""  # a word the shop gave a synonym is not corrected


def test_the_cli_sets_and_prints_synonyms(shops, tmp_path, monkeypatch, capsys):
    path = tmp_path / "synonyms.json"
    path.write_text(json.dumps([["sneakers", "trainers", "运动鞋"]], ensure_ascii=False), encoding="utf-8")
    monkeypatch.setenv(ADMIN_KEY_ENV, shops.keys["write"])  # never a secret in argv
    base = ["--url", shops.server.grpc_url, "--shop", SHOP, "--key-file", str(tmp_path / "none")]
    assert catalog_cli.main(base + ["synonyms", "--set", str(path)]) == 0
    sequence = json.loads(capsys.readouterr().out)["sequence"]
    assert catalog_cli.main(base + ["synonyms"]) == 0
    assert json.loads(capsys.readouterr().out) == {"synonyms": [{"words": ["sneakers", "trainers", "运动鞋"]}]}
    found = shops.search("trainers", sequence)
    assert set(found.ids[:2]) == {"SY-0", "SY-1"}
    assert found.explanations[0]["query"]["synonyms"]["added"] == ["sneakers", "运动鞋"]
    path.write_text('[["sneakers", "trainers"]', encoding="utf-8")
    assert catalog_cli.main(base + ["synonyms", "--set", str(path)]) == 2
    assert "synonyms.json: not JSON" in capsys.readouterr().err


def test_bad_synonyms_and_wrong_keys_are_refused_and_change_nothing(shops):
    with KeyClient(shops.server.grpc_url, timeout_s=30, retries=0, key=shops.keys["write"]) as writer:
        kept = writer.synonyms(shop=SHOP)
        refused(lambda: writer.set_synonyms([["sneakers"]], shop=SHOP), "INVALID_ARGUMENT",
                "set_synonyms: synonym 0: a multi-way list needs 2 to 32 phrases, got 1")
        refused(lambda: writer.set_synonyms([{"from": "tee", "too": "t-shirt"}], shop=SHOP), "INVALID_ARGUMENT",
                'synonym 0: a one-way entry is {"from": phrase, "to": phrase or [phrases]}')
        refused(lambda: writer.set_synonyms({"tee": "t-shirt"}, shop=SHOP), "INVALID_ARGUMENT", "must be a JSON list")
        refused(lambda: writer.admin("set_synonyms", None, SHOP), "INVALID_ARGUMENT", "must be a JSON list")
        refused(lambda: writer.set_synonyms([], shop=OTHER), "PERMISSION_DENIED", "is not for shop 'synonyms-b'")
        refused(lambda: writer.synonyms(shop=OTHER), "PERMISSION_DENIED", "is not for shop 'synonyms-b'")
    with KeyClient(shops.server.grpc_url, timeout_s=30, retries=0, key=shops.keys["search"]) as reader:
        assert reader.synonyms(shop=SHOP) == kept, "the search scope reads them"
        refused(lambda: reader.set_synonyms([], shop=SHOP), "PERMISSION_DENIED", "this needs 'write'")
    with KeyClient(shops.server.grpc_url, timeout_s=30, retries=0, key=shops.keys["other"]) as stranger:
        refused(lambda: stranger.set_synonyms([], shop=SHOP), "PERMISSION_DENIED", "is not for shop 'synonyms-a'")
    with KeyClient(shops.server.grpc_url, timeout_s=30, retries=0, key=None, key_file=None) as nobody:
        refused(lambda: nobody.set_synonyms([], shop=SHOP), "UNAUTHENTICATED", "no key")
        refused(lambda: nobody.synonyms(shop=SHOP), "UNAUTHENTICATED", "no key")
    assert shops.admin.synonyms(shop=SHOP) == kept
    assert shops.search("kettle", shops.sequence).ids[0] == NEW_ID  # the server answers on


def test_a_misspelt_word_of_a_title_is_corrected_to_a_search_that_returns_it(shops):
    found = shops.search("Zorblx", shops.sequence)
    assert found.corrected_query == "zorblax" and found.ids[0] == NEW_ID
    assert found.explanations[0]["query"]["corrected"] == {"query": "zorblax", "words": {"zorblx": "zorblax"},
                                                          "searched": True}


def test_the_demo_catalog_corrects_a_misspelt_brand_and_leaves_known_words_and_chinese(triton, demo_catalog):
    with SearchClient(triton.grpc_url, timeout_s=30) as client:
        found = client.search("Callowy", top_k=10)
        assert found.corrected_query == "calloway"
        records = {p["id"]: p for p in demo_catalog}
        assert all("calloway" in json.dumps(records[pid], ensure_ascii=False).casefold() for pid in found.ids)
        for text in ("red dress", "Calloway t-shirt", "红色连衣裙", "连衣裙不要红色"):
            assert client.search(text, top_k=3).corrected_query == "", text
