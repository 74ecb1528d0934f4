"""The key store: API keys (scope, shops, expiry, rate limit, label, times) and which shops are
public, in one SQLite database beside the catalog store (`<store>/_keys/keys.sqlite`, or
PRODUCTSEARCH_KEYS), shared by every model instance and every replica on that store.

A secret is `psk_<key id>_<43 random characters>` (256 bits). Only its sha256 is stored, and the
offered secret's digest is compared with hmac.compare_digest; beside it the store keeps
HMAC(secret, "scoped") - the key that verifies the scoped tokens derived from the secret offline
(tokens.py) - never the secret itself. Every instance holds the keys in memory and re-reads
them when `PRAGMA data_version` says another connection committed, checked at most every
`refresh_s` (0.25 s): a revocation reaches every instance and replica within that; a key it does not know (made or
rotated since) makes it look at once.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import sqlite3
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from productsearch.catalog.records import RecordError
from productsearch.catalog.rows import DEFAULT_SHOP, check_shop
from productsearch.catalog.sqlite.connection import connect

KEYS_ENV = "PRODUCTSEARCH_KEYS"
KEYS_DIR = "_keys"  # not a shop name (those start with a letter or a digit)
SCOPES = ("search", "write", "admin")
SECRET_PREFIX = "psk_"
REFRESH_S = 0.25
TOUCH_EVERY_S = 60.0  # last_used is written at most this often per key and instance

SCHEMA = """
CREATE TABLE IF NOT EXISTS keys (
    id TEXT PRIMARY KEY, secret_hash TEXT NOT NULL, signing_key TEXT NOT NULL, scope TEXT NOT NULL,
    shops TEXT NOT NULL, expires REAL, rate REAL, burst REAL, label TEXT NOT NULL DEFAULT '',
    created REAL NOT NULL, revoked REAL, last_used REAL);
