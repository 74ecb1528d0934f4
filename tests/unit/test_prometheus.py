"""deploy/prometheus and deploy/grafana: promtool accepts the config and the alert rules, the
rules' unit tests pass, `make observe`'s generated config is valid, and every productsearch_*
metric the rules and the dashboard read is one the service exports (runtime/metrics.py)."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from productsearch.control.observe import DEPLOY, write_config
from productsearch.runtime.metrics import FAMILIES, HISTOGRAM

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "deploy" / "grafana" / "productsearch.json"


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool is missing: `make test` installs Debian's prometheus package (apt-get install prometheus)")
    return path


def run(promtool: str, *args: str, cwd: Path = DEPLOY) -> str:
    done = subprocess.run([promtool, *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_config_and_rules_are_valid(promtool):
    assert "SUCCESS" in run(promtool, "check", "config", "prometheus.yml")
    assert re.search(r"SUCCESS: \d+ rules found", run(promtool, "check", "rules", "alerts.yml"))


def test_alert_rules_unit_tests_pass(promtool):
    assert "SUCCESS" in run(promtool, "test", "rules", "alerts_test.yml")


def test_make_observe_config_aims_at_the_local_server(promtool, tmp_path):
    config = write_config("127.0.0.1:18002", tmp_path, scrape_interval="1s")
    text = config.read_text()
    assert '"127.0.0.1:18002"' in text and str(DEPLOY / "alerts.yml") in text and '"triton:8002"' not in text
    run(promtool, "check", "config", str(config), cwd=tmp_path)


def exported_names() -> set[str]:
    names = set(FAMILIES)
    names |= {f"{n}_{s}" for n, (kind, _) in FAMILIES.items() if kind == HISTOGRAM for s in ("bucket", "count", "sum")}
    return names


def test_rules_and_dashboard_read_only_metrics_that_exist():
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    exprs.append((DEPLOY / "alerts.yml").read_text())
    used = {name for e in exprs for name in re.findall(r"\bproductsearch_[a-z_]+", e)}
    assert used and used <= exported_names(), used - exported_names()
    assert any("nv_inference_queue_duration_us" in e for e in exprs)  # Triton's queue time beside ours
    assert any("nv_inference_compute_infer_duration_us" in e for e in exprs)
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
