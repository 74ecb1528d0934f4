"""How long a generation swap takes and what it does to search latency, under load.

    python -m loadtest.bench --sections swap --write

A private Triton serves generation 1; generation 2 is a copy of its encoders, so the swap
re-encodes the live catalog for it through them, and every answer says (GENERATION) which
generation served it. 16 client threads search
continuously: steady state first, then `swap 2`, then `rollback`. Reported: time from the swap
command to the last answer from the old generation (after which every answer is new), the
swap's own duration, and p50/p99 latency in steady state vs during the swap.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from clients.index import load_products, read_products
from loadtest.private_server import deployer_for, temporary_server
from loadtest.report import publish
from loadtest.search_load import SearchLoad
from loadtest.workload import DEMO_CATALOG, Workload
from productsearch.control.generations import clone_encoders

def latencies(answers, start: float, end: float) -> list[float]:
    return [(c.received - c.sent) * 1000 for c in answers if start <= c.sent and c.received <= end]


def measure(clients: int, steady_s: float, products: int, log=print) -> str:
    with tempfile.TemporaryDirectory(prefix="swap-bench-") as tmp, temporary_server(Path(tmp)) as server:
        repository = server.repository
        clone_encoders(repository, 2, 1)  # after the restore, which would otherwise bring back the newest
        report = load_products(server.grpc_url, read_products(DEMO_CATALOG)[:products], key=server.key, progress=False)
        assert not report.failed, report.summary()
        rows = []
        t0 = time.monotonic()
        with SearchLoad(server.grpc_url, clients, Workload.texts_only(), timeout_s=60, retries=0) as load, \
                deployer_for(server, repository, log=lambda line: log(f"  [{time.monotonic() - t0:6.1f}s] {line}")) as deployer:
            for target in (2, 1):
                time.sleep(steady_s)
                steady = (time.monotonic() - steady_s, time.monotonic())
                started = time.monotonic()
                log(f"  [{started - t0:6.1f}s] swap to {target}")
                deployer.swap(target)
                finished = time.monotonic()
                time.sleep(2)
                answers = load.answers
                old = [c.received for c in answers if c.result.generation != target and c.sent >= started]
                new = [c.received for c in answers if c.result.generation == target and c.sent >= started]
                log(f"  last old answer at {max(old, default=started) - t0:.1f}s, first new at {min(new) - t0:.1f}s")
                last_old = max(old, default=started)
                steady_ms, swap_ms = latencies(answers, *steady), latencies(answers, started, finished)
                rows.append((f"{3 - target} -> {target}", finished - started, last_old - started,
                             np.percentile(steady_ms, 50), np.percentile(steady_ms, 99),
                             np.percentile(swap_ms, 50), np.percentile(swap_ms, 99), len(swap_ms)))
                log(f"swap {rows[-1][0]}: {rows[-1][1]:.1f} s")
        failures = len(load.failures)
    table = ["| swap | swap command s | until all answers new s | steady p50 ms | steady p99 ms | "
             "during swap p50 ms | during swap p99 ms | answers during swap |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    table += [f"| {r[0]} | {r[1]:.1f} | {r[2]:.1f} | {r[3]:.1f} | {r[4]:.1f} | {r[5]:.1f} | {r[6]:.1f} | {r[7]} |" for r in rows]
    table.append(f"\nfailed requests during the whole run: {failures}")
    return "\n".join(table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.bench --sections swap", description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--steady-s", type=float, default=15.0)
    parser.add_argument("--products", type=int, default=2000, help="catalog size of each generation")
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args(argv)
    table = measure(args.clients, args.steady_s, args.products)
    publish("swap", f"Generation swap under load ({args.clients} clients)", "loadtest.bench --sections swap", argv,
            f"generations share encoders (catalog-only change: {args.products} products each); 'until all answers "
            "new' is from the swap command to the last answer served by the old generation", table, args.write)
    return 0

