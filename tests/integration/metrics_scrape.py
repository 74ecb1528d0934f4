"""Reading the service's metrics in integration tests: scrape Triton's metrics endpoint, sum the
samples of one family and labels, wait for the stubs' next flush; a real Prometheus (Debian's
package, as `make observe` starts it) scraping a test server every second."""
from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request
from contextlib import contextmanager

import pytest

from loadtest.metrics_text import scrape, total  # noqa: F401 - re-exported: the tests import them from here

QUERY = "probe linen lantern"
def wait_for(port: int, expected: dict, timeout_s: float = 15.0):
    """The scrape once every (name, labels) -> value in `expected` holds (the stubs flush each second)."""
    deadline = time.monotonic() + timeout_s
    while True:
        text, samples = scrape(port)
        got = {key: total(samples, key[0], **dict(key[1])) for key in expected}
        if got == expected or time.monotonic() > deadline:
            return text, samples, got
        time.sleep(0.2)


@pytest.fixture(scope="module")
def prometheus(triton, tmp_path_factory):
    """A real Prometheus scraping the session server every second, our alert rules loaded."""
    with running_prometheus(triton.metrics_port, tmp_path_factory.mktemp("prometheus")) as url:
        yield url


@contextmanager
def running_prometheus(metrics_port: int, out_dir, rules=None):
    """Prometheus scraping 127.0.0.1:metrics_port every second with `rules` (default: the shipped
    alerts.yml); stopped by its PID."""
    from productsearch.control.observe import start_prometheus
    from productsearch.control.processes import free_ports

    port = free_ports(1)[0]
    process = start_prometheus(f"127.0.0.1:{metrics_port}", out_dir, port, scrape_interval="1s", rules=rules)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=30)


def prom_query(base: str, expr: str) -> list:
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    answer = json.loads(urllib.request.urlopen(url, timeout=10).read())
    assert answer["status"] == "success", answer
    return answer["data"]["result"]


