"""Key management actions of `catalog_admin` (admin keys only): create_key, list_keys,
revoke_key, rotate_key, set_public, audit. A new or rotated secret is in the answer once and
never again; every action is recorded in the audit trail under the admin key's id.
"""
from __future__ import annotations

from productsearch.catalog.keys.store import KeyError_
from productsearch.runtime.model_io import RequestError

KEY_ACTIONS = ("create_key", "list_keys", "revoke_key", "rotate_key", "set_public", "audit")
MAX_AUDIT_ROWS = 10_000


def number(payload: dict, name: str) -> float | None:
    value = payload.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RequestError(f"{name} must be a number, got {value!r}")
    return float(value)


def key_action(gate, principal, action: str, payload: dict) -> dict:
    """Do one key action; the result JSON (raises RequestError / KeyError_ for a bad payload)."""
    keys, audit = gate.keys, gate.audit
    if action == "create_key":
        shops = payload.get("shops") or []
        if not isinstance(shops, list):
            raise RequestError('create_key needs {"scope": "search|write|admin", "shops": ["..."]}')
        key, secret = keys.create(str(payload.get("scope", "search")), shops, number(payload, "expires"),
                                  number(payload, "rate"), number(payload, "burst"), str(payload.get("label", "")))
        audit.record([(principal.key_id, action, None, [key.id], None, {"scope": key.scope, "shops": list(key.shops)})])
        return {"key": key.public(), "secret": secret}
    if action == "rotate_key":
        key, secret = keys.rotate(str(payload.get("id", "")))
        audit.record([(principal.key_id, action, None, [key.id], None, None)])
        return {"key": key.public(), "secret": secret}
    if action == "revoke_key":
        key = keys.revoke(str(payload.get("id", "")))
        audit.record([(principal.key_id, action, None, [key.id], None, None)])
        return {"key": key.public()}
    if action == "list_keys":
        return {"keys": [k.public() for k in keys.keys(payload.get("shop"))]}
    if action == "set_public":
        shop = str(payload.get("shop", ""))
        keys.set_public(shop, bool(payload.get("public", True)))
        audit.record([(principal.key_id, action, shop, [], None, {"public": bool(payload.get("public", True))})])
        return {"shop": shop, "public": keys.is_public(shop)}
    if action == "audit":
        limit = int(number(payload, "limit") or 1000)
        if not 0 < limit <= MAX_AUDIT_ROWS:
            raise RequestError(f"limit must be 1..{MAX_AUDIT_ROWS}")
        return {"entries": audit.entries(payload.get("shop"), number(payload, "since") or 0.0, limit)}
    raise KeyError_(f"unknown key action {action!r}")
