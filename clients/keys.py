"""API keys: a client class and a CLI for key management, scoped search tokens and the audit trail.

    python -m clients.keys create --scope search --shop acme [--expires 2027-01-31] [--rate 20 --burst 40] [--label web]
    python -m clients.keys list [--shop acme]
    python -m clients.keys revoke KEY_ID          python -m clients.keys rotate KEY_ID
    python -m clients.keys public acme [--private]
    python -m clients.keys audit --shop acme --since 1d
    PRODUCTSEARCH_PARENT_KEY=psk_... python -m clients.keys scoped KEY_ID --filter '{"categories": ["dress"], "price_max": 100}' --expires 2027-01-31

Management talks to the server's `catalog_admin` model with an admin key, read from
PRODUCTSEARCH_ADMIN_KEY or --key-file (default run/admin_key), never from the command line. A
new or rotated secret is printed once. `scoped` works offline: it signs a token with the parent
key's secret (from PRODUCTSEARCH_PARENT_KEY, --secret-file FILE, or stdin with --secret-file -);
the server verifies it against that key and applies its filters to every search.

Token format (the server's productsearch/catalog/keys/tokens.py checks the same):
    "pst_" + b64url(payload) + "." + b64url(HMAC-SHA256(HMAC-SHA256(secret, "scoped"), b64url(payload)))
    payload = {"expires": unix seconds or null, "filters": {...}, "key": parent key id}  (sorted, compact JSON)
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from clients.catalog import DEFAULT_KEY_FILE, CatalogClient
from clients.connection import ServiceError, add_connection_arguments, tls_from_args

PARENT_KEY_ENV = "PRODUCTSEARCH_PARENT_KEY"
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def key_id_of(secret: str) -> str:
    """The key id inside a secret (`psk_<id>_...`)."""
    if not secret.startswith("psk_") or secret.count("_") < 2:
        raise ValueError("that is not an API key secret (psk_<id>_...)")
    return secret.split("_", 2)[1]


def scoped_token(parent_secret: str, filters: dict, expires: float | None = None) -> str:
    """A scoped search token of the parent key: its filters always apply, until `expires` (unix s)."""
    k = hmac.new(parent_secret.encode(), b"scoped", hashlib.sha256).digest()
    payload = b64(json.dumps({"expires": None if expires is None else int(expires), "filters": filters,
                              "key": key_id_of(parent_secret)}, sort_keys=True, separators=(",", ":")).encode())
    return f"pst_{payload}.{b64(hmac.new(k, payload.encode(), hashlib.sha256).digest())}"


def parse_time(text: str | None) -> float | None:
    """An ISO date or datetime (UTC unless it says), or unix seconds; None stays None."""
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        pass
    moment = datetime.fromisoformat(text)
    return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).timestamp()


def parse_since(text: str) -> float:
    """'1d', '6h', '30m' ago, or a time (parse_time)."""
    if text and text[-1] in UNITS and text[:-1].replace(".", "", 1).isdigit():
        return time.time() - float(text[:-1]) * UNITS[text[-1]]
    return parse_time(text) or 0.0


class KeyClient(CatalogClient):
    """Key management through `catalog_admin` (an admin key)."""

    def create(self, scope: str, shops: list[str], expires: float | None = None, rate: float | None = None,
               burst: float | None = None, label: str = "") -> dict:
        """{"key": {...}, "secret": "psk_..."}: the secret is never shown again."""
        return self.admin("create_key", {"scope": scope, "shops": shops, "expires": expires, "rate": rate,
                                         "burst": burst, "label": label})

    def list(self, shop: str | None = None) -> list[dict]:
        return self.admin("list_keys", {"shop": shop})["keys"]

    def revoke(self, key_id: str) -> dict:
        return self.admin("revoke_key", {"id": key_id})["key"]

    def rotate(self, key_id: str) -> dict:
        return self.admin("rotate_key", {"id": key_id})

    def set_public(self, shop: str, public: bool = True) -> dict:
        return self.admin("set_public", {"shop": shop, "public": public})

    def audit(self, shop: str | None = None, since: float = 0.0, limit: int = 1000) -> list[dict]:
        return self.admin("audit", {"shop": shop, "since": since, "limit": limit})["entries"]


def parent_secret(secret_file: str | None) -> str:
    if secret_file == "-":
        return sys.stdin.readline().strip()
    if secret_file:
        return Path(secret_file).read_text().strip()
    if os.environ.get(PARENT_KEY_ENV):
        return os.environ[PARENT_KEY_ENV].strip()
    raise ValueError(f"the parent key's secret comes from {PARENT_KEY_ENV} or --secret-file (never the command line)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m clients.keys", description=__doc__.split("\n")[0])
    add_connection_arguments(parser)
    parser.add_argument("--key-file", default=str(DEFAULT_KEY_FILE), help="the admin key's file (else PRODUCTSEARCH_ADMIN_KEY)")
    sub = parser.add_subparsers(dest="action", required=True)
    create = sub.add_parser("create", help="a new key (its secret is printed once)")
    create.add_argument("--scope", choices=("search", "write", "admin"), default="search")
    create.add_argument("--shop", action="append", default=[], help="a shop it is for (repeatable; '*': every shop)")
    create.add_argument("--expires", default=None, help="ISO date/time (UTC) or unix seconds")
    create.add_argument("--rate", type=float, default=None, help="requests per second")
    create.add_argument("--burst", type=float, default=None, help="bucket size (default: the rate)")
    create.add_argument("--label", default="")
    sub.add_parser("list", help="every key (never a secret)").add_argument("--shop", default=None)
    sub.add_parser("revoke", help="revoke a key at once").add_argument("id")
    sub.add_parser("rotate", help="a new secret for a key (the old one stops working)").add_argument("id")
    public = sub.add_parser("public", help="mark a shop public (searches need no key) or --private")
    public.add_argument("shop")
    public.add_argument("--private", action="store_true")
    audit = sub.add_parser("audit", help="the audit trail, newest first")
    audit.add_argument("--shop", default=None)
    audit.add_argument("--since", default="1d", help="'1d', '6h', '30m' or an ISO time")
    audit.add_argument("--limit", type=int, default=1000)
    scoped = sub.add_parser("scoped", help="sign a scoped search token offline")
    scoped.add_argument("parent", help="the parent key's id (its secret: PRODUCTSEARCH_PARENT_KEY or --secret-file)")
    scoped.add_argument("--filter", default="{}", help='JSON: categories, price_min, price_max, in_stock')
    scoped.add_argument("--expires", default=None, help="ISO date/time (UTC) or unix seconds")
    scoped.add_argument("--secret-file", default=None, help="file holding the parent's secret ('-': stdin)")
    args = parser.parse_args(argv)
    try:
        if args.action == "scoped":
            secret = parent_secret(args.secret_file)
            if key_id_of(secret) != args.parent:
                raise ValueError(f"the secret given is not key {args.parent}'s")
            print(scoped_token(secret, json.loads(args.filter), parse_time(args.expires)))
            return 0
        with KeyClient(args.url, timeout_s=args.timeout, tls=tls_from_args(args), key_file=args.key_file) as client:
            if args.action == "create":
                out = client.create(args.scope, args.shop, parse_time(args.expires), args.rate, args.burst, args.label)
            elif args.action == "list":
                out = client.list(args.shop)
            elif args.action == "revoke":
                out = client.revoke(args.id)
            elif args.action == "rotate":
                out = client.rotate(args.id)
            elif args.action == "public":
                out = client.set_public(args.shop, not args.private)
            else:
                out = client.audit(args.shop, parse_since(args.since), args.limit)
    except (ServiceError, ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(out, indent=1, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
