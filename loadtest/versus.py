"""This checkout served against another one (an older commit, built), alternately, with one load
generator: what a change did to the whole served path, not one step of it.

    git worktree add /tmp/today COMMIT && ln -s "$PWD/.venv" /tmp/today/.venv
    (cd /tmp/today && PYTHONPATH=/tmp/today .venv/bin/python build_models.py --preset demo)
    python -m loadtest.versus /tmp/today --rounds 3

Each round starts, for each checkout in turn, that checkout's own server (its code, its model
repository, its launcher: `loadtest.private_server.temporary_server` run under PYTHONPATH=that
checkout, so its python stubs import that checkout's productsearch) over an empty catalog store,
then measures with this checkout's client:
- bulk indexing: the demo catalog (5,280 products, photos and texts) through `upsert_products`
  with that checkout's indexing client (clients.index), products/s;
- text search p50 at c=1, text search and photo search throughput at c=16 (loadtest.harness).
Cells are the median (min-max) of the rounds; ratios are this checkout over the other, medians.
The other checkout runs with the OpenBLAS kernels OpenBLAS picks itself unless the operator set
OPENBLAS_CORETYPE (loadtest/__init__.py sets it for this checkout's processes only).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

import loadtest
from loadtest.harness import run_load
from loadtest.report import load_average, report_header
from loadtest.workload import Workload

ROOT = Path(__file__).resolve().parents[1]
READY = "VERSUS-READY "
# Runs inside the checkout under test, with that checkout's code: uses only APIs both the older
# and this checkout have (temporary_server(tmp), read_products, load_products(url, products, key=)).
SERVE = f"""
import json, sys, tempfile, time
from pathlib import Path
from clients.index import load_products, read_products
from loadtest.private_server import temporary_server
from loadtest.workload import DEMO_CATALOG
with tempfile.TemporaryDirectory(prefix="versus-") as tmp, temporary_server(Path(tmp)) as server:
    products = read_products(DEMO_CATALOG)
    started = time.monotonic()
    report = load_products(server.grpc_url, products, key=server.key, progress=False)
    seconds = time.monotonic() - started
    print({READY!r} + json.dumps({{"url": server.grpc_url, "written": report.written, "failed": len(report.failed),
                                   "seconds": seconds}}), flush=True)
    sys.stdin.read()  # serve until the parent closes stdin
"""
COLUMNS = ("bulk indexing products/s", "text p50 ms c=1", "text req/s c=16", "photo req/s c=16")


def checkout_env(checkout: Path) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(checkout), PYTHONDONTWRITEBYTECODE="1")
    if checkout != ROOT and not loadtest.OPERATOR_BLAS_KERNEL:
        env.pop("OPENBLAS_CORETYPE", None)  # the other checkout as it ran: OpenBLAS's own choice
    return env


async def measure(url: str, workload: Workload, seconds: float) -> tuple[float, float, float]:
    await run_load(url, workload, "text", 16, 200, max_seconds=5)  # warm-up (first batches, caches)
    c1 = await run_load(url, workload, "text", 1, 400, max_seconds=seconds)
    text = await run_load(url, workload, "text", 16, 100_000, max_seconds=seconds)
    photo = await run_load(url, workload, "image", 16, 100_000, max_seconds=seconds)
    errors = c1.errors + text.errors + photo.errors
    if errors:
        raise RuntimeError(f"{errors} requests failed")
    return c1.percentile(50), text.throughput, photo.throughput


def one_round(checkout: Path, workload: Workload, seconds: float, log) -> tuple[float, ...]:
    """Start the checkout's server, index the demo catalog, measure, stop it."""
    child = subprocess.Popen([sys.executable, "-c", SERVE], cwd=checkout, env=checkout_env(checkout),
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        ready = None
        for line in child.stdout:
            if line.startswith(READY):
                ready = json.loads(line[len(READY):])
                break
        if ready is None:
            raise RuntimeError(f"{checkout}: the server did not come up (exit code {child.wait()})")
        if ready["failed"]:
            raise RuntimeError(f"{checkout}: {ready['failed']} products failed to index")
        indexing = ready["written"] / ready["seconds"]
        figures = (indexing, *asyncio.run(measure(ready["url"], workload, seconds)))
        log(f"{checkout}: " + ", ".join(f"{c} {v:.1f}" for c, v in zip(COLUMNS, figures)))
        return figures
    finally:
        child.stdin.close()
        try:
            child.wait(timeout=120)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def spread(values: list[float]) -> str:
    return f"{np.median(values):.1f} ({min(values):.1f}-{max(values):.1f})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("other", type=Path, help="the other checkout (built: its model_repository has a generation)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=15.0, help="per load cell")
    args = parser.parse_args(argv)
    other = args.other.resolve()
    commit = subprocess.run(["git", "-C", str(other), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip() or str(other)
    mine = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True).stdout.strip()
    workload = Workload.from_catalog()
    load_before = load_average()
    results: dict[str, list[tuple[float, ...]]] = {commit: [], "this checkout": []}
    for _ in range(args.rounds):
        results[commit].append(one_round(other, workload, args.seconds, print))
        results["this checkout"].append(one_round(ROOT, workload, args.seconds, print))
    print(report_header("Served: this checkout against another commit", "loadtest.versus", argv)
          + f"- load average (1/5/15 min): before {load_before}, after {load_average()}")
    print(f"this checkout: {mine} (+ uncommitted changes, if any); other: {commit}\n")
    print("| checkout | " + " | ".join(COLUMNS) + " |\n|---|" + "---:|" * len(COLUMNS))
    for name, rows in results.items():
        print(f"| {name} | " + " | ".join(spread([row[i] for row in rows]) for i in range(len(COLUMNS))) + " |")
    ratios = [np.median([r[i] for r in results["this checkout"]]) / np.median([r[i] for r in results[commit]])
              for i in range(len(COLUMNS))]
    print("| this / other (medians) | " + " | ".join(f"{r:.2f}x" for r in ratios) + " |")
    print(f"\n{args.rounds} rounds, the checkouts alternating; each a fresh server over an empty catalog store "
          f"(indexed first); load cells {args.seconds:.0f} s each after a 5 s warm-up.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
