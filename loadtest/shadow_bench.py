"""What a shadow experiment costs served search: the same text search load with no experiment
and with generation 2 scoring every request in the shadow of generation 1.

    python -m loadtest.bench --sections shadow --rounds 3 --write

A private Triton serves generation 1 over PRODUCTS demo products; generation 2 is a copy of its
encoders with another catalog fusion (text weight 0.9), so its scorer really ranks differently.
Each cell is one perf_analyzer run (text queries, the workload's full EN + ZH set, at concurrency
16, which saturates the 2 cores, and 4, which leaves room) after a warm-up run, with tritonserver's and every stub's CPU per search. The variants are
interleaved per round, their order alternated; between cells the experiment is started
(`experiment start --shadow`: generation 2's query models and scorer loaded) or stopped (unloaded).
Beside req/s and CPU: the share of shadowed requests generation 2 answered, failed or dropped
(the serving scorer's `productsearch_shadow_requests_total`): a shadow that cannot keep up
drops, it never slows the shopper's answer by waiting.
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from clients.index import load_products, read_products
from loadtest.metrics_text import scrape, total
from loadtest.perf_analyzer import BINARY, input_data, run_cell
from loadtest.private_server import deployer_for, temporary_server
from loadtest.report import publish
from loadtest.serving_profile import spread
from loadtest.workload import DEMO_CATALOG, Workload
from productsearch.control.deploy import experiment
from productsearch.control.generations import clone_encoders, record_encoders

CONCURRENCIES = (16, 4)
PRODUCTS = 2000
WINDOW_MS = 4000
VARIANTS = ("no experiment", "shadow of generation 2")
OUTCOMES = ("answered", "failed", "dropped")


def shadow_counts(metrics_port: int) -> dict[str, float]:
    """The serving scorer's shadow counter per outcome (every series summed)."""
    samples = scrape(metrics_port)[1]
    return {outcome: total(samples, "productsearch_shadow_requests_total", outcome=outcome) for outcome in OUTCOMES}


def measured_cell(server, data: Path, concurrency: int) -> dict:
    """A warm-up run, then the measured one with the shadow outcomes counted over it."""
    run_cell(server.grpc_url, server.pid, data, concurrency, WINDOW_MS)
    time.sleep(1.5)  # the shadow queue drains, the counters flush (each second)
    before = shadow_counts(server.metrics_port)
    cell = run_cell(server.grpc_url, server.pid, data, concurrency, WINDOW_MS)
    time.sleep(1.5)
    after = shadow_counts(server.metrics_port)
    shadowed = {o: after[o] - before[o] for o in OUTCOMES}
    total = sum(shadowed.values())
    cell["shares"] = {o: (shadowed[o] / total if total else 0.0) for o in OUTCOMES}
    cell["shadowed"] = total
    return cell


def measure(rounds: int, products: int, log=print) -> str:
    workload = Workload.from_catalog(DEMO_CATALOG, images=0)
    with tempfile.TemporaryDirectory(prefix="shadow-bench-") as tmp, temporary_server(Path(tmp)) as server:
        repository = server.repository
        clone_encoders(repository, 2, 1)  # after the restore, which would otherwise bring back the newest
        record_encoders(repository, 2, {"cloned_encoders_of": 1, "bench": "shadow"}, {"text_weight": 0.9})
        report = load_products(server.grpc_url, read_products(DEMO_CATALOG)[:products], key=server.key, progress=False)
        assert not report.failed, report.summary()
        data = Path(tmp) / "text.json"
        data.write_text(json.dumps(input_data(workload, "text"), ensure_ascii=False))
        cells: dict[tuple[str, int], list[dict]] = {(n, c): [] for n in VARIANTS for c in CONCURRENCIES}
        with deployer_for(server, repository) as deployer:
            for round_ in range(rounds):
                for name in VARIANTS if round_ % 2 == 0 else VARIANTS[::-1]:
                    if name == VARIANTS[1]:
                        experiment.start(deployer, "default", 2, shadow=True)
                    for concurrency in CONCURRENCIES:
                        cell = measured_cell(server, data, concurrency)
                        cells[name, concurrency].append(cell)
                        log(f"round {round_ + 1} {name} c={concurrency}: {cell['req/s']:.1f} req/s, p50 "
                            f"{cell['p50']:.1f} ms, {cell['cpu_ms']:.2f} server CPU-ms/search, shadowed "
                            f"{cell['shadowed']:.0f} ({', '.join(f'{o} {s:.1%}' for o, s in cell['shares'].items())})")
                    if name == VARIANTS[1]:
                        experiment.stop(deployer, "default")
    return table(cells, rounds, products, len(workload.texts))


def percent_spread(shares: list[float]) -> str:
    return f"{100 * statistics.median(shares):.1f}% ({100 * min(shares):.1f}-{100 * max(shares):.1f})"


def table(cells: dict[tuple[str, int], list[dict]], rounds: int, products: int, queries: int) -> str:
    lines = ["| concurrency | variant | req/s | p50 ms | p99 ms | server CPU-ms per search | req/s vs none | "
             "CPU per search vs none | shadowed: answered | failed | dropped |",
             "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for concurrency in CONCURRENCIES:
        base = cells[VARIANTS[0], concurrency]
        base_rps = statistics.median(c["req/s"] for c in base)
        base_cpu = statistics.median(c["cpu_ms"] for c in base)
        for name in VARIANTS:
            runs = cells[name, concurrency]
            rps, cpu = [c["req/s"] for c in runs], [c["cpu_ms"] for c in runs]
            shares = ([percent_spread([c["shares"][o] for c in runs]) for o in OUTCOMES]
                      if name != VARIANTS[0] else ["-"] * 3)
            lines.append(f"| {concurrency} | {name} | {spread(rps)} | {spread([c['p50'] for c in runs])} | "
                         f"{spread([c['p99'] for c in runs])} | {spread(cpu)} | {statistics.median(rps) / base_rps - 1:+.1%} | "
                         f"{statistics.median(cpu) / base_cpu - 1:+.1%} | {' | '.join(shares)} |")
    lines += ["", f"Text search ({queries} distinct EN + ZH queries, cycled) over {products} demo products, "
                  f"perf_analyzer 2.41 over gRPC, windows of {WINDOW_MS} ms, a warm-up run per cell; variants "
                  f"interleaved, their order alternated, {rounds} rounds, median (min-max). Shadowed shares: of the "
                  "requests the serving scorer offered to generation 2 during the cell."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.bench --sections shadow", description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--products", type=int, default=PRODUCTS)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args(argv)
    if not BINARY.exists():
        raise SystemExit(f"no {BINARY}: run `python -m loadtest.perf_analyzer install` (make bench does)")
    result = measure(max(3, args.rounds), args.products)
    publish("shadow", "Shadow experiment cost, served (perf_analyzer)", "loadtest.bench --sections shadow", argv,
            "generation 2 shares generation 1's encoders (its catalog fused with text weight 0.9); with the shadow, "
            "every answered search is repeated on scorer 2 off the request path", result, args.write)
    return 0
