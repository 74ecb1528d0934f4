"""A test hook: stop a scorer from tailing one shop's catalog, so a test can watch the lag grow
and the CatalogLagging alert fire (tests/integration/test_observability.py).

Off in production: it is honoured only when PRODUCTSEARCH_TEST_HOOKS_DIR is set in the server's
environment when it starts (the test fixtures set it; nothing else does). Then, while the file
<that dir>/pause_tailing.<shop> exists, every follower of that shop reads the store's head but
applies nothing (the lag gauges grow); removing the file resumes tailing.
"""
from __future__ import annotations

import os
from pathlib import Path

HOOKS_ENV = "PRODUCTSEARCH_TEST_HOOKS_DIR"
HOOKS_DIR = os.environ.get(HOOKS_ENV)  # read once, at the stub's start


def pause_file(hooks_dir: str | Path, shop: str) -> Path:
    return Path(hooks_dir) / f"pause_tailing.{shop}"


def tailing_paused(shop: str) -> bool:
    return HOOKS_DIR is not None and pause_file(HOOKS_DIR, shop).exists()
