"""The benchmarks' private tritonserver: a linked copy of the latest generation in run/bench/
(kept between runs while its encoders match the source's, so its catalog store, with the demo
catalog loaded, is reused), started on free ports, and reloaded with config variants through the
model-repository API; and a throwaway server over a temporary linked repository (`temporary_server`).
"""
from __future__ import annotations

import shutil
import time
from contextlib import contextmanager
from pathlib import Path

import tritonclient.grpc as grpcclient

from clients.index import load_products, read_products
from productsearch.catalog.store import catalog_url, open_store
from productsearch.control.admin import BENCH_RESTRICTED_PROTOCOLS
from productsearch.control.deploy.swap import Deployer
from productsearch.control.device_configs import write_device_configs
from productsearch.control.model_configs import versions_config
from productsearch.control.generations import GenerationError, read_manifest
from productsearch.control.paths import DEFAULT_MODEL_REPOSITORY, DEMO_CATALOG
from productsearch.control.processes import free_ports, stub_processes
from productsearch.control.repository import latest_generation, link_repository, refresh_configs
from productsearch.control.server import TritonServer


def generation_manifest(repository: Path, generation: int) -> dict:
    """Generation N's manifest, {} when it has none."""
    try:
        return read_manifest(repository, generation)
    except GenerationError:
        return {}


def prepare_repository(work: Path, log=print, device: str = "cpu") -> tuple[Path, int]:
    """run/bench/model_repository: a private copy of the latest generation, kept between runs
    while its encoders match the source's (so its indexed catalog is reused); configs and
    model.py files are refreshed from the source every run, with `device`'s configs (gpu:
    build_models --device gpu's)."""
    source = DEFAULT_MODEL_REPOSITORY
    generation = latest_generation(source)
    repository = Path(work) / "model_repository"
    mine = generation_manifest(repository, generation).get("encoders")

    def models(root: Path) -> set[str]:
        return {p.parent.name for p in root.glob("*/config.pbtxt")}

    if repository.exists() and (mine is None or mine != generation_manifest(source, generation).get("encoders")
                                or models(repository) != models(source)):  # a model added or removed
        shutil.rmtree(repository)
    if not repository.exists():
        link_repository(source, repository, generations=[generation])
        log(f"private model repository {repository} (generation {generation})")
    else:
        refresh_configs(source, repository)
    write_device_configs(repository, device)
    return repository, generation


def load_demo_catalog(url: str, key: str, repository: Path, log=print) -> int:
    """Upsert the demo catalog through the server at `url` unless the store beside `repository`
    already holds it; the last sequence."""
    products = read_products(DEMO_CATALOG)
    store = open_store(catalog_url(repository))
    have, head = store.count(), store.head()
    store.close()
    if have >= len(products):
        return head
    log(f"loading the demo catalog through upsert_products ({len(products)} products, first run only)")
    report = load_products(url, products, key=key, progress=False)
    if report.failed:
        raise RuntimeError(report.summary())
    return report.sequence


def start_private_server(work: Path, log=print, device: str = "cpu") -> TritonServer:
    """A Triton on free ports over run/bench/model_repository serving its generation (the demo
    catalog loaded through the server the first time)."""
    repository, generation = prepare_repository(work, log, device)
    http, grpc, metrics = free_ports(3)
    (Path(work) / "triton.log").unlink(missing_ok=True)
    server = TritonServer(model_repository=repository, http_port=http, grpc_port=grpc, metrics_port=metrics,
                          log_file=Path(work) / "triton.log",
                          restricted_protocols=BENCH_RESTRICTED_PROTOCOLS).start()  # perf_analyzer reads statistics
    try:
        restore(server, repository)
        load_demo_catalog(server.grpc_url, server.key, repository, log)
    except BaseException:
        server.stop()
        raise
    server.repository, server.generation = repository, generation
    return server


@contextmanager
def temporary_server(tmp: Path, generations=(1,), prepare=None, catalog_url: str | None = None, name: str = "triton",
                     repository: Path | None = None):
    """A tritonserver over a fresh link of the model repository's `generations` in `tmp` (or over
    `repository`), with its own empty catalog store (or the one at `catalog_url`), `prepare(repository)`
    run before it starts, serving after a restore; stopped on exit. `server.repository` is the
    linked repository."""
    repository = repository or link_repository(DEFAULT_MODEL_REPOSITORY, Path(tmp) / "model_repository",
                                               generations=list(generations))
    if prepare is not None:
        prepare(repository)
    http, grpc, metrics = free_ports(3)
    server = TritonServer(model_repository=repository, http_port=http, grpc_port=grpc, metrics_port=metrics,
                          log_file=Path(tmp) / f"{name}.log", catalog_url=catalog_url,
                          restricted_protocols=BENCH_RESTRICTED_PROTOCOLS).start()
    try:
        restore(server, repository)
        server.repository = repository
        yield server
    finally:
        server.stop()


def deployer_for(server: TritonServer, repository: Path | None = None, log=lambda *a: None) -> Deployer:
    """The deploy tools for this server: its address, key, TLS and catalog store."""
    return Deployer(server.grpc_url, repository or server.model_repository, server.admin_headers, log=log,
                    tls=server.client_tls, catalog=server.catalog_url)


def restore(server: TritonServer, repository: Path) -> int | None:
    """The server's generation brought back (the catalog re-encoded where it lacks vectors)."""
    with deployer_for(server, repository) as deployer:
        return deployer.restore()


def reload_models(server, models, mutate=None, timeout_s: float = 1200) -> float:
    """Reload `models` (pinned to the served generation) with their on-disk config, changed by
    `mutate(model, config)`; returns seconds. The ensembles keep their pinning."""
    started = time.monotonic()
    with grpcclient.InferenceServerClient(server.grpc_url) as client:
        for model in models:
            config = versions_config(server.repository, model, [server.generation], mutate)
            client.load_model(model, config=config, headers=server.admin_headers, client_timeout=timeout_s)
            if not client.is_model_ready(model, str(server.generation)):
                raise RuntimeError(f"{model} is not READY after reloading")
        if not client.is_model_ready("search"):
            raise RuntimeError("search is not READY after reloading its models")
    return time.monotonic() - started


def stub_rss_mb(server, model: str, instances: int = 1, wait_s: float = 60) -> float:
    """Resident memory of `model`'s stubs, once the stubs of a replaced instance have exited."""
    def found() -> list:
        return sorted((s for s in stub_processes(server.pid).values() if s.model == model), key=lambda s: s.pid)

    deadline = time.monotonic() + wait_s
    stubs = found()
    while len(stubs) > instances and time.monotonic() < deadline:
        time.sleep(0.5)
        stubs = found()
    newest = stubs[-instances:]  # newest pids, should old ones linger
    return sum(s.rss_kb() for s in newest) / 1024
