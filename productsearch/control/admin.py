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


def admin_key(run_dir: Path = DEFAULT_RUN_DIR) -> str:
    """The key (PRODUCTSEARCH_ADMIN_KEY, else run/admin_key), made in run/admin_key if there is none."""
    path = Path(run_dir) / "admin_key"
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
