"""Latency/throughput harness for the served search (asyncio tritonclient over gRPC).

    python -m loadtest.bench --write          # all sections on a private Triton (make bench): ~4 min,
                                              # ~8 min the first time (indexing, 1M catalog + index)
    python -m loadtest.bench --quick          # fewer requests, concurrency 1 and 16, 10k catalog only
    python -m loadtest.bench --sections latency,batching --write
    python -m loadtest.bench --sections tuning --write       # encoder thread/instance/queue variants
    python -m loadtest.bench --url host:8001  # latency sweep and Locust against a running server

Sections, each measured in this one process so that its ratio holds on a shared, noisy machine:
- latency:   p50/p90/p99 and throughput per query kind (text, image, text+image) at
             concurrency 1, 4, 16, 64;
- batching:  text search throughput at concurrency 16 with the shipped dynamic batching vs none
             (the same models reloaded through the model-repository API with `dynamic_batching`
             removed from their configs), measured on, off, on again;
- inprocess: served text search at concurrency 16 vs the same encoder (PyTorch), fusion and
             scorer called directly (loadtest/inprocess.py) at the batch size the server formed;
- scale:     synthetic catalogs of 10k, 100k and 1M products (loadtest/synthetic.py) swapped into
             the scorer: search latency at concurrency 1 and 16, recall@10 against exact search,
             the scorer's resident memory (its python stub's VmRSS) vs the raw fp32 matrix;
- locust:    the 20 s Locust smoke run (loadtest/locustfile.py, headless, 8 users): its table.
Not in the default run: tuning (encoder threads / instances / queue settings, reloaded in turn).
The private server's model repository and the synthetic catalogs (with their IVF indexes) are
kept in run/bench/, so only the first run indexes the demo catalog and builds the 1M catalog.
With --write each section replaces its block in BENCHMARKS.md (machine, date, command, load).
"""
from __future__ import annotations

import argparse
import asyncio
import sys
import time

from loadtest.harness import TABLE_HEADER
from loadtest.private_server import start_private_server
from loadtest.report import BENCHMARKS, header, load_average, other_activity, record
from loadtest.scale import WORK_DIR, scale_section
from loadtest.sections import (Settings, TUNING_VARIANTS, batching_section, inprocess_section, latency_section,
                               locust_section, tuning_section)
from loadtest.workload import DEMO_CATALOG, Workload

SECTIONS = ("latency", "batching", "inprocess", "scale", "locust")
EXTRA_SECTIONS = ("tuning",)  # run only when named in --sections


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.bench", description=__doc__.split("\n")[0])
    parser.add_argument("--url", help="use a running server (latency and locust sections only)")
    parser.add_argument("--requests", type=int, default=None, help="requests per concurrency-1 cell (default 100, quick 30)")
    parser.add_argument("--quick", action="store_true", help="concurrency 1 and 16, fewer requests, 10k catalog only")
    parser.add_argument("--sections", default=",".join(SECTIONS),
                        help=f"comma-separated subset of {','.join(SECTIONS)} (default: all), or tuning")
    parser.add_argument("--scales", default=None, help="catalog sizes for the scale section, e.g. 10000,1000000")
    parser.add_argument("--sigma", type=float, default=1.0, help="scale section: noise of the synthetic catalogs (default 1)")
    parser.add_argument("--variants", default=None, help=f"tuning section: ';'-separated subset of {list(TUNING_VARIANTS)}")
    parser.add_argument("--rounds", type=int, default=1, help="tuning section: rounds of the variants (median, min-max)")
    parser.add_argument("--write", action="store_true", help="record the tables in BENCHMARKS.md")
    args = parser.parse_args(argv)

    sections = [s for s in args.sections.split(",") if s]
    unknown = set(sections) - set(SECTIONS) - set(EXTRA_SECTIONS)
    if unknown:
        parser.error(f"unknown section(s) {sorted(unknown)}; choose from {SECTIONS + EXTRA_SECTIONS}")
    settings = Settings()
    if args.quick:
        settings = Settings(requests=30, cell_seconds=6.0, concurrency=(1, 16), scales=(10_000,),
                            compare_requests=200, compare_seconds=8.0, locust_seconds=10)
    if args.requests:
        settings.requests = args.requests
    if args.scales:
        settings.scales = tuple(int(s) for s in args.scales.split(","))
    if args.url and set(sections) - {"latency", "locust"}:
        print("--url: only the latency and locust sections run against an outside server", file=sys.stderr)
        sections = [s for s in sections if s in ("latency", "locust")]

    log = lambda *a: print(*a, flush=True)  # noqa: E731
    workload = Workload.from_catalog(DEMO_CATALOG)
    load_before = load_average()
    activity = other_activity()
    log(f"load average {load_before}; {activity}")
    started = time.monotonic()
    results: dict[str, str] = {}
    server = None
    try:
        if not args.url:
            WORK_DIR.mkdir(parents=True, exist_ok=True)
            server = start_private_server(WORK_DIR, log)
            log(f"private server up ({time.monotonic() - started:.0f} s), load average {load_average()}")
        url = args.url or server.grpc_url
        for section in sections:
            section_started = time.monotonic()
            log(f"--- {section}")
            if section == "latency":
                log(TABLE_HEADER)
                results[section] = asyncio.run(latency_section(url, workload, settings, log))
            elif section == "batching":
                results[section] = asyncio.run(batching_section(server, workload, settings, log))[0]
            elif section == "inprocess":
                results[section] = asyncio.run(inprocess_section(server, workload, settings, log))[0]
            elif section == "scale":
                results[section] = asyncio.run(scale_section(server, workload, settings, log, args.sigma))[0]
            elif section == "locust":
                results[section] = locust_section(url, seconds=settings.locust_seconds, log=log,
                                                  key=server.key if server is not None else None)
            elif section == "tuning":
                variants = args.variants.split(";") if args.variants else None
                results[section] = asyncio.run(tuning_section(server, workload, settings, log, variants, args.rounds))
            log(results[section])
            log(f"({section}: {time.monotonic() - section_started:.0f} s)")
            if args.write:
                key = section if section != "scale" or args.sigma == 1.0 else f"scale-sigma{args.sigma:g}"
                title = TITLES[section] + ("" if key == section else f" (harder synthetic catalog, sigma {args.sigma:g})")
                record(key, header(title, load_before, activity) + "\n" + results[section])
    finally:
        if server is not None:
            server.stop()
    log(f"bench done in {time.monotonic() - started:.0f} s")
    if args.write:
        log(f"recorded in {BENCHMARKS}")
    return 0


TITLES = {
    "latency": "Search latency and throughput by query kind and concurrency (demo catalog)",
    "batching": "Dynamic batching on vs off",
    "inprocess": "Served vs in-process (text search)",
    "scale": "Catalog scale: latency, recall and scorer memory",
    "tuning": "Tuning: encoder threads, instances and queue settings",
    "locust": "Locust smoke run",
}


if __name__ == "__main__":
    sys.exit(main())
