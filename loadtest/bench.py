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
import json
import os
import platform
import random
import shlex
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.grpc.aio as aioclient

from loadtest.workload import DEMO_CATALOG, QUERY_KINDS, ROOT, Workload

BENCHMARKS = ROOT / "BENCHMARKS.md"
WORK_DIR = ROOT / "run" / "bench"
SECTIONS = ("latency", "batching", "inprocess", "scale", "locust")
EXTRA_SECTIONS = ("tuning",)  # run only when named in --sections
CONCURRENCY = (1, 4, 16, 64)
SCALES = (10_000, 100_000, 1_000_000)
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
                   warmup: int | None = None, model: str | None = None, max_seconds: float | None = None) -> LoadResult:
    """Up to `requests` calls of one query kind (stopping after `max_seconds`) with `concurrency`
    in flight; latency per call, and the mean batch size each python model formed meanwhile."""
    client = aioclient.InferenceServerClient(url)
    model = model or ("encode_product" if kind == "encode" else "search")
    latencies: list[float] = []
    errors = 0
    todo = 0
    deadline = float("inf")

    def make(rng: random.Random) -> list:
        text, image = workload.query(kind, rng)
        return encode_inputs(text, image) if model == "encode_product" else search_inputs(text, image)

    async def worker(seed: int, count_it: bool) -> None:
        nonlocal todo, errors
        rng = random.Random(seed)
        while todo > 0 and time.perf_counter() < deadline:
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


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def other_activity(seconds: float = 2.0) -> str:
    """What else runs on the machine: other tritonservers, and processes busy over `seconds`."""
    try:
        import psutil
    except ImportError:
        return "unknown"
    mine = {os.getpid()}
    procs = []
    for proc in psutil.process_iter(["pid", "name", "cmdline"]):
        try:
            proc.cpu_percent(None)
            procs.append(proc)
        except psutil.Error:
            continue
    time.sleep(seconds)
    busy, servers = [], 0
    for proc in procs:
        try:
            if proc.pid in mine:
                continue
            cmdline = " ".join(proc.info["cmdline"] or [])
            servers += proc.info["name"] == "tritonserver"
            cpu = proc.cpu_percent(None)
            if cpu >= 10:
                name = next((a.split("/")[-2] for a in proc.info["cmdline"] or [] if a.endswith("/model.py")), proc.info["name"])
                busy.append(f"{name} {cpu:.0f}%")
        except (psutil.Error, IndexError):
            continue
    return f"{servers} other tritonserver(s) running; busy over {seconds:g} s: {', '.join(busy) or 'nothing above 10% CPU'}"


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


