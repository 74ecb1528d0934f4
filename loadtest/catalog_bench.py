"""What the live catalog costs and how fast it is: bulk upserts, ack -> visible, search under writes,
and the index's memory after many updates.

    python -m loadtest.bench --sections catalog --write          # ~6 minutes on 2 cores

A private Triton serves generation 1 with 600 demo products; each figure is measured `--runs`
times (default 3) and reported as the median with min-max:
- upsert throughput (products/s) through `upsert_products`, with photos and text-only, 32 in flight;
- search p50/p99 at concurrency 16 alone, then with writers at 10 writes/s (upserts, price updates,
  deletes), and the ratio of the two (target <= 1.2x);
- ack -> visible: for each write, from its acknowledgement reaching the writer to the first search
  answer whose CATALOG_SEQUENCE includes it (0 when a search had it before the ack arrived);
- memory: a scorer's index over 50,000 products after 100,000 updates (new vectors, field updates,
  deletes and inserts, applied through the store's log as a scorer does) against a fresh load of
  the same final catalog, each in its own process (VmRSS), for the exact and the IVF index.
"""
from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np

from clients.index import load_products, read_products
from loadtest.catalog_load import WriteLoad
from loadtest.private_server import temporary_server
from loadtest.report import publish
from loadtest.search_load import SearchLoad
from loadtest.workload import DEMO_CATALOG, Workload

CLIENTS = 16
WRITES_PER_S = 10.0
MEMORY_PRODUCTS = 50_000
MEMORY_UPDATES = 100_000
DIM = 384


def spread(values: list[float], digits: int = 1) -> str:
    """'median (min-max)' of a figure's runs."""
    return f"{np.median(values):.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"


# ------------------------------------------------------------------ served figures

def upsert_rate(server, products, with_images: bool, run: int) -> float:
    batch = [replace(p, id=f"BENCH-{run}-{int(with_images)}-{p.id}", image=p.image if with_images else b"")
             for p in products]
    report = load_products(server.grpc_url, batch, concurrency=32, key=server.key, progress=False)
    assert not report.failed, report.summary()
    return report.rate


def search_window(server, seconds: float, writes: bool, templates) -> dict:
    """Search at CLIENTS for `seconds` (after 2 s of warm-up), with or without the writers."""
    writers = WriteLoad(server.grpc_url, server.key, templates, writers=2, rate=WRITES_PER_S / 2,
                        prefix=f"BW{time.monotonic_ns()}-", timeout_s=30) if writes else None
    with SearchLoad(server.grpc_url, CLIENTS, Workload.texts_only(), timeout_s=30, retries=0) as load:
        if writers:
            writers.__enter__()
        try:
            time.sleep(2)
            start = time.monotonic()
            time.sleep(seconds)
            end = time.monotonic()
        finally:
            if writers:
                writers.__exit__(None, None, None)
    answers = [c for c in load.answers if start <= c.sent and c.received <= end]
    for error, count in Counter(c.error for c in load.failures).most_common(3):  # what failed, said where it is seen
        print(f"failed searches ({count}): {error} (e.g. query {next(c.query for c in load.failures if c.error == error)!r})",
              file=sys.stderr, flush=True)
    ms = [(c.received - c.sent) * 1000 for c in answers]
    figures = {"p50": float(np.percentile(ms, 50)), "p99": float(np.percentile(ms, 99)),
               "rate": len(answers) / (end - start), "failed": len(load.failures)}
    if writers:
        seen = sorted((c.received, c.result.catalog_sequence) for c in load.answers)
        lags = []
        for write in writers.writes:
            first = next((received for received, sequence in seen if sequence >= write.sequence), None)
            if first is not None:
                lags.append(max(0.0, first - write.acked) * 1000)
        figures.update(lag_p50=float(np.percentile(lags, 50)), lag_p99=float(np.percentile(lags, 99)),
                       writes=len(writers.writes) / (end - start + 2), write_failures=len(writers.failures))
    return figures


