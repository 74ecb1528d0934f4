"""The profile section of loadtest.bench: where serving time goes, per ensemble step and per
process, under search load.

    python -m loadtest.bench --sections profile --rounds 3 --write     # ~3 minutes on 2 cores

On the bench's private server (the demo catalog loaded), 16 client threads search (text queries,
then photo queries) for a cell's seconds, `--rounds` times. Per model, from Triton's
statistics API (deltas over the window): requests, executions (so the mean batch Triton formed),
and per request the time in the queue, in compute input (tensors into the stub), compute infer
(the model's own execute()) and compute output; per process, the CPU it used (% of one core,
from /proc). Every figure is the median of the runs with min-max.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import tritonclient.grpc as grpcclient

from loadtest.search_load import SearchLoad
from loadtest.workload import Workload
from productsearch.control.processes import stub_processes

CLIENTS = 16
MODELS = ("search", "query_gate", "text_encoder", "image_encoder", "fusion", "scorer")
PHASES = ("queue", "compute_input", "compute_infer", "compute_output")
TICK = os.sysconf("SC_CLK_TCK")


def model_stats(client) -> dict[str, dict]:
    """Cumulative counts and nanoseconds per model (all loaded versions summed)."""
    out = {}
    for model in MODELS:
        try:
            stats = client.get_inference_statistics(model, as_json=True).get("model_stats", [])
        except Exception:  # noqa: BLE001 - not loaded
            continue
        entry = {"requests": 0, "executions": 0, **{f"{p}_ns": 0 for p in PHASES}}
        for version in stats:
            inference = version.get("inference_stats", {})
            entry["requests"] += int(inference.get("success", {}).get("count", 0))
            entry["executions"] += int(version.get("execution_count", 0))
            for phase in PHASES:
                entry[f"{phase}_ns"] += int(inference.get(phase, {}).get("ns", 0))
        out[model] = entry
    return out


def cpu_ticks(server_pid: int) -> dict[str, int]:
    """utime + stime per process: tritonserver itself and each stub (by model)."""
    def ticks(pid: int) -> int:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            return int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            return 0
    out = {"tritonserver": ticks(server_pid)}
    for pid, stub in stub_processes(server_pid).items():
        out[f"stub {stub.model}"] = out.get(f"stub {stub.model}", 0) + ticks(pid)
    return out


def window(server, queries, seconds: float) -> dict:
    with grpcclient.InferenceServerClient(server.grpc_url) as client, \
            SearchLoad(server.grpc_url, CLIENTS, queries, timeout_s=30, retries=0) as load:
        time.sleep(3)
        before, cpu_before, start = model_stats(client), cpu_ticks(server.pid), time.monotonic()
        time.sleep(seconds)
        after, cpu_after, elapsed = model_stats(client), cpu_ticks(server.pid), time.monotonic() - start
        answered = sum(1 for c in load.calls if c.ok and start <= c.sent)
    figures = {"req/s": answered / elapsed}
    for model, stats in after.items():
        requests = stats["requests"] - before.get(model, {}).get("requests", 0)
        executions = stats["executions"] - before.get(model, {}).get("executions", 0)
        if requests <= 0:
            continue
        figures[f"{model} batch"] = requests / max(executions, 1)
        for phase in PHASES:
            spent = stats[f"{phase}_ns"] - before.get(model, {}).get(f"{phase}_ns", 0)
            figures[f"{model} {phase}"] = spent / requests / 1e6
    for name, ticks in cpu_after.items():
        figures[f"cpu {name}"] = 100.0 * (ticks - cpu_before.get(name, ticks)) / TICK / elapsed
    return figures


def spread(values: list[float]) -> str:
    return f"{np.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"


def profile_section(server, workload: Workload, runs: int, seconds: float, log=print) -> str:
    """Text queries (the workload's full set), then photo queries (its renders): `runs` windows each."""
    kinds = {"text": list(workload.texts), "photo": [("", photo) for photo in workload.images]}
    tables = []
    for kind, queries in kinds.items():
        results = [window(server, queries, seconds) for _ in range(runs)]
        log(f"{kind}: " + "; ".join(f"{r['req/s']:.0f} req/s" for r in results))
        keys = sorted(set.intersection(*(set(r) for r in results)))
        rows = [f"\n**{kind} search, c={CLIENTS}**: {spread([r['req/s'] for r in results])} req/s\n",
                "| model | mean batch | queue ms | compute input ms | compute infer ms | compute output ms |",
                "|---|---:|---:|---:|---:|---:|"]
        for model in MODELS:
            if f"{model} batch" in keys:
                rows.append(f"| {model} | {spread([r[f'{model} batch'] for r in results])} | "
                            + " | ".join(spread([r[f'{model} {p}'] for r in results]) for p in PHASES) + " |")
        rows += ["", "| process | CPU, % of one core |", "|---|---:|"]
        rows += [f"| {key[4:]} | {spread([r[key] for r in results])} |" for key in keys if key.startswith("cpu ")]
        tables.append("\n".join(rows))
    return "\n".join(tables) + (f"\n\n{runs} runs of {seconds:g} s each, {len(kinds['text'])} distinct text queries and "
                                f"{len(kinds['photo'])} photos; the ensemble `search` row is the whole request (its queue "
                                "and compute are the sum over its steps as Triton counts them).")
