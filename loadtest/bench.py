"""Latency/throughput harness for the served search (asyncio tritonclient over gRPC).

    python -m loadtest.bench                 # starts a private Triton, runs the default suite
    python -m loadtest.bench --url host:8001 # against a running server (search must be loaded)

Prints a table and (with --write) records it in BENCHMARKS.md with machine, date and command.
Figures from this shared, noisy machine are only comparable within one run.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import shlex
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tritonclient.grpc.aio as aioclient

from loadtest.workload import DEMO_CATALOG, QUERY_KINDS, ROOT, Workload

BENCHMARKS = ROOT / "BENCHMARKS.md"


@dataclass
class LoadResult:
    kind: str
    concurrency: int
    requests: int
    errors: int
    seconds: float
    latencies_ms: list[float]

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms, q)) if self.latencies_ms else float("nan")

    @property
    def throughput(self) -> float:
        return (self.requests - self.errors) / self.seconds if self.seconds else 0.0

    def row(self) -> str:
        return (f"| {self.kind} | {self.concurrency} | {self.requests} | {self.percentile(50):.1f} | "
                f"{self.percentile(90):.1f} | {self.percentile(99):.1f} | {self.throughput:.1f} | {self.errors} |")


TABLE_HEADER = ("| query | concurrency | requests | p50 ms | p90 ms | p99 ms | throughput req/s | errors |\n"
                "|---|---:|---:|---:|---:|---:|---:|---:|")


def search_inputs(text: str, image: bytes, top_k: int = 10) -> list:
    inputs = []
    for name, value in (("QUERY_TEXT", text.encode()), ("QUERY_IMAGE", image)):
        tensor = aioclient.InferInput(name, [1, 1], "BYTES")
        tensor.set_data_from_numpy(np.array([[value]], dtype=object))
        inputs.append(tensor)
    top = aioclient.InferInput("TOP_K", [1, 1], "INT32")
    top.set_data_from_numpy(np.array([[top_k]], dtype=np.int32))
    return inputs + [top]


def encode_inputs(title: str, image: bytes) -> list:
    inputs = []
    for name, value in (("TITLE", title.encode()), ("IMAGE", image)):
        tensor = aioclient.InferInput(name, [1, 1], "BYTES")
        tensor.set_data_from_numpy(np.array([[value]], dtype=object))
        inputs.append(tensor)
    return inputs


async def run_load(url: str, workload: Workload, kind: str, concurrency: int, requests: int,
                   warmup: int = 5, model: str | None = None) -> LoadResult:
    """`requests` calls of one query kind with `concurrency` in flight; latency per call."""
    client = aioclient.InferenceServerClient(url)
    model = model or ("encode_product" if kind == "encode" else "search")
    latencies: list[float] = []
    errors = 0
    todo = requests

    def make(rng: random.Random) -> list:
        text, image = workload.query(kind, rng)
        return encode_inputs(text, image) if model == "encode_product" else search_inputs(text, image)

    async def worker(seed: int, count_it: bool) -> None:
        nonlocal todo, errors
        rng = random.Random(seed)
        while todo > 0:
            todo -= 1
            inputs = make(rng)
            started = time.perf_counter()
            try:
                await client.infer(model, inputs, client_timeout=60)
            except Exception:  # counted, the run goes on
                errors += 1
                continue
            if count_it:
                latencies.append((time.perf_counter() - started) * 1000)

    try:
        todo = warmup
        await asyncio.gather(*(worker(1000 + i, False) for i in range(min(concurrency, warmup))))
        todo, errors = requests, 0
        started = time.perf_counter()
        await asyncio.gather(*(worker(i, True) for i in range(concurrency)))
        seconds = time.perf_counter() - started
    finally:
        await client.close()
    return LoadResult(kind, concurrency, requests, errors, seconds, latencies)


def machine_line() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores ({cpu}), {platform.system()} {platform.release()}, Python {platform.python_version()}, CPU only"


def record(section: str, body: str, path: Path = BENCHMARKS) -> None:
    """Replace (or append) one marked section of BENCHMARKS.md."""
    begin, end = f"<!-- bench:{section} -->", f"<!-- /bench:{section} -->"
    text = path.read_text() if path.exists() else "# Benchmarks\n\nFigures measured by `loadtest/`; compare ratios within one run.\n"
    block = f"{begin}\n{body.rstrip()}\n{end}"
    if begin in text and end in text:
        text = text[: text.index(begin)] + block + text[text.index(end) + len(end):]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)


def header(title: str) -> str:
    command = "python -m loadtest.bench " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    return (f"## {title}\n\n- machine: {machine_line()}\n- date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n"
            f"- command: `{command.strip()}`\n")


async def latency_suite(url: str, workload: Workload, requests: int) -> str:
    """Issue-2 figures: p50/p99 at concurrency 1 per query kind, throughput at concurrency 16."""
    rows = []
    for kind in QUERY_KINDS:
        rows.append(await run_load(url, workload, kind, 1, requests))
    for kind in QUERY_KINDS:
        rows.append(await run_load(url, workload, kind, 16, requests * 4))
    for result in rows:
        print(result.row(), flush=True)
    return "\n".join([TABLE_HEADER, *(r.row() for r in rows)])


def start_private_server(tmp: Path):
    """A Triton on free ports over a linked copy of the model repository, serving the latest
    generation (its catalog reused when indexed, else indexed now)."""
    from clients.index import index_and_serve
    from productsearch.deploy import Deployer
    from productsearch.launcher import TritonServer, free_ports
    from productsearch.repository import indexed_generations, latest_generation, link_repository

    source = ROOT / "model_repository"
    generation = latest_generation(source)
    repository = link_repository(source, tmp / "model_repository", generations=[generation], with_catalogs=True)
    http, grpc, metrics = free_ports(3)
    server = TritonServer(model_repository=repository, http_port=http, grpc_port=grpc, metrics_port=metrics,
                          log_file=tmp / "triton.log").start()
    if generation in indexed_generations(repository):
        with Deployer(server.grpc_url, repository, server.admin_headers, log=lambda *a: None) as deployer:
            deployer.swap(generation)
    else:
        index_and_serve(DEMO_CATALOG, server.grpc_url, repository, generation, server.admin_headers, log=lambda *a: None)
    return server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.bench", description=__doc__.split("\n")[0])
    parser.add_argument("--url", help="use a running server instead of starting a private one")
    parser.add_argument("--requests", type=int, default=100, help="requests per concurrency-1 cell")
    parser.add_argument("--write", action="store_true", help="record the table in BENCHMARKS.md")
    args = parser.parse_args(argv)

    workload = Workload.from_catalog(DEMO_CATALOG)
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        server = None if args.url else start_private_server(Path(tmp))
        url = args.url or server.grpc_url
        try:
            print(TABLE_HEADER)
            table = asyncio.run(latency_suite(url, workload, args.requests))
        finally:
            if server is not None:
                server.stop()
    if args.write:
        record("latency", header("Search latency and throughput (demo catalog)") + "\n" + table)
        print(f"recorded in {BENCHMARKS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
