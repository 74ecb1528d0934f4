"""Served search with a model config parameter switched, A against B, measured with perf_analyzer
against the bench's private server: the parameter is written into the private repository's
configs and the server restarted for each run (reloading the search path's models through the
model-repository API twice in a row crashed or hung tritonserver here: "malloc(): unaligned
fastbin chunk detected" as the old scorer's stub was unloaded, then a load that never answered).
The variants are interleaved in every round and their order alternated, so a drift of the shared
machine falls on both. Each cell is one perf_analyzer run (text queries, the workload's full
EN + ZH set) after a warm-up run, with tritonserver's and every stub's CPU per search; the figure
is the median (min-max) of the rounds. Used by the metrics_served and events_served sections.
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
from loadtest.serving_profile import spread
from loadtest.workload import Workload
from productsearch.control.device_configs import config_path
from productsearch.control.model_configs import read_config

CONCURRENCY = 16


def write_switch(repository: Path, models: tuple[str, ...], parameter: str, value: str) -> None:
    """`models`' on-disk configs in the private `repository` with config parameter = value."""
    for model in models:
        config = read_config(repository, model)
        config.parameters[parameter].string_value = value
        config_path(repository, model).write_text(text_format.MessageToString(config))


def restart_with(server, models: tuple[str, ...], parameter: str, value: str) -> float:
    """The private server stopped, the configs switched, started and restored (same ports); seconds."""
    started = time.monotonic()
    server.stop()
    write_switch(server.repository, models, parameter, value)
    server.start()
    restore(server, server.repository)
    return time.monotonic() - started


def switch_section(server, workload: Workload, rounds: int, models: tuple[str, ...], parameter: str,
                   variants: dict[str, str], target: str, window_ms: int = 4000, log=print) -> str:
    """The table of `variants` (name -> parameter value; the first is as shipped, the baseline)."""
    if not BINARY.exists():
        raise SystemExit(f"no {BINARY}: run `python -m loadtest.perf_analyzer install` (make bench does)")
    data = Path(tempfile.mkdtemp(prefix="pa-switch-")) / "text.json"
    data.write_text(json.dumps(input_data(workload, "text"), ensure_ascii=False))
    results: dict[str, list[dict]] = {name: [] for name in variants}
    names = list(variants)
    try:
        for round_ in range(rounds):
            for name in names if round_ % 2 == 0 else names[::-1]:
                seconds = restart_with(server, models, parameter, variants[name])
                run_cell(server.grpc_url, server.pid, data, CONCURRENCY, window_ms)  # warm-up after the restart
                cell = run_cell(server.grpc_url, server.pid, data, CONCURRENCY, window_ms)
                results[name].append(cell)
                log(f"round {round_ + 1} {name} (restarted in {seconds:.0f} s): {cell['req/s']:.1f} req/s, "
                    f"p50 {cell['p50']:.1f} ms, {cell['cpu_ms']:.2f} server CPU-ms/search")
    finally:
        write_switch(server.repository, models, parameter, variants[names[0]])  # as shipped (the server stops after)
    base = results[names[0]]
    base_rps = statistics.median(c["req/s"] for c in base)
    base_cpu = statistics.median(c["cpu_ms"] for c in base)
    lines = [f"| variant | req/s | p50 ms | p99 ms | server CPU-ms per search | req/s vs {names[0]} | CPU per search vs {names[0]} |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for name, cells in results.items():
        rps, cpu = [c["req/s"] for c in cells], [c["cpu_ms"] for c in cells]
        lines.append(f"| {name} | {spread(rps)} | {spread([c['p50'] for c in cells])} | "
                     f"{spread([c['p99'] for c in cells])} | {spread(cpu)} | "
                     f"{statistics.median(rps) / base_rps - 1:+.1%} | {statistics.median(cpu) / base_cpu - 1:+.1%} |")
    lines += ["", f"Text search ({len(workload.texts)} distinct EN + ZH queries, cycled), perf_analyzer 2.41 over gRPC at "
                  f"concurrency {CONCURRENCY}, windows of {window_ms} ms; server restarted with {', '.join(models)}'s "
                  f"config parameter `{parameter}` set per variant before each run (and a warm-up run); variants "
                  f"interleaved, their order alternated, {rounds} rounds, median (min-max). Target: {target}."]
    return "\n".join(lines)
