"""A short headless Locust run against the real server: every request must succeed."""
import csv
import subprocess
import sys

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.integration


def test_locust_smoke_has_no_failures(triton, tmp_path):
    run = subprocess.run(
        [sys.executable, "-m", "locust", "-f", "loadtest/locustfile.py", "--host", triton.grpc_url,
         "--headless", "-u", "8", "-r", "8", "-t", "20s", "--only-summary", "--csv", str(tmp_path / "smoke"),
         "--exit-code-on-error", "1", "--stop-timeout", "10"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    with open(tmp_path / "smoke_stats.csv") as handle:
        rows = {row["Name"]: row for row in csv.DictReader(handle)}
    total = rows["Aggregated"]
    assert int(total["Request Count"]) > 20, run.stderr[-2000:]
    assert int(total["Failure Count"]) == 0, run.stderr[-2000:]
    assert {"search text", "search image", "search text+image"} <= rows.keys()
    assert run.returncode == 0, run.stderr[-2000:]
