"""What client cancellations (short gRPC deadlines) do to the supervised service.

    python -m loadtest.cancel_bench --write

Triton 2.51 (the server in the nvidia-pytriton wheel and the 24.10 container) sometimes
segfaults when a gRPC client cancels a request just as it completes (server issue #7368; fixed
upstream by PRs #7840, #8078, #8220). Any client can do this with a deadline shorter than the
work, so the service has to survive it: `make serve`'s supervisor starts a dead server again.

The service runs as `make serve` runs it (launcher + supervisor, private run directory and
ports, the built demo generation). For each deadline, `--storm-clients` threads send text+image
queries with that deadline for `--storm-s` seconds while `--steady-clients` threads search with
a normal 10 s deadline. Reported per deadline: requests sent by the storm and how they ended,
server crashes (supervisor restarts), and for the steady clients: answers, failures and the
longest time without an answer (the downtime a crash costs).
"""
from __future__ import annotations

import argparse
import collections
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

from clients.search import SearchClient, SearchError
from loadtest.private_server import load_demo_catalog, prepare_repository
from loadtest.report import publish
from loadtest.search_load import SearchLoad
from loadtest.workload import ROOT
from productsearch.control.admin import admin_key
from productsearch.control.processes import free_ports
from productsearch.control.service import read_state

PHOTO = ROOT / "data" / "demo_catalog" / "images" / "P00001.png"


def launcher(action: str, run_dir: Path, repository: Path | None = None, ports=()) -> str:
    cmd = [sys.executable, "-m", "productsearch.control.launcher", action, "--run-dir", str(run_dir)]
    if repository is not None:
        cmd += ["--model-repository", str(repository), "--http-port", str(ports[0]),
                "--grpc-port", str(ports[1]), "--metrics-port", str(ports[2])]
    env = {k: v for k, v in os.environ.items() if k not in ("TRITON_HOST", "PRODUCTSEARCH_ADMIN_KEY")}
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    if done.returncode not in (0, 3):
        raise RuntimeError(f"launcher {action} failed:\n{done.stdout}{done.stderr}")
    return done.stdout


def storm(url: str, deadline_s: float, clients: int, seconds: float) -> collections.Counter:
    """`clients` threads sending queries with `deadline_s` for `seconds`; outcome -> count."""
    photo = PHOTO.read_bytes()
    outcomes: collections.Counter = collections.Counter()
    lock = threading.Lock()
    end = time.monotonic() + seconds

    def run() -> None:
        with SearchClient(url, timeout_s=deadline_s, retries=0) as client:
            while time.monotonic() < end:
                try:
                    client.search("red striped t-shirt", image=photo, top_k=1000)
                    outcome = "OK"
                except SearchError as err:
                    outcome = err.status.replace("StatusCode.", "")
                    if outcome in ("UNAVAILABLE", "NOT_FOUND"):
                        time.sleep(0.05)  # the server is down or starting: do not spin
                with lock:
                    outcomes[outcome] += 1

    threads = [threading.Thread(target=run) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes


def longest_gap(answers: list, start: float, end: float) -> float:
    """Longest time in [start, end] without a steady answer arriving."""
    times = sorted([start] + [c.received for c in answers if start <= c.received <= end] + [end])
    return max(b - a for a, b in zip(times, times[1:]))


def wait_serving(url: str, timeout_s: float = 300) -> None:
    with SearchClient(url, timeout_s=timeout_s, retries=10_000, backoff_s=0.5) as client:
        client.search("red mug", top_k=1)


def measure(deadlines_ms: list[float], storm_clients: int, steady_clients: int, storm_s: float, log=print) -> str:
    rows = []
    repository, generation = prepare_repository(ROOT / "run" / "bench", log)  # shared with loadtest.bench
    run_dir, ports = ROOT / "run" / "cancel_bench", free_ports(3)  # its logs stay for a post-mortem
    shutil.rmtree(run_dir, ignore_errors=True)
    url = f"127.0.0.1:{ports[1]}"
    try:
        launcher("start", run_dir, repository, ports)
        load_demo_catalog(url, admin_key(run_dir), repository, log)
        for deadline_ms in deadlines_ms:
            before = read_state(run_dir)
            with SearchLoad(url, steady_clients, pause_on_failure_s=0.1, timeout_s=10, retries=0) as steady:
                start = time.monotonic()
                outcomes = storm(url, deadline_ms / 1000, storm_clients, storm_s)
                wait_serving(url)  # a crash near the end: count its downtime too
                end = time.monotonic()
            after = read_state(run_dir) or {}
            crashes = after.get("restarts", 0) - before.get("restarts", 0)
            rows.append((deadline_ms, sum(outcomes.values()), outcomes, crashes, len(steady.answers),
                         len(steady.failures), longest_gap(steady.answers, start, end)))
            log(f"deadline {deadline_ms:g} ms: {dict(outcomes)}, crashes {crashes}, steady answers "
                f"{len(steady.answers)}, failures {len(steady.failures)}, longest gap {rows[-1][-1]:.1f} s")
        supervisor_log = (run_dir / "supervisor.log").read_text()
    finally:
        launcher("stop", run_dir)
    restarts = [line for line in supervisor_log.splitlines() if "died" in line or "started again" in line]
    table = ["| deadline ms | storm requests | DEADLINE_EXCEEDED | OK | UNAVAILABLE / NOT_FOUND (server down or starting) "
             "| other | server crashes | steady answers | steady failures | longest steady gap s |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for deadline_ms, total, outcomes, crashes, answers, failures, gap in rows:
        down = outcomes["UNAVAILABLE"] + outcomes["NOT_FOUND"]
        other = total - outcomes["DEADLINE_EXCEEDED"] - outcomes["OK"] - down
        table.append(f"| {deadline_ms:g} | {total} | {outcomes['DEADLINE_EXCEEDED']} | {outcomes['OK']} | "
                     f"{down} | {other} | {crashes} | {answers} | {failures} | {gap:.1f} |")
    table.append("\nsupervisor log (crashes and restarts):\n\n```\n" + "\n".join(restarts or ["(none)"]) + "\n```")
    return "\n".join(table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.cancel_bench", description=__doc__.split("\n")[0])
    parser.add_argument("--deadlines-ms", type=float, nargs="+", default=[3, 30, 300])
    parser.add_argument("--storm-clients", type=int, default=4)
    parser.add_argument("--steady-clients", type=int, default=2)
    parser.add_argument("--storm-s", type=float, default=60.0)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args(argv)
    table = measure(args.deadlines_ms, args.storm_clients, args.steady_clients, args.storm_s)
    publish("cancel", "Client cancellations (short deadlines) against the supervised service",
            "loadtest.cancel_bench", argv,
            f"tritonserver 2.51 (nvidia-pytriton wheel); {args.storm_clients} storm clients (text+image, TOP_K 1000, "
            f"no retries) for {args.storm_s:g} s per deadline, {args.steady_clients} steady clients (10 s deadline) "
            "throughout; a crash is a supervisor restart", table, args.write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
