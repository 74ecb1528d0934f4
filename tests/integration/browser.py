"""Headless Chromium for the browser tests: Debian's `chromium` (the project's setup installs
it) driven by Playwright through its executable path; Playwright downloads nothing.

While Playwright's sync API runs, its event loop is the main thread's running loop (so
asyncio.run() there fails): a test file whose other tests use asyncio takes `chromium()` for
the one test that needs a browser instead of the module-scoped fixture."""
from __future__ import annotations

import contextlib
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
VIEWPORT = {"width": 1280, "height": 900}


@contextlib.contextmanager
def chromium():
    """Debian's chromium, headless, while the block runs."""
    if not Path(CHROMIUM).exists():
        pytest.fail("Debian's chromium is not installed: `make test` installs it (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="module")
def browser():
    with chromium() as browser:
        yield browser