def served_figures(runs: int, seconds: float, log=print) -> dict:
    with tempfile.TemporaryDirectory(prefix="catalog-bench-") as tmp:
        tmp = Path(tmp)
        with temporary_server(Path(tmp)) as server:
            products = read_products(DEMO_CATALOG)
            report = load_products(server.grpc_url, products[:600], key=server.key, progress=False)
            assert not report.failed, report.summary()
            figures: dict[str, list] = {}
            for run in range(runs):
                for with_images in (True, False):
                    rate = upsert_rate(server, products[600:900], with_images, run)
                    figures.setdefault(f"upsert_{'photo' if with_images else 'text'}", []).append(rate)
                for writes in (False, True):
                    window = search_window(server, seconds, writes, products[:50])
                    for name, value in window.items():
                        figures.setdefault(f"{'writes' if writes else 'alone'}_{name}", []).append(value)
                figures.setdefault("ratio_p50", []).append(figures["writes_p50"][-1] / figures["alone_p50"][-1])
                figures.setdefault("ratio_p99", []).append(figures["writes_p99"][-1] / figures["alone_p99"][-1])
                log(f"run {run + 1}/{runs}: " + ", ".join(f"{k} {v[-1]:.1f}" for k, v in figures.items()))
    return figures


# ------------------------------------------------------------------ memory (one process per measurement)

def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def memory_child(mode: str, method: str, directory: Path, seed: int) -> dict:
    """In a fresh process: `fresh` loads the store as a scorer does; `updated` loads the base
    catalog, then applies MEMORY_UPDATES writes through the log while following it."""
    import gc

    from productsearch.catalog.index.follower import ShopFollower
    from productsearch.catalog.index.live import LiveIndex
    from productsearch.catalog.rows import ProductWrite
    from productsearch.catalog.sqlite.store import SqliteCatalog

    store = SqliteCatalog(directory)
    baseline = rss_mb()
    follower = ShopFollower(store, 1, lambda: LiveIndex(method=method), log=lambda *a: None, poll_s=0.05)
    started = time.monotonic()
    if mode == "updated":
        rng, writer = np.random.default_rng(seed), SqliteCatalog(directory)
        ids = [f"S{i}" for i in range(MEMORY_PRODUCTS)]
        fresh = 0
        for first in range(0, MEMORY_UPDATES, 1000):
            with writer.transaction() as db:
                now = time.time()
                for _ in range(1000):
                    roll = rng.random()
                    if roll < 0.6:  # new vectors for an existing product
                        pid = ids[rng.integers(len(ids))]
                        writer.upsert_one(db, 1, ProductWrite(pid, f"product {pid}", {"price": 10.0}, None,
                                                              unit(rng.standard_normal(DIM)), None), now)
                    elif roll < 0.8:
                        writer.update_one(db, ids[rng.integers(len(ids))], {"price": float(rng.uniform(1, 99))}, now)
                    else:  # a delete and a new product, so the catalog keeps its size
                        writer.delete_one(db, ids.pop(rng.integers(len(ids))), now)
                        pid = f"N{fresh}"
                        fresh += 1
                        ids.append(pid)
                        writer.upsert_one(db, 1, ProductWrite(pid, f"product {pid}", {"price": 10.0}, None,
                                                              unit(rng.standard_normal(DIM)), None), now)
            follower.catch_up()
        deadline = time.monotonic() + 300
        while (follower.index.needs_rebuild or follower._rebuilding) and time.monotonic() < deadline:
            time.sleep(0.5)  # the background rebuild (compaction, IVF retraining) as served
        follower.catch_up()
        writer.close()
    gc.collect()
    index = follower.index
    figures = {"rss_mb": rss_mb() - baseline, "products": len(index), "rows": index.high_water,
               "capacity": index.capacity, "method": index.search_method, "applied": index.applied,
               "seconds": time.monotonic() - started}
    follower.close()
    return figures


def unit(vector: np.ndarray) -> np.ndarray:
    return (vector / np.linalg.norm(vector)).astype(np.float32)