def report_header(title: str, module: str, argv: list[str] | None = None) -> str:
    """A BENCHMARKS.md section's title and its machine, date and command lines."""
    command = f"python -m {module} " + " ".join(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    return (f"## {title}\n\n- machine: {machine_line()}\n- date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n"
            f"- command: `{command.strip()}`\n")


def publish(section: str, title: str, module: str, argv: list[str] | None, about: str, table: str,
            write: bool) -> None:
    """Print a standalone benchmark's report (header, what was run, its table); with --write,
    record it as `section` of BENCHMARKS.md."""
    report = report_header(title, module, argv) + f"- {about}\n\n" + table
    print(report)
    if write:
        record(section, report)


def header(title: str, load_before: str | None = None, activity: str | None = None) -> str:
    load = f"before {load_before}, after {load_average()}" if load_before else load_average()
    return (report_header(title, "loadtest.bench") + f"- load average (1/5/15 min): {load}\n"
            + (f"- also on the machine at the start: {activity}\n" if activity else ""))


# ------------------------------------------------------------------ the private server

def read_generation_manifest(repository: Path, generation: int) -> dict:
    path = Path(repository) / "generations" / f"{generation}.json"
    return json.loads(path.read_text()) if path.exists() else {}


def point_catalog(version_dir: Path, target: Path | str) -> None:
    """Atomically point the scorer version's `catalog` link at `target` (nothing is deleted)."""
    link, tmp = Path(version_dir) / "catalog", Path(version_dir) / ".catalog.bench-tmp"
    tmp.unlink(missing_ok=True)
    os.symlink(target, tmp)
    os.replace(tmp, link)


def restore_catalog(repository: Path, generation: int) -> None:
    """Point scorer/N back at the generation's own catalog (after the scale section or a crash)."""
    sha = read_generation_manifest(repository, generation).get("catalog", {}).get("embeddings_sha256")
    own = Path(repository) / "scorer" / str(generation) / f"catalog-{sha[:12]}" if sha else None
    if own is not None and own.exists():
        point_catalog(own.parent, own.name)


def prepare_repository(work: Path, log=print) -> tuple[Path, int]:
    """run/bench/model_repository: a private copy of the latest generation, kept between runs
    while its encoders match the source's (so its indexed catalog is reused); configs and
    model.py files are refreshed from the source every run."""
    from productsearch.repository import latest_generation, link_repository

    source = ROOT / "model_repository"
    generation = latest_generation(source)
    repository = Path(work) / "model_repository"
    mine = read_generation_manifest(repository, generation).get("encoders")

    def models(root: Path) -> set[str]:
        return {p.parent.name for p in root.glob("*/config.pbtxt")}

    if repository.exists() and (mine is None or mine != read_generation_manifest(source, generation).get("encoders")
                                or models(repository) != models(source)):  # a model added or removed
        shutil.rmtree(repository)
    if not repository.exists():
        link_repository(source, repository, generations=[generation], with_catalogs=True)
        log(f"private model repository {repository} (generation {generation})")
    else:
        for model_dir in source.iterdir():
            if (model_dir / "config.pbtxt").exists() and (repository / model_dir.name).is_dir():
                shutil.copy2(model_dir / "config.pbtxt", repository / model_dir.name / "config.pbtxt")
                for entry in model_dir.glob("[0-9]*/model.py"):
                    target = repository / model_dir.name / entry.parent.name
                    if target.is_dir():
                        shutil.copy2(entry, target / "model.py")
        restore_catalog(repository, generation)
    return repository, generation


def start_private_server(work: Path, log=print):
    """A Triton on free ports over run/bench/model_repository serving its generation (the demo
    catalog indexed through the server the first time)."""
    from clients.index import index_and_serve
    from productsearch.deploy import Deployer
    from productsearch.launcher import TritonServer, free_ports
    from productsearch.repository import indexed_generations

    repository, generation = prepare_repository(work, log)
    http, grpc, metrics = free_ports(3)
    (Path(work) / "triton.log").unlink(missing_ok=True)
    server = TritonServer(model_repository=repository, http_port=http, grpc_port=grpc, metrics_port=metrics,
                          log_file=Path(work) / "triton.log").start()
    try:
        if generation in indexed_generations(repository):
            with Deployer(server.grpc_url, repository, server.admin_headers, log=lambda *a: None) as deployer:
                deployer.swap(generation)
        else:
            log("indexing the demo catalog (first run only)")
            index_and_serve(DEMO_CATALOG, server.grpc_url, repository, generation, server.admin_headers, log=lambda *a: None)
    except BaseException:
        server.stop()
        raise
    server.repository, server.generation = repository, generation
    return server


def reload_models(server, models, mutate=None, timeout_s: float = 1200) -> float:
    """Reload `models` (pinned to the served generation) with their on-disk config, changed by
    `mutate(model, config)`; returns seconds. The ensembles keep their pinning."""
    from productsearch.deploy import read_config, to_json

    started = time.monotonic()
    with grpcclient.InferenceServerClient(server.grpc_url) as client:
        for model in models:
            config = read_config(server.repository, model)
            config.version_policy.specific.versions[:] = [server.generation]
            if mutate is not None:
                mutate(model, config)
            client.load_model(model, config=to_json(config), headers=server.admin_headers, client_timeout=timeout_s)
            if not client.is_model_ready(model, str(server.generation)):
                raise RuntimeError(f"{model} is not READY after reloading")
        if not client.is_model_ready("search"):
            raise RuntimeError("search is not READY after reloading its models")
    return time.monotonic() - started


def stub_processes(server, model: str) -> list[tuple[int, int]]:
    """(pid, VmRSS kB) of the python stub processes of `model` under this server."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
            ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if ppid != server.pid or not cmdline[0].endswith(b"triton_python_backend_stub"):
                continue
            if f"/{model}/".encode() not in cmdline[1]:
                continue
            for line in (proc / "status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    found.append((int(proc.name), int(line.split()[1])))
        except (OSError, IndexError, ValueError):
            continue
    return found


def stub_rss_mb(server, model: str, instances: int = 1, wait_s: float = 60) -> float:
    """Resident memory of `model`'s stubs, once the stubs of a replaced instance have exited."""
    deadline = time.monotonic() + wait_s
    found = stub_processes(server, model)
    while len(found) > instances and time.monotonic() < deadline:
        time.sleep(0.5)
        found = stub_processes(server, model)
    found = sorted(found)[-instances:]  # newest pids, should old ones linger
    return sum(rss for _, rss in found) / 1024


# ------------------------------------------------------------------ sections

@dataclass
class Settings:
    requests: int = 100  # per concurrency-1 cell; c cells get requests * c / 4 (at least requests)
    cell_seconds: float = 15.0
    concurrency: tuple[int, ...] = CONCURRENCY
    scales: tuple[int, ...] = SCALES
    compare_requests: int = 600
    compare_seconds: float = 20.0
    locust_seconds: int = 20


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
    """Served text search at concurrency 16 vs the same models in this process at the batch size
    the server formed: with the served encoder's torch threads (only the server differs) and with
    every core (the most a direct PyTorch caller gets here)."""
    import torch

    from loadtest.inprocess import TextSearchPipeline, config_parameters

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
        torch.set_num_threads(threads)
        runs.append((threads, size, pipeline.throughput(texts, size, seconds=settings.compare_seconds / share)))
    served_again = await run_load(server.grpc_url, workload, "text", 16, settings.compare_requests,
                                  max_seconds=settings.compare_seconds)
    served_mean = float(np.mean([served.throughput, served_again.throughput]))
    same = served_mean / runs[0][2]["throughput"]
    machine = served_mean / runs[1][2]["throughput"]
    log(f"served mean {served_mean:.1f} req/s; in-process batch {batch}: {runs[0][2]['throughput']:.1f} q/s with "
        f"{served_threads} thread(s), {runs[1][2]['throughput']:.1f} with {cores}; ratios {same:.2f}, {machine:.2f}")
    lines = ["| path | batch size | torch threads (encoder) | queries | throughput queries/s | notes |",
             "|---|---:|---:|---:|---:|---|",
             f"| served, concurrency 16 | {served_batch:.1f} (mean formed) | {served_threads} | {served.requests} | "
             f"{served.throughput:.1f} | batches formed: {batch_text(served)} |"]
    for threads, size, result in runs:
        lines.append(f"| in-process | {size} | {threads} | {result['queries']} | {result['throughput']:.1f} | "
                     f"{result['batch_ms']:.1f} ms per batch |")
    lines += [f"| served again, concurrency 16 | {served_again.batch.get('text_encoder', float('nan')):.1f} | {served_threads} | "
              f"{served_again.requests} | {served_again.throughput:.1f} | |", "",
              f"**Served / in-process text search throughput at concurrency 16: {same:.2f}** against the same models "
              f"with the served encoder's settings ({served_threads} torch thread) at the batch size the server formed "
              f"({batch}) -- what serving costs; **{machine:.2f}** against in-process on all {cores} cores at that batch "
              f"size (target >= 0.70; served = mean of the two served runs; vs in-process on {cores} cores at batch 16: "
              f"{served_mean / runs[2][2]['throughput']:.2f}). In-process = the same text tower, fusion and ScorerModel "
              "(same catalog, same parameters) called in one Python process, batch after batch, no gRPC, no server."]
    return "\n".join(lines), {"ratio": same, "ratio_all_cores": machine}


async def scale_section(server, workload: Workload, settings: Settings, log=print, sigma: float = 1.0) -> tuple[str, dict]:
    from loadtest.synthetic import exact_top_k, recall_at_k, synthetic_catalog
    from productsearch.catalog_store import EXACT_MAX_PRODUCTS, IndexSpec, build_index, index_path, load_index, open_catalog

    from loadtest.inprocess import config_parameters

    parameters = config_parameters(server.repository, "scorer")["parameters"]
    threshold = int(parameters.get("exact_max_products", {}).get("string_value", EXACT_MAX_PRODUCTS))
    nprobe = int(parameters.get("nprobe", {}).get("string_value", 0)) or None
    version_dir = Path(server.repository) / "scorer" / str(server.generation)
    base = open_catalog(version_dir)
    queries = await recall_queries(server.grpc_url, workload)
    rows, figures, sweep = [], {}, []
    cache = WORK_DIR / "catalogs"
    try:
        for count in settings.scales:
            started = time.monotonic()
            catalog_dir = synthetic_catalog(cache, base, count, sigma=sigma, log=log)
            view = open_catalog(catalog_dir, verify=False)
            made = time.monotonic() - started
            build_s = None
            if count >= threshold:  # the index the scorer would otherwise build at load
                index_file = index_path(view.root, IndexSpec(), count)
                if load_index(view.root, count, verify=False) is None:
                    build_index(view.root, view.embeddings, IndexSpec(), threads=os.cpu_count(), log=log)
                build_s = json.loads(index_file.with_suffix(".json").read_text())["build_seconds"]
            point_catalog(version_dir, view.root)
            load_s = reload_models(server, ("scorer",))
            rss = stub_rss_mb(server, "scorer")
            c1 = await run_load(server.grpc_url, workload, "text", 1, settings.requests, max_seconds=settings.cell_seconds)
            c16 = await run_load(server.grpc_url, workload, "text", 16, cell_requests(settings, 16), max_seconds=settings.cell_seconds)
            recalls, exact = {}, {}
            for kind, (inputs, fused) in queries.items():
                found = await served_top_ids(server.grpc_url, inputs, 10)
                exact[kind] = exact_top_k(view.embeddings, fused, 10)
                recalls[kind] = recall_at_k(found, [[view.ids[int(i)] for i in row] for row in exact[kind]])
            recall = min(recalls.values())
            raw_mb = count * view.embeddings.shape[1] * 4 / 2**20
            method = f"ivf, nprobe {nprobe or 'default'}" if count >= threshold else "exact fp32"
            row = (f"| {count:,} | {method} | {rss:.0f} | {raw_mb:.0f} | {rss / raw_mb:.2f} | {c1.percentile(50):.1f} | "
                   f"{c1.percentile(99):.1f} | {c16.percentile(50):.1f} | {c16.percentile(99):.1f} | {c16.throughput:.1f} | "
                   f"{recalls['text']:.3f} / {recalls['image']:.3f} | {load_s:.0f} | {'-' if build_s is None else f'{build_s:.0f}'} | {c1.errors + c16.errors} |")
            log(row + f"  (catalog ready in {made:.0f} s)")
            rows.append(row)
            figures[count] = {"rss_ratio": rss / raw_mb, "p50_c1": c1.percentile(50), "recall": recall}
            if build_s is not None and count == max(settings.scales):
                sweep = nprobe_sweep(view, count, queries, exact, nprobe)
            del view
    finally:
        restore_catalog(server.repository, server.generation)
        reload_models(server, ("scorer",))
    lines = ["| products | scorer search | scorer RSS MB | raw fp32 MB | RSS / raw | p50 ms c=1 | p99 ms c=1 | p50 ms c=16 | "
             "p99 ms c=16 | throughput c=16 req/s | recall@10 vs exact, text / image queries | scorer load s | index build s | errors |",
             "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|", *rows, "",
             f"Text search end to end (encoder + fusion + scorer). Catalogs: synthetic, each product a mix of two of the demo catalog's "
             f"{len(base)} fused embeddings plus noise (loadtest/synthetic.py, sigma {sigma:g}), {base.embeddings.shape[1]}-d. Recall@10: "
             f"{len(queries['text'][0])} text and {len(queries['image'][0])} image queries, the served top-10 ids vs "
             "exact fp32 top-10 over the same matrix (query embeddings from the served encoders, fused as the server "
             "does). RSS: VmRSS of the scorer's "
             f"python stub after load. Search: exact below {threshold:,} products, IVF-SQfp16 (faiss) from there, "
             "index built once and persisted beside the catalog (its build time is listed; scorer load includes checksums)."]
    if sweep:
        lines += ["", f"The scorer's top-k method at {max(settings.scales):,} products, the persisted index searched in this "
                  "process, one query at a time, one thread (the scorer's setting), same queries and exact answers:", "",
                  "| nprobe (of nlist) | recall@10 vs exact, text / image | ms per query |", "|---|---:|---:|", *sweep]
    return "\n".join(lines), figures


def nprobe_sweep(view, count: int, queries: dict, exact: dict, served_nprobe: int | None,
                 probes=(1, 4, 8, 16, 32, 64)) -> list[str]:
    """Recall and time per query of the persisted IVF index against nprobe (in this process)."""
    import faiss

    from productsearch.backends.scorer import DEFAULT_NPROBE
    from productsearch.catalog_store import load_index

    served_nprobe = served_nprobe or DEFAULT_NPROBE
    index = load_index(view.root, count, verify=False)
    faiss.omp_set_num_threads(1)
    rows = []
    for nprobe in probes:
        index.nprobe = nprobe
        recalls, seconds, total = [], 0.0, 0
        for kind, (_, fused) in queries.items():
            started = time.perf_counter()
            found = np.concatenate([index.search(fused[i:i + 1], 10)[1] for i in range(len(fused))])
            seconds += time.perf_counter() - started
            total += len(fused)
            recalls.append(np.mean([len(set(f) & set(e)) / 10 for f, e in zip(found.tolist(), exact[kind].tolist())]))
        mark = " (served)" if nprobe == served_nprobe else ""
        rows.append(f"| {nprobe} of {index.nlist}{mark} | {' / '.join(f'{r:.3f}' for r in recalls)} | {seconds / total * 1000:.2f} |")
    faiss.omp_set_num_threads(os.cpu_count() or 1)
    return rows


def locust_section(url: str, seconds: int = 20, users: int = 8, log=print) -> str:
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
            cwd=ROOT, capture_output=True, text=True, timeout=seconds + 120)
        wall = time.monotonic() - started
        with open(f"{tmp}/run_stats.csv") as handle:
            rows = list(csv.DictReader(handle))
    lines = ["| request | count | failures | median ms | p95 ms | p99 ms | req/s |", "|---|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        lines.append(f"| {row['Name'] or row['Type']} | {row['Request Count']} | {row['Failure Count']} | {row['50%']} | "
                     f"{row['95%']} | {row['99%']} | {float(row['Requests/s']):.1f} |")
    lines += ["", f"`locust -f loadtest/locustfile.py --headless -u {users} -r {users} -t {seconds}s` (as many "
              f"users as the smoke test; `make loadtest` runs 16 users for 60 s): exit code {run.returncode}, "
              f"{wall:.0f} s from start to exit. Users wait 50-200 ms between calls; tasks weighted "
              "text 10 : image 3 : text+image 2 : filtered 2 : recommend 2 : encode_product 1."]
    return "\n".join(lines)


