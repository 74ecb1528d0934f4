"""The admin key: the secret that unlocks Triton's model-repository API (load, unload,
generation swaps) and is the bootstrap admin API key (catalog writes, key management).

PRODUCTSEARCH_ADMIN_KEY wins; otherwise a random key is made once in run/admin_key (mode 0600,
git-ignored) and read by the tools on this host. Nothing secret is committed.
"""
from __future__ import annotations

import os
from pathlib import Path

from clients.connection import ADMIN_KEY_ENV, admin_key as configured_admin_key  # noqa: F401 - ADMIN_KEY_ENV re-exported
from productsearch.control.paths import DEFAULT_RUN_DIR
from productsearch.runtime.authorize import KEY_HEADERS, WRITE_KEY as WRITE_KEY_HEADER  # noqa: F401 - re-exported
from productsearch.runtime.authorize import API_KEY_HEADER

ADMIN_HEADER = "admin-key"  # HTTP callers send this header
GRPC_ADMIN_HEADER = f"triton-grpc-protocol-{ADMIN_HEADER}"  # Triton's gRPC prefix for restricted protocols
# Triton's protocols that take the admin key: load/unload (generation swaps); shared memory (a
# caller could map and read or overwrite another caller's registered region); log and trace
# settings (verbose logs and trace files would record requests); statistics (per-model counts and
# timings, which the loopback-only metrics endpoint serves, but gRPC may listen publicly). Health,
# metadata, model config and inference stay open.
RESTRICTED_PROTOCOLS = "model-repository,shared-memory,logging,trace,statistics"
# The private benchmark servers (loopback, a throwaway key) leave statistics open: perf_analyzer
# reads them for every run and could only carry a key on its command line.
BENCH_RESTRICTED_PROTOCOLS = "model-repository,shared-memory,logging,trace"


# Values that are not keys: the Kubernetes Secret template's, and the usual stand-ins
PLACEHOLDER_KEYS = frozenset({"replace-with-a-random-key", "changeme", "change-me", "secret", "admin", "password",
                              "example", "test"})
MIN_KEY_CHARS = 16


class WeakAdminKey(SystemExit):
    """A placeholder or short admin key: the service refuses to start with it."""


def check_admin_key(key: str) -> str:
    """`key`, unless it is a placeholder or shorter than MIN_KEY_CHARS (the message never shows it)."""
    if key.strip().lower() in PLACEHOLDER_KEYS:
        raise WeakAdminKey(f"{ADMIN_KEY_ENV} is a placeholder value: make a random one, e.g. "
                           "python3 -c 'import secrets; print(secrets.token_urlsafe(24))'")
    if len(key.strip()) < MIN_KEY_CHARS:
        raise WeakAdminKey(f"{ADMIN_KEY_ENV} has {len(key.strip())} characters: an admin key needs at least "
                           f"{MIN_KEY_CHARS} (e.g. secrets.token_urlsafe(24))")
    return key


def admin_key(run_dir: Path = DEFAULT_RUN_DIR) -> str:
    """The key (PRODUCTSEARCH_ADMIN_KEY, checked, else run/admin_key), made in run/admin_key if there is none."""
    path = Path(run_dir) / "admin_key"
    if os.environ.get(ADMIN_KEY_ENV):
        return check_admin_key(os.environ[ADMIN_KEY_ENV])
    known = configured_admin_key(path)
    if known:
        return known
    if not path.exists():
        import secrets

        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(24))
    return path.read_text().strip()


def write_headers(key: str | None = None) -> dict[str, str]:
    """gRPC headers that carry an API key (the admin key by default): catalog writes, key management."""
    return {API_KEY_HEADER: f"Bearer {key or admin_key()}"}


def admin_headers(key: str | None = None) -> dict[str, str]:
    """gRPC headers (tritonclient.grpc `headers=`) that unlock load/unload on our servers."""
    return {GRPC_ADMIN_HEADER: key or admin_key()}


def main(argv: list[str] | None = None) -> int:
    """`python -m productsearch.control.admin check`: exit 1 (saying why) unless PRODUCTSEARCH_ADMIN_KEY
    holds a real key; the container scripts run it before tritonserver (the key never on argv)."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    if args != ["check"]:
        print("usage: python -m productsearch.control.admin check", file=sys.stderr)
        return 2
    key = os.environ.get(ADMIN_KEY_ENV, "")
    if not key:
        print(f"{ADMIN_KEY_ENV} is empty", file=sys.stderr)
        return 1
    try:
        check_admin_key(key)
    except WeakAdminKey as err:
        print(err, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
