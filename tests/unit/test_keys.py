"""The key store, scoped token signing and the rate limiter, on real SQLite files."""
from __future__ import annotations

import time
from datetime import datetime, timezone

import pytest

from clients.keys import parse_since, parse_time, scoped_token
from productsearch.catalog.keys.audit import AuditLog
from productsearch.catalog.keys.bucket import RateLimiter
from productsearch.catalog.keys.store import KeyError_, KeyStore, digest, keys_dir, signing_key
from productsearch.catalog.keys.tokens import TokenError, check_filters, sign, verify


def test_keys_are_stored_hashed_and_found_by_their_secret_in_constant_time(tmp_path):
    store = KeyStore(tmp_path)
    key, secret = store.create("write", ["acme"], label="web", rate=5)
    assert store.find(secret) == key and key.burst == 5 and key.covers("acme") and not key.covers("other")
    assert key.allows("search") and key.allows("write") and not key.allows("admin")
    assert store.find(secret[:-1] + ("A" if secret[-1] != "A" else "B")) is None
    assert store.find("psk_nope_x") is None and store.find("not a key") is None
    data = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    assert secret.encode() not in data and secret.split("_", 2)[2].encode() not in data
    store.close()
    assert digest(secret).encode() in b"".join(p.read_bytes() for p in tmp_path.iterdir())


def test_revocation_and_rotation_reach_another_store_instance_within_its_refresh(tmp_path):
    one, two = KeyStore(tmp_path), KeyStore(tmp_path, refresh_s=0.1)
    key, secret = one.create("search", ["acme"])
    time.sleep(0.15)
    assert two.find(secret) == key
    one.revoke(key.id)
    time.sleep(0.15)
    assert two.find(secret).revoked is not None
    other, old = one.create("search", ["acme"])
    _, new = one.rotate(other.id)
    time.sleep(0.15)
    assert two.find(old) is None and two.find(new).id == other.id
    assert two.token_key(other.id) == signing_key(new)


def test_bad_key_requests_are_refused_with_the_reason(tmp_path):
    store = KeyStore(tmp_path)
    with pytest.raises(KeyError_, match="scope must be one of"):
        store.create("owner", ["acme"])
    with pytest.raises(KeyError_, match="needs at least one shop"):
        store.create("search", [])
    with pytest.raises(KeyError_, match="shop name"):
        store.create("search", ["../etc"])
    with pytest.raises(KeyError_, match="rate > 0"):
        store.create("search", ["acme"], rate=0)
    with pytest.raises(KeyError_, match="no key with id"):
        store.revoke("nope")


def test_shops_are_private_by_default_except_the_default_shop(tmp_path):
    store = KeyStore(tmp_path)
    assert store.is_public("default") and not store.is_public("acme")
    store.set_public("acme", True)
    store.set_public("default", False)
    assert store.is_public("acme") and not store.is_public("default")


def test_the_client_signs_tokens_the_server_verifies_and_tampering_is_caught():
    secret = "psk_abc123abc123_" + "s" * 43
    k = signing_key(secret)
    filters = {"categories": ["dress"], "price_max": 100}
    token = scoped_token(secret, filters, 2_000_000_000)
    assert token == sign("abc123abc123", k, filters, 2_000_000_000)
    assert verify(token, k, now=1_900_000_000) == {"categories": ["dress"], "price_max": 100.0}
    with pytest.raises(TokenError, match="expired"):
        verify(token, k, now=2_000_000_001)
    with pytest.raises(TokenError, match="signature"):
        verify(token, signing_key(secret + "x"))
    payload, _, mac = token.partition(".")
    forged = scoped_token(secret, {"categories": ["dress", "mug"]}, 2_000_000_000).partition(".")[0]
    with pytest.raises(TokenError, match="signature"):
        verify(forged + "." + mac, k)
    with pytest.raises(TokenError, match="malformed"):
        verify("pst_!!!.###", k)
    with pytest.raises(TokenError, match="cannot carry"):
        check_filters({"shop": "other"})
    with pytest.raises(TokenError, match="finite"):
        check_filters({"price_max": float("inf")})


def test_the_bucket_allows_its_burst_then_its_rate_and_keys_are_apart(tmp_path):
    limiter, other = RateLimiter(tmp_path), RateLimiter(tmp_path)  # two instances, one bucket file
    now = 1000.0
    assert [limiter.take("a", 2.0, 3.0, now) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert other.take("a", 2.0, 3.0, now) == pytest.approx(0.5)
    assert other.take("b", 2.0, 3.0, now) == 0.0, "another key has its own bucket"
    assert limiter.take("a", 2.0, 3.0, now + 0.5) == 0.0
    assert limiter.take("a", 2.0, 3.0, now + 0.5) > 0
    assert [limiter.take("a", 2.0, 3.0, now + 100) for _ in range(4)].count(0.0) == 3, "refills to the burst only"


def test_the_audit_log_keeps_key_ids_shops_ids_and_sequences(tmp_path):
    log = AuditLog(tmp_path)
    log.record([("k1", "upsert", "acme", ["P1", "P2"], 7, None), ("k2", "delete", "other", ["P3"], 8, None)])
    assert [(e["key_id"], e["ids"], e["sequence"]) for e in log.entries("acme")] == [("k1", ["P1", "P2"], 7)]
    assert log.entries(since=time.time() + 10) == []


def test_cli_times(monkeypatch):
    assert parse_time("2027-01-31") == datetime(2027, 1, 31, tzinfo=timezone.utc).timestamp()
    assert parse_time(None) is None and parse_time("12.5") == 12.5
    assert abs(parse_since("1d") - (time.time() - 86400)) < 5


def test_the_key_store_sits_beside_a_sqlite_catalog(tmp_path, monkeypatch):
    monkeypatch.delenv("PRODUCTSEARCH_KEYS", raising=False)
    assert keys_dir(f"sqlite://{tmp_path}") == tmp_path / "_keys"
    with pytest.raises(KeyError_, match="PRODUCTSEARCH_KEYS"):
        keys_dir("milvus://host:19530")
    monkeypatch.setenv("PRODUCTSEARCH_KEYS", str(tmp_path / "shared"))
    assert keys_dir("milvus://host:19530") == tmp_path / "shared"
