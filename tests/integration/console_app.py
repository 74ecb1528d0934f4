"""The search console app for a browser test: uvicorn in a thread of the test process, on a free
port, talking to the given tritonserver address through the client package; a signed-in page;
the README's screenshots (CONSOLE_SCREENSHOTS=DIR)."""
from __future__ import annotations

import contextlib
import os
import threading
import time
from pathlib import Path

from tests.conftest import DEMO_CATALOG
from tests.integration.browser import VIEWPORT


@contextlib.contextmanager
def running_console(grpc_url: str, timeout_s: float = 10.0):
    """The console's base address while it runs (stopped on leaving)."""
    import uvicorn

    from productsearch.console.app import create_app
    from productsearch.control.processes import free_ports

    (port,) = free_ports(1)
    server = uvicorn.Server(uvicorn.Config(create_app(grpc_url, [DEMO_CATALOG], timeout_s=timeout_s), host="127.0.0.1",
                                           port=port, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "the console did not start"
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def sign_in(browser, base_url: str, key: str):
    """A new browser page (its own context: close `page.context`) signed in with `key`, typed into the form only."""
    context = browser.new_context(viewport=VIEWPORT, base_url=base_url)
    page = context.new_page()
    page.goto("/signin")
    page.fill("#key", key)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base_url}/")
    return page


def screenshot(page, name: str) -> None:
    """The page's view (the fixed viewport) into CONSOLE_SCREENSHOTS/name, when that is set."""
    folder = os.environ.get("CONSOLE_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / name), full_page=False)
