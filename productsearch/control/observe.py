"""`make observe`: a real Prometheus (Debian's `prometheus` package) scraping the running service's
metrics endpoint, with deploy/prometheus/alerts.yml loaded, in the background.

    python -m productsearch.control.observe start [--metrics-port N]   # idempotent
    python -m productsearch.control.observe stop

It writes run/prometheus/prometheus.yml (deploy/prometheus/prometheus.yml aimed at the local
server: the metrics port of run/triton.json, else TRITON_METRICS_PORT / 8002), keeps its data
in run/prometheus/data and listens on 127.0.0.1:PROMETHEUS_PORT (9090).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
from pathlib import Path

from productsearch.control.paths import DEFAULT_PORTS, DEFAULT_RUN_DIR, REPO_ROOT
from productsearch.control.processes import pid_alive, stop_pid, wait_until_answering
from productsearch.control.service import read_state

DEPLOY = REPO_ROOT / "deploy" / "prometheus"
DEFAULT_PROMETHEUS_PORT = 9090


def write_config(target: str, out_dir: Path, scrape_interval: str = "15s", rules: Path | None = None) -> Path:
    """deploy/prometheus/prometheus.yml scraping `target` (host:port), its rules (`rules`, else
    deploy/prometheus/alerts.yml) by absolute path."""
    text = (DEPLOY / "prometheus.yml").read_text()
    text = text.replace('"triton:8002"', json.dumps(target)).replace("- alerts.yml", f"- {rules or DEPLOY / 'alerts.yml'}")
    text = text.replace("scrape_interval: 15s", f"scrape_interval: {scrape_interval}")
    text = text.replace("evaluation_interval: 15s", f"evaluation_interval: {scrape_interval}")
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "prometheus.yml"
    path.write_text(text)
    return path


def start_prometheus(target: str, out_dir: Path, port: int, scrape_interval: str = "15s",
                     timeout_s: float = 60.0, rules: Path | None = None) -> subprocess.Popen:
    """Prometheus scraping `target`, ready (its /-/ready answers); its log is out_dir/prometheus.log."""
    binary = shutil.which("prometheus")
    if binary is None:
        raise SystemExit("prometheus is not installed: `make observe` installs Debian's package")
    config = write_config(target, out_dir, scrape_interval, rules)
    log = open(out_dir / "prometheus.log", "ab")
    process = subprocess.Popen([binary, f"--config.file={config}", f"--storage.tsdb.path={out_dir / 'data'}",
                                f"--web.listen-address=127.0.0.1:{port}", "--web.enable-lifecycle"],
                               stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    wait_until_answering(process, f"http://127.0.0.1:{port}/-/ready", timeout_s, "prometheus", out_dir / "prometheus.log")
    return process


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m productsearch.control.observe", description=__doc__.split("\n")[0])
    parser.add_argument("action", choices=["start", "stop"])
    parser.add_argument("--run-dir", type=Path, default=DEFAULT_RUN_DIR)
    parser.add_argument("--metrics-port", type=int, default=None)
    parser.add_argument("--port", type=int, default=int(os.environ.get("PROMETHEUS_PORT", DEFAULT_PROMETHEUS_PORT)))
    args = parser.parse_args(argv)
    out_dir = args.run_dir / "prometheus"
    pid_file = out_dir / "prometheus.pid"
    running = int(pid_file.read_text()) if pid_file.exists() else None
    if running is not None and not pid_alive(running):
        running = None
    if args.action == "stop":
        if running is not None:
            stop_pid(running)
        pid_file.unlink(missing_ok=True)
        return 0
    if running is not None:
        print(f"prometheus already running (PID {running}): http://127.0.0.1:{args.port}")
        return 0
    state = read_state(args.run_dir)
    port = args.metrics_port or (state or {}).get("metrics_port") or int(
        os.environ.get("TRITON_METRICS_PORT", DEFAULT_PORTS["metrics"]))
    process = start_prometheus(f"127.0.0.1:{port}", out_dir, args.port)
    pid_file.write_text(str(process.pid))
    print(f"prometheus (PID {process.pid}) scrapes 127.0.0.1:{port} with deploy/prometheus/alerts.yml: "
          f"http://127.0.0.1:{args.port}/alerts ; stop: python -m productsearch.control.observe stop")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
