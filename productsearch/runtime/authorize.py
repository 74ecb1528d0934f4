"""Who sent a request and what it may do: the API key of a request, checked against the key store
(catalog/keys), for every model that reads or writes a shop.

One header carries any key: `authorization: Bearer <secret>` (or `x-api-key: <secret>`; the old
`catalog-write-key` is an alias for one release). tritonserver forwards these headers to the
models as request parameters (--grpc-header-forward-pattern), ensemble steps included. The
server's admin key (PRODUCTSEARCH_ADMIN_KEY) is the bootstrap admin key; the others live in the
key store. A refusal names its reason - no key, unknown or revoked key, expired, wrong shop,
wrong scope, rate limited - and never whether another shop exists. Triton 2.51's python backend
has no PERMISSION_DENIED / UNAUTHENTICATED / RESOURCE_EXHAUSTED codes, so a refusal is
INVALID_ARGUMENT whose message starts with the status it means (clients raise that status).
"""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from productsearch.catalog.keys.audit import AuditLog
from productsearch.catalog.keys.bucket import RateLimiter
from productsearch.catalog.keys.store import SCOPES, KeyStore, keys_dir
from productsearch.catalog.keys.tokens import TOKEN_PREFIX, TokenError, parent_of, verify
from productsearch.runtime.model_io import RequestError

API_KEY_HEADER = "authorization"  # "Bearer <secret>"
X_API_KEY_HEADER = "x-api-key"
WRITE_KEY = "catalog-write-key"  # the old header: an alias for one release
KEY_HEADERS = (API_KEY_HEADER, X_API_KEY_HEADER, WRITE_KEY)
ADMIN_KEY_ENV = "PRODUCTSEARCH_ADMIN_KEY"
BOOTSTRAP_ID = "admin"  # the audit trail's name for the server's own admin key


class Refused(RequestError):
    """A request its key does not allow; `reason` is the metrics label."""

    def __init__(self, status: str, reason: str, message: str):
        super().__init__(f"{status}: {message}")
        self.reason = reason


@dataclass(frozen=True)
class Principal:
    """The key a request came with: its id (never the secret), scope, shops, a scoped token's filters."""

    key_id: str
    scope: str
    shops: tuple[str, ...]
    filters: dict | None = None

    def covers(self, shop: str) -> bool:
        return self.scope == "admin" or "*" in self.shops or shop in self.shops

    def allows(self, scope: str) -> bool:
        return SCOPES.index(self.scope) >= SCOPES.index(scope)


def offered_key(request) -> str | None:
    """The key a request carries, from the forwarded headers (request parameters)."""
    try:
        params = json.loads(request.parameters() or "{}")
    except ValueError:
        return None
    for name in KEY_HEADERS:
        value = params.get(name)
        if isinstance(value, str) and value.strip():
            value = value.strip()
            if name == API_KEY_HEADER:
                scheme, _, rest = value.partition(" ")
                value = rest.strip() if scheme.lower() == "bearer" else value
            return value
    return None