def set_parameter(config, key: str, value: str) -> None:
    config.parameters[key].string_value = value


def set_instances(config, count: int) -> None:
    del config.instance_group[:]
    group = config.instance_group.add()
    group.kind = group.KIND_CPU
    group.count = count


def encoder_variant(threads: int, instances: int, delay_us: int | None = None, preferred: list[int] | None = None):
    """A mutate() for reload_models: both encoders with these threads/instances/queue settings."""
    def mutate(model, config):
        if model in ("text_encoder", "image_encoder"):
            set_parameter(config, "torch_threads", str(threads))
            set_instances(config, instances)
            if delay_us is not None:
                config.dynamic_batching.max_queue_delay_microseconds = delay_us
            if preferred is not None:
                config.dynamic_batching.preferred_batch_size[:] = preferred
    return mutate


TUNING_VARIANTS = {
    "shipped": None,
    "encoders 2 threads x 1 instance": encoder_variant(2, 1),
    "encoders 1 thread x 2 instances": encoder_variant(1, 2),
    "encoders 2 threads x 2 instances": encoder_variant(2, 2),
    "encoders 1 thread, queue delay 0.5 ms": encoder_variant(1, 1, delay_us=500),
    "encoders 1 thread, queue delay 5 ms": encoder_variant(1, 1, delay_us=5000),
    "encoders 1 thread, preferred batch 4, 8": encoder_variant(1, 1, preferred=[4, 8]),
}


