"""The metrics_served section of loadtest.bench: what the service's own metrics cost a served
search, measured with perf_analyzer against the bench's private server.

    python -m loadtest.bench --sections metrics_served --rounds 3 --write

The models that count on the search path (query_gate, scorer) get their config parameter
`metrics` "1" (as shipped) or "0" (runtime/metrics.py: off) written into the private repository
and the server is restarted for each run (reloading them through the model-repository API
twice in a row crashed or hung tritonserver 2.41 here: "malloc(): unaligned fastbin chunk
detected" as the old scorer's stub was unloaded, then a load that never answered), the two
variants interleaved in every round and their order alternated, so a drift of the shared
machine falls on both. Each cell is one perf_analyzer run (text queries, the workload's full EN + ZH set, c=16) with
tritonserver's and every stub's CPU per search; the figure is the median (min-max) of the rounds.
"""
from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path

from google.protobuf import text_format

from loadtest.perf_analyzer import BINARY, input_data, run_cell
from loadtest.private_server import restore
from productsearch.control.device_configs import config_path
from productsearch.control.model_configs import read_config
from loadtest.serving_profile import spread
from loadtest.workload import Workload

COUNTING_MODELS = ("query_gate", "scorer")  # the search path's models with metrics of their own
CONCURRENCY = 16
VARIANTS = {"metrics on (as shipped)": "1", "metrics off": "0"}


def write_metrics_switch(repository: Path, value: str) -> None:
    """The counting models' on-disk configs in the private `repository` with `metrics` = value."""
    for model in COUNTING_MODELS:
        config = read_config(repository, model)
        config.parameters["metrics"].string_value = value
        config_path(repository, model).write_text(text_format.MessageToString(config))


def restart_with_metrics(server, value: str) -> float:
    """The private server stopped, its counting models' configs switched, started and restored
    (same ports); returns seconds."""
    started = time.monotonic()
    server.stop()
    write_metrics_switch(server.repository, value)
    server.start()
    restore(server, server.repository)
    return time.monotonic() - started


def metrics_served_section(server, workload: Workload, rounds: int, window_ms: int = 4000, log=print) -> str:
    if not BINARY.exists():
        raise SystemExit(f"no {BINARY}: run `python -m loadtest.perf_analyzer install` (make bench does)")
    data = Path(tempfile.mkdtemp(prefix="pa-metrics-")) / "text.json"
    data.write_text(json.dumps(input_data(workload, "text"), ensure_ascii=False))
    results: dict[str, list[dict]] = {name: [] for name in VARIANTS}
    names = list(VARIANTS)
    try:
        for round_ in range(rounds):
            for name in names if round_ % 2 == 0 else names[::-1]:
                seconds = restart_with_metrics(server, VARIANTS[name])
                run_cell(server.grpc_url, server.pid, data, CONCURRENCY, window_ms)  # warm-up after the restart
                cell = run_cell(server.grpc_url, server.pid, data, CONCURRENCY, window_ms)
                results[name].append(cell)
                log(f"round {round_ + 1} {name} (restarted in {seconds:.0f} s): {cell['req/s']:.1f} req/s, "
                    f"p50 {cell['p50']:.1f} ms, {cell['cpu_ms']:.2f} server CPU-ms/search")
    finally:
        write_metrics_switch(server.repository, "1")  # the repository as shipped again (the server stops after)
    on = results[names[0]]
    base_rps = statistics.median(c["req/s"] for c in on)
    base_cpu = statistics.median(c["cpu_ms"] for c in on)
    lines = ["| variant | req/s | p50 ms | p99 ms | server CPU-ms per search | req/s vs on | CPU per search vs on |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for name, cells in results.items():
        rps, cpu = [c["req/s"] for c in cells], [c["cpu_ms"] for c in cells]
        lines.append(f"| {name} | {spread(rps)} | {spread([c['p50'] for c in cells])} | "
                     f"{spread([c['p99'] for c in cells])} | {spread(cpu)} | "
                     f"{statistics.median(rps) / base_rps - 1:+.1%} | {statistics.median(cpu) / base_cpu - 1:+.1%} |")
    lines += ["", f"Text search ({len(workload.texts)} distinct EN + ZH queries, cycled), perf_analyzer 2.41 over gRPC at "
                  f"concurrency {CONCURRENCY}, windows of {window_ms} ms; server restarted with "
                  f"{', '.join(COUNTING_MODELS)}'s config parameter `metrics` 1 or 0 before each run (and a warm-up run); variants interleaved, "
                  f"their order alternated, {rounds} rounds, median (min-max). Target: throughput with metrics "
                  f"within 3% of without."]
    return "\n".join(lines)
