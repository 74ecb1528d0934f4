"""Scoped search tokens: derived offline from a key's secret, verified by the server against that
key, carrying filters the server always applies (Typesense's scoped keys, Algolia's secured keys).

    token   = "pst_" + b64url(payload) + "." + b64url(HMAC-SHA256(k, b64url(payload)))
    k       = HMAC-SHA256(parent secret, "scoped")      (the key store keeps k, never the secret)
    payload = {"key": parent key id, "filters": {...}, "expires": unix seconds or null}

Filters: `categories` (list: results only of these), `price_min`, `price_max` (numbers),
`in_stock` (true). clients/keys.py signs the same way (the client package imports nothing of the
server, so it holds the twin of `sign`); the unit tests check the two agree.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import time

TOKEN_PREFIX = "pst_"
FILTERS = ("categories", "price_min", "price_max", "in_stock")
MAX_TOKEN_BYTES = 4096


class TokenError(ValueError):
    """A token that is malformed, tampered with or expired (the message says which)."""


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def check_filters(filters: dict) -> dict:
    """The filters a token may carry, checked (an unknown name or a bad value is refused)."""
    if not isinstance(filters, dict):
        raise TokenError("a scoped token's filters must be a JSON object")
    unknown = sorted(set(filters) - set(FILTERS))
    if unknown:
        raise TokenError(f"a scoped token cannot carry {unknown}: only {', '.join(FILTERS)}")
    out: dict = {}
    if "categories" in filters:
        values = filters["categories"]
        if not isinstance(values, list) or not values or not all(isinstance(v, str) and v for v in values):
            raise TokenError("categories must be a non-empty list of names")
        out["categories"] = sorted(set(values))
    for name in ("price_min", "price_max"):
        if filters.get(name) is not None:
            value = filters[name]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise TokenError(f"{name} must be a finite number")
            out[name] = float(value)
    if filters.get("in_stock"):
        out["in_stock"] = True
    return out


def sign(parent_id: str, k: bytes, filters: dict, expires: float | None) -> str:
    """A token of key `parent_id` (k: its signing key, store.signing_key(secret)); the filters are
    checked and signed as given (the same bytes clients/keys.py signs)."""
    check_filters(filters)
    payload = b64(json.dumps({"key": parent_id, "filters": filters,
                              "expires": None if expires is None else int(expires)},
                             sort_keys=True, separators=(",", ":")).encode())
    return f"{TOKEN_PREFIX}{payload}.{b64(hmac.new(k, payload.encode(), hashlib.sha256).digest())}"


def parent_of(token: str) -> tuple[str, dict, str, bytes]:
    """(parent key id, payload, signed part, signature) of a token, not yet verified."""
    if len(token) > MAX_TOKEN_BYTES or not token.startswith(TOKEN_PREFIX) or token.count(".") != 1:
        raise TokenError("the scoped token is malformed")
    signed, _, signature = token[len(TOKEN_PREFIX):].partition(".")
    try:
        payload = json.loads(unb64(signed))
        mac = unb64(signature)
    except ValueError:
        raise TokenError("the scoped token is malformed") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("key"), str):
        raise TokenError("the scoped token is malformed")
    return payload["key"], payload, signed, mac


def verify(token: str, k: bytes, now: float | None = None) -> dict:
    """The token's checked filters; raises TokenError if tampered with or expired."""
    _, payload, signed, mac = parent_of(token)
    if not hmac.compare_digest(hmac.new(k, signed.encode(), hashlib.sha256).digest(), mac):
        raise TokenError("the scoped token's signature does not match its key (tampered with, or its key was rotated)")
    expires = payload.get("expires")
    if expires is not None and (now if now is not None else time.time()) >= float(expires):
        raise TokenError("the scoped token has expired")
    return check_filters(payload.get("filters") or {})