async def tuning_section(server, workload: Workload, settings: Settings, log=print, variants=None) -> str:
    """Encoder threads / instances / queue settings, each reloaded through the repository API:
    text c=1, text c=16, text+image c=16 (not part of the default run)."""
    names = variants or list(TUNING_VARIANTS)
    lines = ["| encoders | text p50 ms c=1 | text p50 ms c=16 | text req/s c=16 | text+image p50 ms c=16 | "
             "text+image req/s c=16 | image req/s c=16 | mean text batch | errors |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name in names + ["shipped"]:  # shipped again at the end: drift check, and leaves the server as shipped
        seconds = reload_models(server, PYTHON_MODELS, TUNING_VARIANTS[name])
        c1 = await run_load(server.grpc_url, workload, "text", 1, settings.requests, max_seconds=settings.cell_seconds)
        c16 = await run_load(server.grpc_url, workload, "text", 16, settings.compare_requests, max_seconds=settings.compare_seconds)
        both = await run_load(server.grpc_url, workload, "text+image", 16, settings.compare_requests // 2,
                              max_seconds=settings.compare_seconds)
        image = await run_load(server.grpc_url, workload, "image", 16, settings.compare_requests // 2,
                               max_seconds=settings.compare_seconds)
        row = (f"| {name} | {c1.percentile(50):.1f} | {c16.percentile(50):.1f} | {c16.throughput:.1f} | {both.percentile(50):.1f} | "
               f"{both.throughput:.1f} | {image.throughput:.1f} | {c16.batch.get('text_encoder', float('nan')):.1f} | "
               f"{c1.errors + c16.errors + both.errors + image.errors} |")
        log(row + f"  (reload {seconds:.0f} s)")
        lines.append(row)
    return "\n".join(lines)


async def query_embeddings(url: str, model: str, values: list[bytes]) -> np.ndarray:
    """Embeddings from a served encoder (what the search ensemble fuses)."""
    client = aioclient.InferenceServerClient(url)
    name = "TEXT" if model == "text_encoder" else "IMAGE"
    try:
        out = []
        for start in range(0, len(values), 16):
            chunk = values[start:start + 16]
            tensor = aioclient.InferInput(name, [len(chunk), 1], "BYTES")
            tensor.set_data_from_numpy(np.array([[v] for v in chunk], dtype=object))
            result = await client.infer(model, [tensor], client_timeout=60)
            out.append(result.as_numpy("EMBEDDING"))
        return np.concatenate(out).astype(np.float32)
    finally:
        await client.close()


async def recall_queries(url: str, workload: Workload, texts: int = 200, images: int = 100) -> dict[str, tuple]:
    """kind -> (search inputs per query, fused query embeddings as the server computes them)."""
    from productsearch.fusion import fuse

    text_values = sorted(workload.texts)[:texts]
    image_values = workload.images[:images]
    text = await query_embeddings(url, "text_encoder", [t.encode() for t in text_values])
    image = await query_embeddings(url, "image_encoder", image_values)
    yes, no = np.ones(len(text), bool), np.zeros(len(text), bool)
    yes_i, no_i = np.ones(len(image), bool), np.zeros(len(image), bool)
    return {
        "text": ([(t, b"") for t in text_values], fuse(text, np.zeros_like(text), yes, no)),
        "image": ([("", i) for i in image_values], fuse(np.zeros_like(image), image, no_i, yes_i)),
    }


async def served_top_ids(url: str, queries: list[tuple[str, bytes]], top_k: int) -> list[list[bytes]]:
    client = aioclient.InferenceServerClient(url)
    try:
        found = []
        for text, image in queries:
            result = await client.infer("search", search_inputs(text, image, top_k), client_timeout=60)
            found.append([bytes(x) for x in result.as_numpy("PRODUCT_IDS").reshape(-1)])
        return found
    finally:
        await client.close()


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
                results[section] = locust_section(url, seconds=settings.locust_seconds, log=log)
            elif section == "tuning":
                variants = args.variants.split(";") if args.variants else None
                results[section] = asyncio.run(tuning_section(server, workload, settings, log, variants))
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
