"""API keys on a real tritonserver: a refusal per reason, shops apart, scoped tokens that cannot be
widened, revocation seen by a second server on the same store within 1 s, hashed storage, rate
limits that leave other keys alone, and the audit trail of a 200-write run."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from clients.contract import Filters, Product, ReadOptions, recommend_inputs
from clients.keys import KeyClient, scoped_token
from clients.search import SearchClient
from tests.conftest import ROOT, serve_generation, start_server
from tests.refusals import refused

pytestmark = pytest.mark.integration

SHOP_A, SHOP_B = "keys-a", "keys-b"
PRODUCTS = [Product(f"KA-{i}", f"{title} {i}", None, {"category": category, "price": price})
            for i, (title, category, price) in enumerate([
                ("blue ceramic coffee mug", "mug", 12.0), ("red enamel camping mug", "mug", 30.0),
                ("gold plated collector mug", "mug", 240.0), ("green summer linen dress", "dress", 60.0),
                ("black evening silk dress", "dress", 180.0), ("striped cotton t-shirt", "t-shirt", 15.0)])]


class Keys:
    """The session server with two private shops and an admin key client."""

    def __init__(self, server):
        self.server = server
        self.admin = KeyClient(server.grpc_url, timeout_s=30, key=server.key)
        for shop in (SHOP_A, SHOP_B):  # shops exist once the admin creates them
            self.admin.create_shop(shop)
        self.sequence = max(max(self.admin.upsert(PRODUCTS, shop=shop)) for shop in (SHOP_A, SHOP_B))

    def make(self, scope: str = "search", shops=(SHOP_A,), **options) -> tuple[str, str]:
        """(key id, secret) of a new key."""
        made = self.admin.create(scope, list(shops), **options)
        return made["key"]["id"], made["secret"]

    def client(self, key: str | None, url: str | None = None) -> SearchClient:
        return SearchClient(url or self.server.grpc_url, timeout_s=30, retries=0, key=key)

    def search(self, key: str | None, shop: str = SHOP_A, filters: Filters | None = None, url: str | None = None):
        with self.client(key, url) as client:
            read = ReadOptions(shop, self.sequence if shop in (SHOP_A, SHOP_B) else 0)
            return client.search("mug", top_k=6, filters=filters, read=read)


@pytest.fixture(scope="module")
def keys(triton):
    made = Keys(triton)
    try:
        yield made
    finally:
        made.admin.close()


def test_a_private_shop_needs_a_key_and_the_public_default_shop_does_not(keys):
    refused(lambda: keys.search(None), "UNAUTHENTICATED", "no key: searching shop 'keys-a' needs a key")
    assert keys.search(None, shop="default").ids, "the demo (default) shop is public: keyless searches work"
    _, secret = keys.make()
    assert set(keys.search(secret).ids) <= {p.id for p in PRODUCTS} and keys.search(secret).ids


def test_an_unknown_key_is_refused(keys):
    refused(lambda: keys.search("psk_000000000000_not-a-real-secret"), "UNAUTHENTICATED", "unknown or revoked")
    refused(lambda: keys.search("anything else"), "UNAUTHENTICATED", "unknown or revoked")


def test_a_revoked_key_is_refused(keys):
    key_id, secret = keys.make()
    assert keys.search(secret).ids
    keys.admin.revoke(key_id)
    time.sleep(0.5)  # the admin model wrote it: every instance re-reads within 0.25 s
    refused(lambda: keys.search(secret), "UNAUTHENTICATED", "revoked")


def test_an_expired_key_is_refused(keys):
    _, secret = keys.make(expires=time.time() - 1)
    refused(lambda: keys.search(secret), "UNAUTHENTICATED", f"has expired")


def test_a_key_of_another_shop_is_refused_without_saying_whether_the_shop_exists(keys):
    _, secret = keys.make(shops=(SHOP_B,))
    there = refused(lambda: keys.search(secret, shop=SHOP_A), "PERMISSION_DENIED", "is not for shop 'keys-a'")
    nowhere = refused(lambda: keys.search(secret, shop="no-such-shop"), "PERMISSION_DENIED", "is not for shop")
    assert there.replace(SHOP_A, "X") == nowhere.replace("no-such-shop", "X")
    refused(lambda: keys.search(None, shop="no-such-shop"), "UNAUTHENTICATED", "no key")


def test_a_search_key_cannot_write(keys):
    _, secret = keys.make("search")
    with KeyClient(keys.server.grpc_url, timeout_s=30, retries=0, key=secret) as client:
        for call in (lambda: client.upsert([Product("KA-NEW", "x", None, {})], shop=SHOP_A),
                     lambda: client.update_fields({"KA-0": {"price": 1.0}}, shop=SHOP_A),
                     lambda: client.delete(["KA-0"], shop=SHOP_A),
                     lambda: client.set_rules([], shop=SHOP_A)):
            refused(call, "PERMISSION_DENIED", "has scope 'search'; this needs 'write'")
        assert client.rules(shop=SHOP_A) == [], "read-only catalog actions of its shop are allowed"
        refused(lambda: client.create("admin", []), "PERMISSION_DENIED", "key management needs 'admin'")


def test_a_rate_limited_key_is_refused_at_once(keys):
    _, secret = keys.make(rate=0.2, burst=2)
    keys.search(secret), keys.search(secret)
    started = time.monotonic()
    message = refused(lambda: keys.search(secret), "RESOURCE_EXHAUSTED", "is rate limited (0.2 requests/s, burst 2)")
    assert "retry in" in message and time.monotonic() - started < 5


def test_a_write_key_of_shop_a_cannot_write_read_rules_of_or_list_shop_b(keys):
    _, secret = keys.make("write", shops=(SHOP_A,))
    with KeyClient(keys.server.grpc_url, timeout_s=30, retries=0, key=secret) as client:
        assert client.update_fields({"KA-0": {"price": 11.0}}, shop=SHOP_A)[0] > 0
        for call in (lambda: client.upsert([Product("KB-NEW", "x", None, {})], shop=SHOP_B),
                     lambda: client.update_fields({"KA-0": {"price": 1.0}}, shop=SHOP_B),
                     lambda: client.delete(["KA-0"], shop=SHOP_B),
                     lambda: client.rules(shop=SHOP_B), lambda: client.set_rules([], shop=SHOP_B),
                     lambda: client.info(shop=SHOP_B), lambda: client.product("KA-0", shop=SHOP_B),
                     lambda: client.products(["KA-0"], shop=SHOP_B)):
            refused(call, "PERMISSION_DENIED", "is not for shop 'keys-b'")
        assert set(client.shops()) == {SHOP_A}, "it lists its own shops only"
        refused(lambda: client.list(), "PERMISSION_DENIED", "key management needs 'admin'")


def test_a_scoped_token_applies_its_filters_and_a_request_can_only_narrow_them(keys):
    key_id, secret = keys.make("search")
    token = scoped_token(secret, {"categories": ["mug"], "price_max": 100}, time.time() + 3600)
    mugs_under_100 = {p.id for p in PRODUCTS if p.fields["category"] == "mug" and p.fields["price"] <= 100}
    assert set(keys.search(token).ids) == mugs_under_100
    assert set(keys.search(token, filters=Filters(price_max=1000)).ids) == mugs_under_100, "a wider price is narrowed"
    assert set(keys.search(token, filters=Filters(categories=["mug", "dress"])).ids) == mugs_under_100
    assert set(keys.search(token, filters=Filters(price_max=20)).ids) == {"KA-0"}, "a narrower one applies"
    refused(lambda: keys.search(token, filters=Filters(categories=["dress"])), "PERMISSION_DENIED",
            "outside this scoped key's categories")
    refused(lambda: keys.search(token, shop=SHOP_B), "PERMISSION_DENIED", "is not for shop 'keys-b'")
    wider = scoped_token("psk_" + key_id + "_forged-secret", {"categories": ["mug", "dress"]}, None)
    refused(lambda: keys.search(wider), "UNAUTHENTICATED", "signature does not match")
    head, _, mac = token.partition(".")
    tampered = scoped_token(secret, {"categories": ["mug", "dress"]}, None).partition(".")[0] + "." + mac
    refused(lambda: keys.search(tampered), "UNAUTHENTICATED", "signature does not match")
    expired = scoped_token(secret, {"categories": ["mug"]}, time.time() - 1)
    refused(lambda: keys.search(expired), "UNAUTHENTICATED", "has expired")
    with KeyClient(keys.server.grpc_url, timeout_s=30, retries=0, key=token) as client:
        refused(lambda: client.update_fields({"KA-0": {"price": 1.0}}, shop=SHOP_A), "PERMISSION_DENIED",
                "this needs 'write'")


def test_the_key_database_holds_no_secret_in_plaintext(keys):
    _, secret = keys.make("write", label="plaintext check")
    token = scoped_token(secret, {"categories": ["mug"]})
    folder = keys.server.repository / "catalog_store" / "_keys"
    data = b"".join(p.read_bytes() for p in folder.iterdir() if p.is_file())
    assert b"plaintext check" in data, "the key's row is in these files"
    assert secret.encode() not in data and secret.split("_", 2)[2].encode() not in data
    assert token.encode() not in data and keys.server.key.encode() not in data


def test_a_flood_from_one_key_leaves_another_keys_searches_whole(keys):
    _, flooder = keys.make(rate=2, burst=2, label="flooder")
    _, calm = keys.make(label="calm")
    stop, outcomes = threading.Event(), {"ok": 0, "limited": 0, "other": []}
    lock = threading.Lock()

    def flood():
        with grpcclient.InferenceServerClient(keys.server.grpc_url) as raw:
            while not stop.is_set():
                try:
                    raw.infer("recommend", recommend_inputs(["KA-0"], 3, read=ReadOptions(SHOP_A)),
                              headers={"x-api-key": flooder})
                    kind = "ok"
                except InferenceServerException as err:
                    kind = "limited" if "RESOURCE_EXHAUSTED: " in (err.message() or "") else err.message()
                with lock:
                    if kind in ("ok", "limited"):
                        outcomes[kind] += 1
                    else:
                        outcomes["other"].append(kind)

    threads = [threading.Thread(target=flood) for _ in range(4)]
    started = time.monotonic()
    for t in threads:
        t.start()
    calm_results = []
    try:
        with keys.client(calm) as client:
            for _ in range(30):
                calm_results.append(client.search("mug", top_k=3, read=ReadOptions(SHOP_A)).ids)
    finally:
        stop.set()
        for t in threads:
            t.join()
    elapsed = time.monotonic() - started
    sent = outcomes["ok"] + outcomes["limited"]
    assert not outcomes["other"], outcomes["other"][:3]
    assert sent / elapsed >= 10 * 2, f"the flood reached only {sent / elapsed:.1f} req/s"
    assert outcomes["limited"] > 0 and outcomes["ok"] <= 2 + 2 * elapsed + 1
    assert len(calm_results) == 30 and all(calm_results), "every search of the other key succeeded"


def test_the_audit_trail_names_the_key_of_every_write_in_a_200_write_run(keys):
    key_id, secret = keys.make("write", label="audited")
    since = time.time() - 1
    with KeyClient(keys.server.grpc_url, timeout_s=60, key=secret) as client:
        def write(i: int) -> int:
            return client.update_fields({f"KA-{i % 6}": {"stock": i}}, shop=SHOP_A)[0]

        with ThreadPoolExecutor(8) as pool:
            sequences = set(pool.map(write, range(200)))
    assert len(sequences) == 200
    env = dict(os.environ, PRODUCTSEARCH_ADMIN_KEY=keys.server.key)
    out = subprocess.run([sys.executable, "-m", "clients.keys", "--url", keys.server.grpc_url, "--timeout", "60",
                          "audit", "--shop", SHOP_A, "--since", str(since), "--limit", "5000"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    entries = [e for e in json.loads(out.stdout) if e["action"] == "update"]
    audited = {e["sequence"]: e for e in entries if e["sequence"] in sequences}
    assert set(audited) == sequences, f"{len(sequences - set(audited))} writes without an audit entry"
    assert all(e["key_id"] == key_id and e["shop"] == SHOP_A and len(e["ids"]) == 1 for e in audited.values())
    assert secret not in out.stdout


def test_the_key_cli_creates_rotates_and_revokes_and_signs_scoped_tokens(keys):
    env = dict(os.environ, PRODUCTSEARCH_ADMIN_KEY=keys.server.key)

    def cli(*args, extra_env=None):
        out = subprocess.run([sys.executable, "-m", "clients.keys", "--url", keys.server.grpc_url, *args], cwd=ROOT,
                             env=dict(env, **(extra_env or {})), capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        return out.stdout

    made = json.loads(cli("create", "--scope", "search", "--shop", SHOP_A, "--label", "cli", "--expires", "2099-01-31"))
    key_id, secret = made["key"]["id"], made["secret"]
    assert keys.search(secret).ids
    listed = json.loads(cli("list", "--shop", SHOP_A))
    assert any(k["id"] == key_id and k["label"] == "cli" for k in listed) and secret not in json.dumps(listed)
    token = cli("scoped", key_id, "--filter", '{"categories": ["dress"]}', "--expires", "2099-01-31",
                extra_env={"PRODUCTSEARCH_PARENT_KEY": secret}).strip()
    found = set(keys.search(token).ids)
    assert found and found <= {p.id for p in PRODUCTS if p.fields["category"] == "dress"}
    rotated = json.loads(cli("rotate", key_id))["secret"]
    time.sleep(0.5)
    refused(lambda: keys.search(secret), "UNAUTHENTICATED", "unknown or revoked")
    refused(lambda: keys.search(token), "UNAUTHENTICATED", "signature does not match")  # tokens follow their key
    assert keys.search(rotated).ids
    cli("revoke", key_id)
    time.sleep(0.5)
    refused(lambda: keys.search(rotated), "UNAUTHENTICATED", "revoked")


def test_a_shop_marked_public_needs_no_key(keys):
    refused(lambda: keys.search(None, shop=SHOP_B), "UNAUTHENTICATED", "no key")
    keys.admin.set_public(SHOP_B, True)
    try:
        time.sleep(0.5)
        assert keys.search(None, shop=SHOP_B).ids
    finally:
        keys.admin.set_public(SHOP_B, False)
    time.sleep(0.5)
    refused(lambda: keys.search(None, shop=SHOP_B), "UNAUTHENTICATED", "no key")


def test_a_revocation_reaches_a_second_server_on_the_same_store_within_1_s(keys, tmp_path):
    """Two tritonservers on one model repository and catalog store (so one key store)."""
    second = start_server(keys.server.repository, tmp_path / "second.log", [])
    try:
        serve_generation(second, keys.server.repository)
        key_id, secret = keys.make()
        assert keys.search(secret, url=second.grpc_url).ids
        keys.admin.revoke(key_id)  # through the first server
        time.sleep(1.0)
        refused(lambda: keys.search(secret, url=second.grpc_url), "UNAUTHENTICATED", "revoked")
    finally:
        second.stop()


def test_shared_memory_log_trace_and_statistics_need_the_admin_key(triton):
    """Triton's own protocols beyond inference: shared memory, log and trace settings, statistics
    (and load/unload, test_hot_swap) are refused without the admin key, over gRPC and HTTP;
    health and inference stay open."""
    import tritonclient.http as httpclient

    from productsearch.control.admin import ADMIN_HEADER, GRPC_ADMIN_HEADER

    refused = ("get_system_shared_memory_status", "get_log_settings", "get_trace_settings", "get_inference_statistics")
    with grpcclient.InferenceServerClient(triton.grpc_url) as client:
        for headers in (None, {GRPC_ADMIN_HEADER: "wrong"}):
            for call in refused:
                with pytest.raises(InferenceServerException, match="restricted"):
                    getattr(client, call)(headers=headers)
            with pytest.raises(InferenceServerException, match="restricted"):
                client.register_system_shared_memory("probe", "/probe-region", 64, headers=headers)
            with pytest.raises(InferenceServerException, match="restricted"):
                client.update_log_settings({"log_verbose_level": 1}, headers=headers)
        admin = {GRPC_ADMIN_HEADER: triton.key}
        for call in refused:
            getattr(client, call)(headers=admin)
        assert client.get_inference_statistics("search", headers=admin).model_stats and client.is_server_live()
    with httpclient.InferenceServerClient(triton.http_url) as client:
        with pytest.raises(InferenceServerException, match="restricted|403|Forbidden|not allowed"):
            client.get_log_settings()
        assert "log_verbose_level" in client.get_log_settings(headers={ADMIN_HEADER: triton.key})
