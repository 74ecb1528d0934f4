"""The one benchmark entry point: named sections, each of which prints a table and, with --write,
replaces its block in BENCHMARKS.md (machine, date, command, load).

    python -m loadtest.bench --write                       # make bench: the served sections below
    python -m loadtest.bench --quick                       # fewer requests, concurrency 1 and 16, 10k catalog
    python -m loadtest.bench --sections latency,profile --write
    python -m loadtest.bench --sections tuning --rounds 3 --variants "shipped;image 2 instances"
    python -m loadtest.bench --device gpu --sections latency,batching,inprocess   # GPU configs (a lent GPU)
    python -m loadtest.bench --url host:8001 --sections latency,locust            # against a running server
    python -m loadtest.bench --sections scorer --runs 5    # a tool section; its own options follow

Served sections share one private tritonserver (run/bench/, kept between runs so only the first
indexes the demo catalog), each measured in this process so its ratios hold on a noisy machine:
- latency:   p50/p90/p99 and req/s per query kind (text, image, text+image) at concurrency 1-64;
- batching:  text search at c=16 with the shipped dynamic batching, none, and shipped again;
- inprocess: served text search at c=16 vs the same tower, fusion and scorer called directly;
- scale:     synthetic catalogs of 10k-1M products swapped into the scorer: latency, recall@10, memory;
- profile:   per ensemble step (Triton's statistics) and per process (/proc CPU) under load;
- locust:    the 20 s headless Locust run (loadtest/locustfile.py);
- tuning:    encoder threads / instances / queue variants, reloaded in turn (only when named);
- perf_analyzer: NVIDIA's perf_analyzer per query kind at c=1/16/64, server CPU-ms per search
             beside the in-process cost (only when named; loadtest/perf_analyzer.py);
- keys:      text search keyless vs with an API key vs a rate-limited key, 5 rounds (only when named);
- metrics_served: perf_analyzer text search with the search path's metrics on vs off (only when named);
- console:   the search console's Search page round trip vs the bare gRPC search it makes (only when named);
- events_served: perf_analyzer text search with the scorer's search log on vs off (only when named);
- events_ingest: record_events events/s and server CPU per event (only when named);
- suggest:   `suggest` at c=1 with perf_analyzer over prefixes of demo titles (only when named; loadtest/suggest_bench.py).
Tool sections run on their own (private servers or in process) and take their own options
(`--sections NAME --help`): scorer, runtimes, relevance, catalog, stores, replicas, swap, filters,
metrics, query, shadow (a shadow experiment on vs off, perf_analyzer; loadtest/shadow_bench.py).
Every text query comes from the workload's full English and Chinese query set (loadtest/workload.py).
"""
from __future__ import annotations

import argparse
import asyncio
import importlib
import sys
import time

from loadtest.harness import TABLE_HEADER
from loadtest.perf_analyzer import perf_analyzer_section
from loadtest.private_server import start_private_server
from loadtest.report import BENCHMARKS, header, load_average, other_activity, record
from loadtest.scale import scale_section, work_dir
from loadtest.sections import (Settings, TUNING_VARIANTS, batching_section, inprocess_section, latency_section,
                               locust_section, tuning_section)
from loadtest.serving_profile import profile_section
from loadtest.workload import DEMO_CATALOG, Workload

SERVED = ("latency", "batching", "inprocess", "scale", "profile", "locust")
EXTRA_SERVED = ("tuning", "perf_analyzer", "keys", "metrics_served", "console", "events_served", "events_ingest", "suggest")  # run only when named in --sections
TOOLS = {  # section -> (module, arguments it always gets); each module has main(argv)
    "scorer": ("loadtest.scorer_bench", []), "runtimes": ("loadtest.runtime_bench", []),
    "relevance": ("loadtest.relevance_bench", []), "catalog": ("loadtest.catalog_bench", []),
    "stores": ("loadtest.store_bench", ["--sections", "stores"]),
    "replicas": ("loadtest.store_bench", ["--sections", "replicas"]),
    "swap": ("loadtest.swap_bench", []), "filters": ("loadtest.filter_bench", []),
    "metrics": ("loadtest.metrics_overhead", []), "query": ("loadtest.query_bench", []),
    "shadow": ("loadtest.shadow_bench", []),
}
TITLES = {
    "latency": "Search latency and throughput by query kind and concurrency (demo catalog)",
    "batching": "Dynamic batching on vs off",
    "inprocess": "Served vs in-process (text search)",
    "scale": "Catalog scale: latency, recall and scorer memory",
    "profile": "Where serving time goes (per ensemble step and per process)",
    "tuning": "Tuning: encoder threads, instances and queue settings",
    "locust": "Locust smoke run",
    "perf_analyzer": "Serving cost with NVIDIA's perf_analyzer: throughput, latency and server CPU per search",
    "keys": "API keys: search with a key vs a public shop",
    "metrics_served": "The service's own metrics on vs off, served (perf_analyzer)",
    "console": "Search console: page round trip vs the bare gRPC search",
    "events_served": "The search log on vs off, served (perf_analyzer)",
    "events_ingest": "Shopper events: record_events ingest rate",
    "suggest": "Query suggestions (`suggest`) at concurrency 1, perf_analyzer",
}