def make_memory_store(directory: Path, seed: int) -> None:
    from productsearch.catalog.sqlite.bulk import bulk_insert
    from productsearch.catalog.sqlite.store import SqliteCatalog

    rng = np.random.default_rng(seed)
    store = SqliteCatalog(directory)
    for first in range(0, MEMORY_PRODUCTS, 10_000):
        vectors = rng.standard_normal((10_000, DIM)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        bulk_insert(store, 1, [(f"S{first + i}", f"product S{first + i}", {"price": 10.0}, vectors[i], None)
                               for i in range(10_000)])
    store.close()


def run_child(*args) -> dict:
    out = subprocess.run([sys.executable, "-m", "loadtest.bench", "--sections", "catalog", "--memory-child", *map(str, args)],
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def memory_figures(runs: int, log=print) -> dict:
    """RSS after MEMORY_UPDATES updates / RSS of a fresh load of the final store, per method."""
    figures: dict[str, list] = {}
    for run in range(runs):
        for method in ("exact", "ivf"):
            with tempfile.TemporaryDirectory(prefix="catalog-memory-") as tmp:
                make_memory_store(Path(tmp), run)
                updated = run_child("updated", method, tmp, run)
                fresh = run_child("fresh", method, tmp, run)
            assert updated["products"] == fresh["products"] and updated["applied"] == fresh["applied"]
            figures.setdefault(f"{method}_updated", []).append(updated["rss_mb"])
            figures.setdefault(f"{method}_fresh", []).append(fresh["rss_mb"])
            figures.setdefault(f"{method}_ratio", []).append(updated["rss_mb"] / fresh["rss_mb"])
            figures.setdefault(f"{method}_update_s", []).append(updated["seconds"])
            log(f"memory run {run + 1}/{runs} {method}: updated {updated}, fresh {fresh}")
    return figures


# ------------------------------------------------------------------ report

def table(served: dict, memory: dict, runs: int) -> str:
    rows = ["| figure | median (min-max) of runs |", "|---|---:|"]
    rows += [f"| upsert through `upsert_products`, with photos, products/s | {spread(served['upsert_photo'], 0)} |",
             f"| upsert, text only (no photo), products/s | {spread(served['upsert_text'], 0)} |",
             f"| search c={CLIENTS} alone: p50 / p99 ms | {spread(served['alone_p50'])} / {spread(served['alone_p99'])} |",
             f"| search c={CLIENTS} with {WRITES_PER_S:g} writes/s: p50 / p99 ms | {spread(served['writes_p50'])} / "
             f"{spread(served['writes_p99'])} |",
             f"| with writes / alone: p50 / p99 (target <= 1.2) | {spread(served['ratio_p50'], 2)} / {spread(served['ratio_p99'], 2)} |",
             f"| search rate alone / with writes, req/s | {spread(served['alone_rate'], 0)} / {spread(served['writes_rate'], 0)} |",
             f"| writes achieved, per s | {spread(served['writes_writes'])} |",
             f"| ack -> visible p50 / p99 ms (target p99 <= 1000) | {spread(served['writes_lag_p50'])} / "
             f"{spread(served['writes_lag_p99'])} |",
             f"| failed searches / failed writes (all runs) | {int(sum(served['alone_failed']) + sum(served['writes_failed']))}"
             f" / {int(sum(served['writes_write_failures']))} |"]
    for method in ("exact", "ivf"):
        rows.append(f"| {method} index, {MEMORY_PRODUCTS:,} products: RSS after {MEMORY_UPDATES:,} updates / fresh load, MB | "
                    f"{spread(memory[f'{method}_updated'], 0)} / {spread(memory[f'{method}_fresh'], 0)} "
                    f"(ratio {spread(memory[f'{method}_ratio'], 2)}) |")
    return "\n".join(rows) + f"\n\n{runs} runs each."


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=15.0, help="each search window")
    parser.add_argument("--write", action="store_true", help="record the table in BENCHMARKS.md")
    parser.add_argument("--memory-child", nargs=4, metavar=("MODE", "METHOD", "DIR", "SEED"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_child:
        mode, method, directory, seed = args.memory_child
        print(json.dumps(memory_child(mode, method, Path(directory), int(seed))))
        return 0
    random.seed(0)
    served = served_figures(args.runs, args.seconds)
    memory = memory_figures(args.runs)
    publish("catalog", "Live catalog: writes, read-your-writes, search under writes, memory", "loadtest.bench --sections catalog",
            argv, "a private Triton with generation 1 (demo towers) and 600 demo products; writes by 2 writer "
                  "threads (50% upserts with photos, 35% price updates, 15% deletes)", table(served, memory, args.runs),
            args.write)
    return 0