CREATE TABLE IF NOT EXISTS shop_access (shop TEXT PRIMARY KEY, public INTEGER NOT NULL);
"""


class KeyError_(ValueError):
    """A key management request that cannot be done (unknown id, bad scope or shop)."""


def keys_dir(catalog_url: str, repository: Path | None = None) -> Path:
    """Where the key database lives: PRODUCTSEARCH_KEYS (a folder), else beside a SQLite catalog
    store, else <repository>/_keys (a Milvus deployment sets PRODUCTSEARCH_KEYS to a shared folder)."""
    if os.environ.get(KEYS_ENV):
        return Path(os.environ[KEYS_ENV])
    if catalog_url.startswith("sqlite://"):
        return Path(catalog_url[len("sqlite://"):]) / KEYS_DIR
    if "://" not in catalog_url:
        return Path(catalog_url) / KEYS_DIR
    if repository is None:
        raise KeyError_(f"no key store for {catalog_url!r}: set {KEYS_ENV} to a folder shared by the replicas")
    return Path(repository) / KEYS_DIR


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def signing_key(secret: str) -> bytes:
    """The key scoped tokens of this secret are signed with: HMAC-SHA256(secret, "scoped")."""
    return hmac.new(secret.encode(), b"scoped", hashlib.sha256).digest()


def secret_key_id(secret: str) -> str | None:
    """The key id a secret names (`psk_<id>_...`), None when it is not shaped like ours."""
    if not secret.startswith(SECRET_PREFIX):
        return None
    key_id, sep, rest = secret[len(SECRET_PREFIX):].partition("_")
    return key_id if sep and rest else None


@dataclass(frozen=True)
class Key:
    """One key as the server sees it (never its secret)."""

    id: str
    scope: str
    shops: tuple[str, ...]
    expires: float | None = None
    rate: float | None = None
    burst: float | None = None
    label: str = ""
    created: float = 0.0
    revoked: float | None = None
    last_used: float | None = None

    def covers(self, shop: str) -> bool:
        return self.scope == "admin" or "*" in self.shops or shop in self.shops

    def allows(self, scope: str) -> bool:
        return SCOPES.index(self.scope) >= SCOPES.index(scope)

    def public(self) -> dict:
        """What `list` shows."""
        out = asdict(self)
        out["shops"] = list(self.shops)
        return out


def row_key(row: sqlite3.Row) -> Key:
    return Key(row["id"], row["scope"], tuple(json.loads(row["shops"])), row["expires"], row["rate"], row["burst"],
               row["label"], row["created"], row["revoked"], row["last_used"])


def check_shop_name(shop: str) -> str:
    try:
        return check_shop(str(shop))
    except RecordError as err:
        raise KeyError_(str(err)) from None


def check_scope(scope: str) -> str:
    if scope not in SCOPES:
        raise KeyError_(f"scope must be one of {', '.join(SCOPES)}, not {scope!r}")
    return scope


def check_limit(rate, burst) -> tuple[float | None, float | None]:
    if rate is None:
        return None, None
    rate = float(rate)
    burst = float(burst if burst is not None else max(rate, 1.0))
    if not (rate > 0 and burst >= 1):
        raise KeyError_(f"a rate limit needs rate > 0 requests/s and burst >= 1, got {rate:g} and {burst:g}")
    return rate, burst


class KeyStore:
    """The keys of one deployment; thread-safe; cached in memory, re-read on change."""

    def __init__(self, folder: Path, refresh_s: float = REFRESH_S):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.path = self.folder / "keys.sqlite"
        self.refresh_s = refresh_s
        self._lock = threading.RLock()
        self._db = connect(self.path)
        self._db.row_factory = sqlite3.Row
        self._db.executescript(SCHEMA)
        os.chmod(self.path, 0o600)
        self._version = None
        self._checked = 0.0
        self._keys: dict[str, tuple[Key, str, str]] = {}  # id -> (key, secret digest, signing key hex)
        self._access: dict[str, bool] = {}
        self._touched: dict[str, float] = {}
        self.refresh(force=True)

    def refresh(self, force: bool = False, check: bool = False) -> None:
        """Re-read the keys if another connection changed them (looked at most every refresh_s,
        or now with `check`; `force` re-reads whatever)."""
        with self._lock:
            now = time.monotonic()
            if not force and not check and now - self._checked < self.refresh_s:
                return
            self._checked = now
            version = self._db.execute("PRAGMA data_version").fetchone()[0]
            if not force and version == self._version:
                return
            self._version = version
            rows = self._db.execute("SELECT * FROM keys").fetchall()
            self._keys = {r["id"]: (row_key(r), r["secret_hash"], r["signing_key"]) for r in rows}
            self._access = {r["shop"]: bool(r["public"]) for r in self._db.execute("SELECT * FROM shop_access")}

    def _write(self, sql: str, params: tuple) -> int:
        with self._lock:
            changed = self._db.execute(sql, params).rowcount
            self.refresh(force=True)
            return changed

    # --- reads (the request path) ---
    def find(self, secret: str) -> Key | None:
        """The key whose secret this is (revoked and expired ones included: the caller says why it
        refuses), None for an unknown secret. The digest is compared in constant time."""
        self.refresh()
        key_id = secret_key_id(secret)
        if key_id is None:
            return None
        entry = self._keys.get(key_id)
        if entry is None or not hmac.compare_digest(digest(secret), entry[1]):
            self.refresh(check=True)  # a key made or rotated in the last refresh_s: one cheap PRAGMA
            entry = self._keys.get(key_id)
            if entry is None or not hmac.compare_digest(digest(secret), entry[1]):
                return None
        return entry[0]

    def get(self, key_id: str) -> Key | None:
        self.refresh()
        if key_id not in self._keys:
            self.refresh(check=True)
        entry = self._keys.get(key_id)
        return entry[0] if entry else None

    def token_key(self, key_id: str) -> bytes | None:
        """The key that verifies scoped tokens derived from key `key_id`."""
        self.refresh()
        entry = self._keys.get(key_id)
        return bytes.fromhex(entry[2]) if entry else None

    def is_public(self, shop: str) -> bool:
        """Shops are private unless marked public; the default (demo) shop is public unless marked private."""
        self.refresh()
        return self._access.get(shop, shop == DEFAULT_SHOP)

    def touch(self, key_id: str) -> None:
        """Record the key's last use (at most once a minute per instance: each write is seen by all)."""
        now = time.time()
        if now - self._touched.get(key_id, 0.0) < TOUCH_EVERY_S:
            return
        self._touched[key_id] = now
        self._write("UPDATE keys SET last_used=? WHERE id=?", (now, key_id))

    # --- management (the key_admin actions) ---
    def create(self, scope: str, shops: list[str], expires: float | None = None, rate: float | None = None,
               burst: float | None = None, label: str = "") -> tuple[Key, str]:
        """A new key and its secret (the only time the secret is seen)."""
        scope = check_scope(scope)
        names = sorted({s if s == "*" else check_shop_name(s) for s in shops})
        if scope != "admin" and not names:
            raise KeyError_("a search or write key needs at least one shop ('*' for every shop)")
        rate, burst = check_limit(rate, burst)
        key_id = secrets.token_hex(6)
        secret = f"{SECRET_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
        self._write("INSERT INTO keys (id, secret_hash, signing_key, scope, shops, expires, rate, burst, label, created)"
                    " VALUES (?,?,?,?,?,?,?,?,?,?)",
                    (key_id, digest(secret), signing_key(secret).hex(), scope, json.dumps(names),
                     None if expires is None else float(expires), rate, burst, str(label)[:200], time.time()))
        return self.get(key_id), secret

    def rotate(self, key_id: str) -> tuple[Key, str]:
        """A new secret for the key (same id, scope, shops); the old secret stops working."""
        key = self._known(key_id)
        secret = f"{SECRET_PREFIX}{key.id}_{secrets.token_urlsafe(32)}"
        self._write("UPDATE keys SET secret_hash=?, signing_key=? WHERE id=?",
                    (digest(secret), signing_key(secret).hex(), key.id))
        return self.get(key.id), secret

    def revoke(self, key_id: str) -> Key:
        key = self._known(key_id)
        self._write("UPDATE keys SET revoked=? WHERE id=? AND revoked IS NULL", (time.time(), key.id))
        return self.get(key.id)

    def keys(self, shop: str | None = None) -> list[Key]:
        self.refresh(force=True)
        return sorted((entry[0] for entry in self._keys.values() if shop is None or shop in entry[0].shops),
                      key=lambda k: k.created)

    def set_public(self, shop: str, public: bool) -> None:
        self._write("INSERT INTO shop_access VALUES (?, ?) ON CONFLICT(shop) DO UPDATE SET public=excluded.public",
                    (check_shop_name(shop), int(bool(public))))

    def _known(self, key_id: str) -> Key:
        self.refresh(force=True)
        key = self.get(str(key_id))
        if key is None:
            raise KeyError_(f"no key with id {key_id!r}")
        return key

    def close(self) -> None:
        self._db.close()
