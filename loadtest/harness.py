"""The load generator of the benchmarks: many asyncio gRPC calls of one query kind in flight,
latency per call, and the batch sizes Triton formed meanwhile (its statistics API).
"""
from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.grpc.aio as aioclient

from clients.contract import encode_inputs, search_inputs
from loadtest.workload import Workload

PYTHON_MODELS = ("text_encoder", "image_encoder", "fusion", "scorer")


@dataclass
class LoadResult:
    kind: str
    concurrency: int
    requests: int
    errors: int
    seconds: float
    latencies_ms: list[float]
    batch: dict[str, float] = field(default_factory=dict)  # model -> mean batch size Triton formed

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


def batch_counts(url: str, models=PYTHON_MODELS) -> dict[str, tuple[int, int]]:
    """(inferences, executions) so far per model, from Triton's statistics API."""
    counts = {}
    with grpcclient.InferenceServerClient(url) as client:
        for model in models:
            try:
                stats = client.get_inference_statistics(model, as_json=True).get("model_stats", [])
            except Exception:  # not loaded: no figure
                continue
            counts[model] = (sum(int(s.get("inference_count", 0)) for s in stats),
                             sum(int(s.get("execution_count", 0)) for s in stats))
    return counts


def mean_batches(before: dict, after: dict) -> dict[str, float]:
    out = {}
    for model, (inferences, executions) in after.items():
        done = executions - before.get(model, (0, 0))[1]
        if done > 0:
            out[model] = (inferences - before.get(model, (0, 0))[0]) / done
    return out


async def run_load(url: str, workload: Workload, kind: str, concurrency: int, requests: int,
                   warmup: int | None = None, model: str | None = None, max_seconds: float | None = None,
                   headers: dict | None = None) -> LoadResult:
    """Up to `requests` calls of one query kind (stopping after `max_seconds`) with `concurrency`
    in flight (each with these gRPC `headers`: an API key); latency per call, and the mean batch
    size each python model formed meanwhile."""
    client = aioclient.InferenceServerClient(url)
    model = model or ("encode_product" if kind == "encode" else "search")
    latencies: list[float] = []
    errors = 0
    todo = 0
    deadline = float("inf")

    def make(rng: random.Random) -> list:
        text, image = workload.query(kind, rng)
        return encode_inputs(text, image) if model == "encode_product" else search_inputs(text, image, 10)

    async def worker(seed: int, count_it: bool) -> None:
        nonlocal todo, errors
        rng = random.Random(seed)
        while todo > 0 and time.perf_counter() < deadline:
            todo -= 1
            inputs = make(rng)
            started = time.perf_counter()
            try:
                await client.infer(model, inputs, client_timeout=60, headers=headers)
            except Exception:  # counted, the run goes on
                errors += 1
                continue
            if count_it:
                latencies.append((time.perf_counter() - started) * 1000)

    try:
        todo = warmup if warmup is not None else max(5, concurrency)
        await asyncio.gather(*(worker(1000 + i, False) for i in range(min(concurrency, todo))))
        todo, errors = requests, 0
        before = batch_counts(url)
        started = time.perf_counter()
        deadline = started + max_seconds if max_seconds else float("inf")
        await asyncio.gather(*(worker(i, True) for i in range(concurrency)))
        seconds = time.perf_counter() - started
        batches = mean_batches(before, batch_counts(url))
    finally:
        await client.close()
    return LoadResult(kind, concurrency, len(latencies) + errors, errors, seconds, latencies, batches)
