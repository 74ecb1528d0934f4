"""The benchmark's sections that run on the private server as shipped or reloaded: latency by
query kind and concurrency, dynamic batching on vs off, served vs in-process, encoder tuning
variants, and the Locust smoke run.
"""
from __future__ import annotations

import os
import random
import sys
import time
from dataclasses import dataclass

import numpy as np

from loadtest.harness import PYTHON_MODELS, TABLE_HEADER, LoadResult, run_load
from loadtest.private_server import reload_models
from loadtest.workload import QUERY_KINDS, ROOT, Workload

CONCURRENCY = (1, 4, 16, 64)
SCALES = (10_000, 100_000, 1_000_000)


@dataclass
class Settings:
    requests: int = 100  # per concurrency-1 cell; c cells get requests * c / 4 (at least requests)
    cell_seconds: float = 15.0
    concurrency: tuple[int, ...] = CONCURRENCY
    scales: tuple[int, ...] = SCALES
    compare_requests: int = 600
    compare_seconds: float = 20.0
    locust_seconds: int = 20
    rounds: int = 1  # tuning and profile: rounds, reported as median (min-max)


def cell_requests(settings: Settings, concurrency: int) -> int:
    return max(settings.requests, settings.requests * concurrency // 4)


async def latency_section(url: str, workload: Workload, settings: Settings, log=print) -> str:
    rows = []
    for kind in QUERY_KINDS:
        for concurrency in settings.concurrency:
            result = await run_load(url, workload, kind, concurrency, cell_requests(settings, concurrency),
                                    max_seconds=settings.cell_seconds)
            log(result.row())
            rows.append(result)
    notes = ("Each cell: up to the listed requests or "
             f"{settings.cell_seconds:g} s, whichever comes first, after a warm-up; one asyncio gRPC client "
             "in the same 2-core machine as the server (it takes its share of the CPU).")
    return "\n".join([TABLE_HEADER, *(r.row() for r in rows), "", notes])


def batch_text(result: LoadResult) -> str:
    return ", ".join(f"{m} {b:.1f}" for m, b in result.batch.items() if m in ("text_encoder", "scorer")) or "-"


async def batching_section(server, workload: Workload, settings: Settings, log=print) -> tuple[str, dict]:
    """Text search at concurrency 16: shipped batching, none, shipped again (reloaded)."""
    def no_batching(model, config):
        config.ClearField("dynamic_batching")

    runs = []
    for label, mutate in (("on (as shipped)", None), ("off (no dynamic_batching)", no_batching), ("on (reloaded)", None)):
        if runs:  # the first "on" is the configuration already loaded
            seconds = reload_models(server, PYTHON_MODELS, mutate)
            log(f"reloaded {', '.join(PYTHON_MODELS)} with batching {label} ({seconds:.0f} s)")
        result = await run_load(server.grpc_url, workload, "text", 16, settings.compare_requests,
                                max_seconds=settings.compare_seconds)
        log(f"batching {label}: {result.throughput:.1f} req/s, p50 {result.percentile(50):.1f} ms, batches {batch_text(result)}")
        runs.append((label, result))
    on = np.mean([runs[0][1].throughput, runs[2][1].throughput])
    off = runs[1][1].throughput
    ratio = on / off if off else float("nan")
    lines = ["| dynamic batching | requests | p50 ms | p99 ms | throughput req/s | mean batch formed | errors |",
             "|---|---:|---:|---:|---:|---|---:|"]
    for label, r in runs:
        lines.append(f"| {label} | {r.requests} | {r.percentile(50):.1f} | {r.percentile(99):.1f} | "
                     f"{r.throughput:.1f} | {batch_text(r)} | {r.errors} |")
    lines += ["", f"**Throughput ratio batching on / off at concurrency 16 (text search): {ratio:.2f}** "
              f"(target >= 2.0; \"on\" is the mean of the two on-runs). Off = the same models and "
              "max_batch_size, reloaded through the model-repository API with `dynamic_batching` removed."]
    return "\n".join(lines), {"on": on, "off": off, "ratio": ratio}


async def inprocess_section(server, workload: Workload, settings: Settings, log=print) -> tuple[str, dict]:
    """Served text search at concurrency 16 vs the same models, on the same runtime, in this
    process at the batch size the server formed: with the served encoder's threads (only the
    server differs) and with every core (the most a direct caller gets here)."""
    from loadtest.inprocess import TextSearchPipeline, config_parameters

    # warm-up first: a fresh server's first requests (caches, first batches) are not steady state
    await run_load(server.grpc_url, workload, "text", 16, 300, max_seconds=5)
    served = await run_load(server.grpc_url, workload, "text", 16, settings.compare_requests,
                            max_seconds=settings.compare_seconds)
    served_batch = served.batch.get("text_encoder", 16.0)
    log(f"served: {served.throughput:.1f} req/s, batches {batch_text(served)}")
    served_threads = int(config_parameters(server.repository, "text_encoder")["parameters"].get(
        "torch_threads", {}).get("string_value", "1"))
    cores = os.cpu_count() or 1
    pipeline = TextSearchPipeline(server.repository, server.generation, served_threads)
    rng = random.Random(0)
    texts = [workload.query("text", rng)[0] for _ in range(1000)]
    batch = max(1, round(served_batch))
    runs = []  # (threads, batch, result)
    for threads, size, share in ((served_threads, batch, 2), (cores, batch, 2), (cores, 16, 2), (cores, 1, 4)):
        if threads != pipeline.threads:
            pipeline.use_threads(threads)
        runs.append((threads, size, pipeline.throughput(texts, size, seconds=settings.compare_seconds / share)))
    served_again = await run_load(server.grpc_url, workload, "text", 16, settings.compare_requests,
                                  max_seconds=settings.compare_seconds)
    served_mean = float(np.mean([served.throughput, served_again.throughput]))
    same = served_mean / runs[0][2]["throughput"]
    machine = served_mean / runs[1][2]["throughput"]
    log(f"served mean {served_mean:.1f} req/s; in-process ({pipeline.runtime}) batch {batch}: "
        f"{runs[0][2]['throughput']:.1f} q/s with {served_threads} thread(s), {runs[1][2]['throughput']:.1f} with {cores}; "
        f"ratios {same:.2f}, {machine:.2f}")
    lines = ["| path | batch size | threads (tower, BLAS) | queries | throughput queries/s | notes |",
             "|---|---:|---:|---:|---:|---|",
             f"| served, concurrency 16 | {served_batch:.1f} (mean formed) | {served_threads} | {served.requests} | "
             f"{served.throughput:.1f} | batches formed: {batch_text(served)} |"]
    for threads, size, result in runs:
        lines.append(f"| in-process | {size} | {threads} | {result['queries']} | {result['throughput']:.1f} | "
                     f"{result['batch_ms']:.1f} ms per batch |")
    lines += [f"| served again, concurrency 16 | {served_again.batch.get('text_encoder', float('nan')):.1f} | {served_threads} | "
              f"{served_again.requests} | {served_again.throughput:.1f} | |", "",
              f"**Served / in-process text search throughput at concurrency 16: {same:.2f}** against the same models "
              f"with the served encoder's settings ({served_threads} thread) at the batch size the server formed "
              f"({batch}) -- what serving costs; **{machine:.2f}** against in-process on all {cores} cores at that batch "
              f"size (target >= 0.85; served = mean of the two served runs; vs in-process on {cores} cores at batch 16: "
              f"{served_mean / runs[2][2]['throughput']:.2f}). In-process = the same text tower on the same runtime "
              f"({pipeline.runtime}), fusion and ScorerModel (same catalog, same parameters) called in one Python "
              "process, batch after batch, no gRPC, no server."]
    return "\n".join(lines), {"ratio": same, "ratio_all_cores": machine}


def locust_section(url: str, seconds: int = 20, users: int = 8, log=print, key: str | None = None) -> str:
    """The Locust smoke run (loadtest/locustfile.py, headless) against the private server."""
    import csv
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory(prefix="bench-locust-") as tmp:
        started = time.monotonic()
        run = subprocess.run(
            [sys.executable, "-m", "locust", "-f", "loadtest/locustfile.py", "--host", url, "--headless",
             "-u", str(users), "-r", str(users), "-t", f"{seconds}s", "--only-summary", "--csv", f"{tmp}/run",
             "--exit-code-on-error", "1", "--stop-timeout", "10"],
            cwd=ROOT, capture_output=True, text=True, timeout=seconds + 120,
            env=dict(os.environ, **({"PRODUCTSEARCH_ADMIN_KEY": key} if key else {})))
        wall = time.monotonic() - started
        with open(f"{tmp}/run_stats.csv") as handle:
            rows = list(csv.DictReader(handle))
    lines = ["| request | count | failures | median ms | p95 ms | p99 ms | req/s |", "|---|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        lines.append(f"| {row['Name'] or row['Type']} | {row['Request Count']} | {row['Failure Count']} | {row['50%']} | "
                     f"{row['95%']} | {row['99%']} | {float(row['Requests/s']):.1f} |")
    lines += ["", f"`locust -f loadtest/locustfile.py --headless -u {users} -r {users} -t {seconds}s` (as many "
              f"users as the smoke test; `make loadtest` runs 16 users for 60 s): exit code {run.returncode}, "
              f"{wall:.0f} s from start to exit. Shoppers wait 50-200 ms between calls; tasks weighted "
              "text 10 : image 3 : text+image 2 : filtered 2 : recommend 2 : encode_product 1; one of the users "
              "is a catalog writer (upserts, price updates, deletes; 200-500 ms between writes)."]
    return "\n".join(lines)


def set_parameter(config, key: str, value: str) -> None:
    config.parameters[key].string_value = value


def set_instances(config, count: int) -> None:
    del config.instance_group[:]
    group = config.instance_group.add()
    group.kind = group.KIND_CPU
    group.count = count


ENCODERS = ("text_encoder", "image_encoder")


def encoder_variant(threads: int | None = None, instances: int | None = None, delay_us: int | None = None,
                    preferred: list[int] | None = None, models=ENCODERS, runtime: str | None = None):
    """A mutate() for reload_models: `models` (default both encoders) with these threads /
    instances / queue settings / runtime parameter; None leaves a setting as shipped."""
    def mutate(model, config):
        if model in models:
            if threads is not None:
                set_parameter(config, "torch_threads", str(threads))
            if instances is not None:
                set_instances(config, instances)
            if delay_us is not None:
                config.dynamic_batching.max_queue_delay_microseconds = delay_us
            if preferred is not None:
                config.dynamic_batching.preferred_batch_size[:] = preferred
            if runtime is not None:
                set_parameter(config, "runtime", runtime)
    return mutate


TUNING_VARIANTS = {
    "shipped": None,
    "encoders 2 threads x 1 instance": encoder_variant(2, 1),
    "encoders 1 thread x 2 instances": encoder_variant(1, 2),
    "encoders 2 threads x 2 instances": encoder_variant(2, 2),
    "encoders 1 thread, queue delay 0.5 ms": encoder_variant(1, 1, delay_us=500),
    "encoders 1 thread, queue delay 5 ms": encoder_variant(1, 1, delay_us=5000),
    "encoders 1 thread, preferred batch 4, 8": encoder_variant(1, 1, preferred=[4, 8]),
    "text 2 instances": encoder_variant(instances=2, models=("text_encoder",)),
    "image 2 instances": encoder_variant(instances=2, models=("image_encoder",)),
    "text 2 instances, queue delay 5 ms": encoder_variant(instances=2, delay_us=5000, models=("text_encoder",)),
    "text 2 threads": encoder_variant(threads=2, models=("text_encoder",)),
    "text queue delay 0": encoder_variant(delay_us=0, models=("text_encoder",)),
    "text runtime torch (before)": encoder_variant(runtime="torch", models=("text_encoder",)),
    "encoders runtime torch": encoder_variant(runtime="torch"),
}
TUNING_COLUMNS = ("text p50 ms c=1", "text p50 ms c=16", "text req/s c=16", "text+image p50 ms c=16",
                  "text+image req/s c=16", "image p50 ms c=16", "image req/s c=16", "mean text batch", "mean image batch")


def spread(values: list[float]) -> str:
    """median (min-max) of several rounds; the value itself for one."""
    if len(values) == 1:
        return f"{values[0]:.1f}"
    return f"{np.median(values):.1f} ({min(values):.1f}-{max(values):.1f})"


async def tuning_section(server, workload: Workload, settings: Settings, log=print, variants=None,
                         rounds: int = 1) -> str:
    """Encoder threads / instances / queue settings / runtimes, each reloaded through the
    repository API: text c=1, text c=16, text+image c=16, image c=16 (not part of the default
    run). `rounds` > 1: the variants alternate round by round, each cell median (min-max)."""
    names = variants or list(TUNING_VARIANTS)
    unknown = [n for n in names if n not in TUNING_VARIANTS]
    if unknown:
        raise ValueError(f"unknown tuning variant(s) {unknown}; choose from {list(TUNING_VARIANTS)}")
    figures: dict[str, dict[str, list[float]]] = {}
    errors: dict[str, int] = {}
    order = [n for _ in range(rounds) for n in names] + (["shipped"] if rounds == 1 else [])
    for index, name in enumerate(order):  # one round: shipped again at the end (drift check)
        seconds = reload_models(server, PYTHON_MODELS, TUNING_VARIANTS[name])
        c1 = await run_load(server.grpc_url, workload, "text", 1, settings.requests, max_seconds=settings.cell_seconds)
        c16 = await run_load(server.grpc_url, workload, "text", 16, settings.compare_requests, max_seconds=settings.compare_seconds)
        both = await run_load(server.grpc_url, workload, "text+image", 16, settings.compare_requests // 2,
                              max_seconds=settings.compare_seconds)
        image = await run_load(server.grpc_url, workload, "image", 16, settings.compare_requests // 2,
                               max_seconds=settings.compare_seconds)
        values = (c1.percentile(50), c16.percentile(50), c16.throughput, both.percentile(50), both.throughput,
                  image.percentile(50), image.throughput, c16.batch.get("text_encoder", float("nan")),
                  image.batch.get("image_encoder", float("nan")))
        key = name if rounds > 1 or index < len(names) else "shipped (again)"
        for column, value in zip(TUNING_COLUMNS, values):
            figures.setdefault(key, {}).setdefault(column, []).append(value)
        errors[key] = errors.get(key, 0) + c1.errors + c16.errors + both.errors + image.errors
        log(f"{key}: " + ", ".join(f"{c} {v:.1f}" for c, v in zip(TUNING_COLUMNS, values)) + f"  (reload {seconds:.0f} s)")
    if rounds > 1:
        reload_models(server, PYTHON_MODELS, None)  # leave the server as shipped
    lines = ["| encoders | " + " | ".join(TUNING_COLUMNS) + " | errors |", "|---|" + "---:|" * (len(TUNING_COLUMNS) + 1)]
    for key, cells in figures.items():
        lines.append(f"| {key} | " + " | ".join(spread(cells[c]) for c in TUNING_COLUMNS) + f" | {errors[key]} |")
    if rounds > 1:
        lines.append(f"\n{rounds} rounds, the variants alternating; each cell the median (min-max).")
    return "\n".join(lines)
