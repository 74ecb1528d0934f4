"""Served search throughput of the demo's towers against a baseline generation's (e.g.
`demo-minilm`'s MiniLM + ResNet), in ONE run: text and image search at concurrency 16.

    python -m loadtest.towers_bench --baseline /path/to/model_repository [--products 1000] [--rounds 2]

Two private tritonservers (free ports, repositories linked from this checkout's model_repository
and from --baseline, generation 1 of each), each with the first --products demo products upserted.
The measurements alternate (new, baseline, new, baseline, ...) so that both see the same machine
load; only one server is under load at a time. Prints per-round req/s and the ratio of the means.
"""
from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path

from clients.index import load_products, read_products
from loadtest.harness import run_load
from loadtest.workload import DEMO_CATALOG, Workload
from loadtest.private_server import deployer_for
from productsearch.control.paths import DEFAULT_MODEL_REPOSITORY
from productsearch.control.processes import free_ports
from productsearch.control.repository import link_repository
from productsearch.control.server import TritonServer

KINDS = ("text", "image")


def serve(source: Path, work: Path, products) -> TritonServer:
    repository = link_repository(source, work / "model_repository", generations=[1])
    http, grpc, metrics = free_ports(3)
    server = TritonServer(model_repository=repository, http_port=http, grpc_port=grpc, metrics_port=metrics,
                          log_file=work / "triton.log").start()
    with deployer_for(server, repository, log=lambda *a: None) as deployer:
        deployer.restore()
    report = load_products(server.grpc_url, products, key=server.key, progress=False)
    if report.failed:
        server.stop()
        raise RuntimeError(report.summary())
    return server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.towers_bench", description=__doc__.split("\n")[0])
    parser.add_argument("--baseline", type=Path, required=True, help="model repository whose generation 1 is the baseline")
    parser.add_argument("--work", type=Path, default=Path("run") / "towers_bench")
    parser.add_argument("--products", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=600)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args(argv)
    import shutil

    shutil.rmtree(args.work, ignore_errors=True)
    products = read_products(DEMO_CATALOG)[::max(1, 5280 // args.products)][:args.products]
    workload = Workload.from_catalog(DEMO_CATALOG)
    servers = {}
    try:
        for name, source in (("demo", DEFAULT_MODEL_REPOSITORY), ("baseline", args.baseline)):
            started = time.monotonic()
            servers[name] = serve(source, args.work / name, products)
            print(f"{name}: serving {source} generation 1, {len(products)} products ({time.monotonic() - started:.0f} s)")
        rates = {(name, kind): [] for name in servers for kind in KINDS}
        for round_ in range(args.rounds):
            for name, server in servers.items():
                for kind in KINDS:
                    result = asyncio.run(run_load(server.grpc_url, workload, kind, args.concurrency, args.requests,
                                                  max_seconds=60))
                    rates[name, kind].append(result.throughput)
                    print(f"round {round_ + 1} {name:8s} {kind:5s} c={args.concurrency}: {result.throughput:7.1f} req/s, "
                          f"p50 {result.percentile(50):.1f} ms, errors {result.errors}, batches {result.batch}")
    finally:
        for server in servers.values():
            server.stop()
    print("\n| query | concurrency | demo req/s | baseline req/s | ratio |\n|---|---:|---:|---:|---:|")
    for kind in KINDS:
        new, old = (sum(rates[n, kind]) / len(rates[n, kind]) for n in ("demo", "baseline"))
        print(f"| {kind} | {args.concurrency} | {new:.1f} | {old:.1f} | {new / old:.2f}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