def run_tool(section: str, argv: list[str], write: bool) -> int:
    module, fixed = TOOLS[section]
    return importlib.import_module(module).main(fixed + argv + (["--write"] if write else []))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.bench", description=__doc__.split("\n")[0], add_help=False)
    parser.add_argument("-h", "--help", action="store_true", help="this help, or a tool section's own with --sections NAME")
    parser.add_argument("--sections", default=",".join(SERVED),
                        help=f"comma-separated; served: {','.join(SERVED + EXTRA_SERVED)}; tools: {','.join(TOOLS)}")
    parser.add_argument("--url", help="use a running server (latency and locust sections only)")
    parser.add_argument("--device", choices=("cpu", "gpu"), default="cpu", help="served sections: the configs served")
    parser.add_argument("--requests", type=int, default=None, help="requests per concurrency-1 cell (default 100, quick 30)")
    parser.add_argument("--quick", action="store_true", help="concurrency 1 and 16, fewer requests, 10k catalog only")
    parser.add_argument("--scales", default=None, help="catalog sizes for the scale section, e.g. 10000,1000000")
    parser.add_argument("--sigma", type=float, default=1.0, help="scale section: noise of the synthetic catalogs (default 1)")
    parser.add_argument("--variants", default=None, help=f"tuning section: ';'-separated subset of {list(TUNING_VARIANTS)}")
    parser.add_argument("--rounds", type=int, default=1, help="tuning and profile: rounds (median, min-max)")
    parser.add_argument("--write", action="store_true", help="record the tables in BENCHMARKS.md")
    args, rest = parser.parse_known_args(argv)

    sections = [s for s in args.sections.split(",") if s]
    unknown = set(sections) - set(SERVED) - set(EXTRA_SERVED) - set(TOOLS)
    if unknown:
        parser.error(f"unknown section(s) {sorted(unknown)}; choose from {SERVED + EXTRA_SERVED + tuple(TOOLS)}")
    tools = [s for s in sections if s in TOOLS]
    served = [s for s in sections if s not in TOOLS]
    if args.help and len(tools) == 1 and not served:
        return run_tool(tools[0], ["--help"], False)
    if args.help:
        parser.print_help()
        return 0
    if rest and (served or not tools):
        parser.error(f"unrecognized arguments {rest} (options of their own are for tool sections only)")
    failed = sum(1 for section in tools if run_tool(section, rest, args.write))
    if served:
        failed += run_served(served, args)
    return 1 if failed else 0


def run_served(sections: list[str], args) -> int:
    settings = Settings(rounds=args.rounds)
    if args.quick:
        settings = Settings(requests=30, cell_seconds=6.0, concurrency=(1, 16), scales=(10_000,), rounds=args.rounds,
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
    load_before, activity = load_average(), other_activity()
    log(f"load average {load_before}; {activity}; {len(workload.texts)} distinct text queries")
    started = time.monotonic()
    server = None
    try:
        if not args.url:
            work = work_dir(args.device)
            work.mkdir(parents=True, exist_ok=True)
            server = start_private_server(work, log, device=args.device)
            log(f"private server up ({time.monotonic() - started:.0f} s), load average {load_average()}")
        url = args.url or server.grpc_url
        for section in sections:
            section_started = time.monotonic()
            log(f"--- {section}")
            result = served_section(section, url, server, workload, settings, args, log)
            log(result)
            log(f"({section}: {time.monotonic() - section_started:.0f} s)")
            if args.write:
                key = section if section != "scale" or args.sigma == 1.0 else f"scale-sigma{args.sigma:g}"
                key += "" if args.device == "cpu" else f"-{args.device}"
                title = TITLES[section] + ("" if args.sigma == 1.0 or section != "scale"
                                           else f" (harder synthetic catalog, sigma {args.sigma:g})")
                title += "" if args.device == "cpu" else f" ({args.device.upper()} configs)"
                record(key, header(title, load_before, activity) + "\n" + result)
    finally:
        if server is not None:
            server.stop()
    log(f"bench done in {time.monotonic() - started:.0f} s" + (f"; recorded in {BENCHMARKS}" if args.write else ""))
    return 0


def served_section(section: str, url: str, server, workload: Workload, settings: Settings, args, log) -> str:
    if section == "latency":
        log(TABLE_HEADER)
        return asyncio.run(latency_section(url, workload, settings, log))
    if section == "batching":
        return asyncio.run(batching_section(server, workload, settings, log))[0]
    if section == "inprocess":
        return asyncio.run(inprocess_section(server, workload, settings, log))[0]
    if section == "scale":
        return asyncio.run(scale_section(server, workload, settings, log, args.sigma))[0]
    if section == "profile":
        return profile_section(server, workload, settings.rounds, settings.cell_seconds, log)
    if section == "perf_analyzer":
        return perf_analyzer_section(server, workload, settings.rounds, log=log)
    if section == "locust":
        return locust_section(url, seconds=settings.locust_seconds, log=log,
                              key=server.key if server is not None else None)
    if section == "keys":
        from loadtest.keys_bench import keys_section

        return asyncio.run(keys_section(server, workload, settings, log, max(5, settings.rounds)))
    if section == "metrics_served":
        from loadtest.metrics_served import metrics_served_section

        return metrics_served_section(server, workload, settings.rounds, log=log)
    if section in ("events_served", "events_ingest"):
        from loadtest import events_bench

        section_fn = events_bench.events_served_section if section == "events_served" else events_bench.events_ingest_section
        return section_fn(server, workload, settings.rounds, log=log)
    if section == "console":
        from loadtest.console_bench import console_section

        return console_section(server, workload, settings, log, max(3, settings.rounds))
    if section == "suggest":
        from loadtest.suggest_bench import suggest_section

        return suggest_section(server, max(3, settings.rounds), log)
    variants = args.variants.split(";") if args.variants else None
    return asyncio.run(tuning_section(server, workload, settings, log, variants, settings.rounds))


if __name__ == "__main__":
    sys.exit(main())
