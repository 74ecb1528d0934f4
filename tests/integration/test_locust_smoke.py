"""A short headless Locust run against the real server: every request must succeed."""
import csv
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def locust_server(triton, tmp_path_factory):
    """A server of its own (one for both tests) over a copy of the session server's catalog:
    Triton 2.51 can segfault when Locust's exit cancels calls in flight (server issue #7368), and
    that must not take the session server down with it."""
    from productsearch.control.repository import link_repository
    from tests.conftest import serve_generation, start_server

    tmp_path = tmp_path_factory.mktemp("locust")
    repository = link_repository(triton.repository, tmp_path / "model_repository", generations=[1], with_catalogs=True)
    server = start_server(repository, tmp_path / "triton.log", [])
    try:
        serve_generation(server, repository)
        server.repository, server.root = repository, tmp_path
        yield server
    finally:
        server.stop()


def running(server):
    """The module's server, started again (and said so in the summary) if the previous Locust's
    exit crashed it (Triton 2.51, server issue #7368: a cancellation racing a response)."""
    import warnings

    from productsearch.control.processes import pid_alive
    from tests.conftest import serve_generation

    if server.pid is not None and pid_alive(server.pid):
        return server
    warnings.warn(pytest.PytestWarning(f"the Locust test server had died (log {server.log_file}); starting it again"))
    server.pid = None
    server.start()
    serve_generation(server, server.repository)
    return server


def test_locust_smoke_has_no_failures(locust_server, tmp_path):
    triton = locust_server
    run = subprocess.run(
        [sys.executable, "-m", "locust", "-f", "loadtest/locustfile.py", "--host", triton.grpc_url,
         "--headless", "-u", "8", "-r", "8", "-t", "10s", "--only-summary", "--csv", str(tmp_path / "smoke"),
         "--exit-code-on-error", "1", "--stop-timeout", "10"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, env=dict(os.environ, PRODUCTSEARCH_ADMIN_KEY=triton.key),
    )
    with open(tmp_path / "smoke_stats.csv") as handle:
        rows = {row["Name"]: row for row in csv.DictReader(handle)}
    total = rows["Aggregated"]
    assert int(total["Request Count"]) > 20, run.stderr[-2000:]
    assert int(total["Failure Count"]) == 0, run.stderr[-2000:]
    assert {"search text", "search image", "search text+image", "search filtered", "search hybrid+facets", "recommend"} <= rows.keys()
    assert "upsert_products" in rows, "the catalog writer writes beside the shoppers"
    assert run.returncode == 0, run.stderr[-2000:]


def test_locust_web_ui_swarms_and_exits_cleanly(locust_server):
    """Non-headless mode: the UI answers, a swarm started from it searches without failures, and
    Locust exits promptly on SIGTERM (no hang in gRPC's channel close)."""
    triton = running(locust_server)
    import json
    import signal
    import time
    import urllib.parse
    import urllib.request

    from productsearch.control.processes import free_ports

    port, = free_ports(1)
    base = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "locust", "-f", "loadtest/locustfile.py", "--host", triton.grpc_url,
         "--web-host", "127.0.0.1", "--web-port", str(port)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env=dict(os.environ, PRODUCTSEARCH_ADMIN_KEY=triton.key),
    )
    try:
        page = ""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not page:
            try:
                page = urllib.request.urlopen(base + "/", timeout=2).read().decode()
            except OSError:
                time.sleep(0.5)
        assert "<html" in page.lower()
        form = urllib.parse.urlencode({"user_count": 4, "spawn_rate": 4, "host": triton.grpc_url}).encode()
        assert json.loads(urllib.request.urlopen(base + "/swarm", data=form, timeout=10).read())["success"]
        stats: dict = {}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            time.sleep(1)
            stats = {s["name"]: s for s in json.loads(urllib.request.urlopen(base + "/stats/requests", timeout=10).read())["stats"]}
            if stats.get("Aggregated", {}).get("num_requests", 0) >= 10:
                break
        assert stats["Aggregated"]["num_requests"] >= 10, stats
        assert stats["Aggregated"]["num_failures"] == 0, stats
        assert json.loads(urllib.request.urlopen(base + "/stop", data=b"", timeout=10).read())["success"]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