class Gatekeeper:
    """Resolves and checks the keys of one model instance's requests."""

    def __init__(self, catalog_url: str, repository: Path | None = None):
        folder = keys_dir(catalog_url, repository)
        self.keys = KeyStore(folder)
        self.limiter = RateLimiter(folder)
        self.audit = AuditLog(folder)
        admin = os.environ.get(ADMIN_KEY_ENV, "")
        self.admin_digest = hashlib.sha256(admin.encode()).digest() if admin else None

    def principal(self, request, limit: bool = True) -> Principal | None:
        """The request's key (None: it has none); raises Refused for a key that cannot be used.
        `limit`: take a token from the key's rate limit (once per request: its first python step)."""
        secret = offered_key(request)
        return None if secret is None else self.resolve(secret, limit)

    def resolve(self, secret: str, limit: bool = True) -> Principal:
        if self.admin_digest is not None and hmac.compare_digest(hashlib.sha256(secret.encode()).digest(),
                                                                 self.admin_digest):
            return Principal(BOOTSTRAP_ID, "admin", ("*",))
        filters = None
        if secret.startswith(TOKEN_PREFIX):
            try:
                parent_id = parent_of(secret)[0]
            except TokenError as err:
                raise Refused("UNAUTHENTICATED", "unknown_key", str(err)) from None
            key = self.keys.get(parent_id)
        else:
            key = self.keys.find(secret)
        if key is None:
            raise Refused("UNAUTHENTICATED", "unknown_key", "the key sent is unknown or revoked")
        if key.revoked is not None:
            raise Refused("UNAUTHENTICATED", "revoked_key", f"key {key.id} is unknown or revoked (revoked)")
        if key.expires is not None and key.expires <= time.time():
            raise Refused("UNAUTHENTICATED", "expired", f"key {key.id} has expired")
        scope, key_id = key.scope, key.id
        if secret.startswith(TOKEN_PREFIX):
            try:
                try:
                    filters = verify(secret, self.keys.token_key(key.id) or b"")
                except TokenError:
                    self.keys.refresh(check=True)  # its key rotated since the last look?
                    filters = verify(secret, self.keys.token_key(key.id) or b"")
            except TokenError as err:
                raise Refused("UNAUTHENTICATED", "expired" if "expired" in str(err) else "unknown_key",
                              f"{err} (key {key.id})") from None
            scope, key_id = "search", f"{key.id}/scoped"
        if limit and key.rate is not None:
            wait = self.limiter.take(key.id, key.rate, key.burst or key.rate)
            if wait:
                raise Refused("RESOURCE_EXHAUSTED", "rate_limited",
                              f"key {key.id} is rate limited ({key.rate:g} requests/s, burst {key.burst:g}): "
                              f"retry in {wait:.2f} s")
        self.keys.touch(key.id)
        return Principal(key_id, scope, key.shops, filters)

    def allow(self, principal: Principal | None, shop: str, scope: str) -> None:
        """Raise Refused unless `principal` may do `scope` on `shop` (searches of a public shop need no key)."""
        if scope == "search" and self.keys.is_public(shop):
            return
        if principal is None:
            raise Refused("UNAUTHENTICATED", "no_key", f"no key: {'searching' if scope == 'search' else 'this action on'} "
                          f"shop {shop!r} needs a key in the header '{API_KEY_HEADER}: Bearer <key>'")
        if not principal.covers(shop):
            raise Refused("PERMISSION_DENIED", "wrong_shop", f"key {principal.key_id} is not for shop {shop!r}")
        if not principal.allows(scope):
            raise Refused("PERMISSION_DENIED", "wrong_scope",
                          f"key {principal.key_id} has scope {principal.scope!r}; this needs {scope!r}")

    def search_rows(self, request, rows: list) -> list:
        """The scorer's query rows, each authorised for its own SHOP (public shops need no key),
        a scoped key's filters applied to each; raises Refused."""
        principal = self.principal(request)
        for row in rows:
            self.allow(principal, row.shop, "search")
            if principal is not None:
                narrow(row, principal.filters)
        return rows

    def close(self) -> None:
        for part in (self.keys, self.limiter, self.audit):
            part.close()


def narrow(row, filters: dict | None) -> None:
    """Apply a scoped token's filters to a query row: the request's own filters can only narrow them."""
    if not filters:
        return
    if "categories" in filters:
        allowed = filters["categories"]
        mine = row.categories if row.categories is not None else allowed
        row.categories = [c for c in mine if c in allowed]
        if not row.categories:
            raise Refused("PERMISSION_DENIED", "wrong_scope",
                          f"CATEGORIES {mine} are outside this scoped key's categories {allowed}")
    if "price_min" in filters:
        row.price_min = filters["price_min"] if row.price_min is None else max(row.price_min, filters["price_min"])
    if "price_max" in filters:
        row.price_max = filters["price_max"] if row.price_max is None else min(row.price_max, filters["price_max"])
    if row.price_min is not None and row.price_max is not None and row.price_min > row.price_max:
        raise Refused("PERMISSION_DENIED", "wrong_scope",
                      f"the price range asked for is outside this scoped key's range "
                      f"{filters.get('price_min')}..{filters.get('price_max')}")
    if filters.get("in_stock"):
        row.in_stock = True
