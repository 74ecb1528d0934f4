"""Swap model generations in a running Triton without failing or mixing a request.

Over gRPC's model-repository API (needs the admin header):
1. check generation N on disk (manifest, checksums) - refuse before anything is touched;
2. load N beside the serving generation M (each generation-numbered model with a config whose
   version policy names [M, N], every version checked READY), and encode the catalog for N from
   the catalog store while writes go on (control/rebuild.py);
3. fence the writes to N, encode what was written meanwhile, then reload the ensembles
   `search`, `upsert_products`, `recommend` and `encode_product` with configs that pin every
   step to N (writes wait, retried by the clients, from the fence until `upsert_products`).
   Only now do new requests go to N; requests in flight finish on M's versions;
4. unload M (version policy [N]) and record N as serving (M as previous, for rollback).
Triton unloads a serving ensemble whose reload fails (e.g. it pins a version that is not
loaded), so step 3 only runs once step 2 has proven every pinned version READY. Replicas on one
catalog store (Milvus) swap together: each step on all of them before the next.
CLI (productsearch/control/deploy/__main__.py):
    python -m productsearch.control.deploy [--url a:8001,b:8001] list | swap N | rollback | restore | prune --keep 2
Any failure leaves the old generation serving and says why (exit code 1).
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

from tritonclient.utils import InferenceServerException

from clients.connection import TlsOptions, grpc_client
from productsearch.control.admin import GRPC_ADMIN_HEADER
from productsearch.control.model_configs import pinned_ensemble_config, versions_config
from productsearch.control.generations import GenerationError, read_serving, verify_generation, write_serving
from productsearch.catalog.store import (CATALOG_ENV, catalog_url, list_shops, open_store,
                                         set_write_generation)
from productsearch.catalog.rows import DEFAULT_SHOP
from productsearch.control.rebuild import Rebuilder, prepare_generation, register_generation_weight
from productsearch.control.repository import GENERATION_MODELS, QUERY_MODELS, built_generations, compile_entry_points

SERVING_MODELS = ("scorer", "catalog_writer")  # the generation-numbered models that read/write the catalog
# Pinned in this order: `search` first (a write N acknowledges must be found by the searches that
# follow it), then `upsert_products` (writes wait from the fence until here), then the rest.
ENSEMBLES = ("search", "upsert_products", "recommend", "encode_product")
CATALOG_MODELS = ("update_fields", "delete_products", "catalog_admin", "record_events", "suggest")  # not per generation
# Products the encoding beside live writes may leave for the pass after the write fence, which
# writes wait for (clients retry them): small, so that wait stays short.
FENCED_TAIL = 64


class DeployError(RuntimeError):
    """A deploy step failed; the serving generation is untouched unless the message says otherwise."""


class Deployer:
    """Generation control for one server; `log` receives one line per completed step."""

    def __init__(self, url: str, repository: Path, headers: dict[str, str], log=print, timeout_s: float = 300,
                 tls: TlsOptions | None = None, catalog: str | None = None):
        self.url, self.tls = url, tls
        self.repository = Path(repository)
        # the server's catalog store: PRODUCTSEARCH_CATALOG as the server has it, else beside the repository
        self.catalog = catalog or catalog_url(self.repository)
        self.headers = headers
        self.log = log
        self.timeout_s = timeout_s
        self.client = grpc_client(url, tls)

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> "Deployer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ state

    def serving_generation(self) -> int | None:
        """The generation `search` is pinned to in the server; None while `search` is not loaded."""
        try:
            if not self.client.is_model_ready("search"):
                return None
            config = self.client.get_model_config("search", as_json=True)["config"]
        except InferenceServerException:
            return None
        versions = {int(step.get("model_version", -1)) for step in config["ensemble_scheduling"]["step"]
                    if step["model_name"] in GENERATION_MODELS}
        return versions.pop() if len(versions) == 1 and versions != {-1} else None

    def server_live(self) -> bool:
        try:
            return self.client.is_server_live()
        except InferenceServerException:
            return False

    def loaded_versions(self, model: str) -> list[int]:
        index = self.client.get_model_repository_index(headers=self.headers, as_json=True).get("models", [])
        return sorted(int(m["version"]) for m in index if m["name"] == model and m.get("state") == "READY" and m.get("version"))

    # ------------------------------------------------------------------ steps

    def _load(self, model: str, config: str | None = None) -> None:
        try:
            self.client.load_model(model, config=config, headers=self.headers,
                                   client_timeout=self.timeout_s)
        except InferenceServerException as err:
            raise DeployError(f"loading {model} failed: {err.message()}") from None

    def _require_ready(self, model: str, versions: list[int]) -> None:
        for version in versions:
            if not self.client.is_model_ready(model, str(version)):
                raise DeployError(f"{model} version {version} is not READY")

    def load_generation_models(self, versions: list[int], models=GENERATION_MODELS) -> None:
        """Each generation-numbered model loaded with exactly `versions`, all READY. The models
        load concurrently (Triton loads them in parallel); any failure raises after all finish."""
        from concurrent.futures import ThreadPoolExecutor

        def load_one(model: str) -> None:
            started = time.monotonic()
            self._load(model, versions_config(self.repository, model, versions))
            self._require_ready(model, versions)
            self.log(f"  {model}: versions {versions} READY ({time.monotonic() - started:.1f} s)")

        with ThreadPoolExecutor(len(models)) as pool:
            futures = [pool.submit(load_one, model) for model in models]
        errors = [str(f.exception()) for f in futures if f.exception() is not None]
        if errors:
            raise DeployError("; ".join(errors))

    def pin_ensembles(self, generation: int, ensembles=ENSEMBLES) -> None:
        for ensemble in ensembles:
            self._load(ensemble, pinned_ensemble_config(self.repository, ensemble, generation))
            if not self.client.is_model_ready(ensemble):
                raise DeployError(f"{ensemble} is not READY after pinning generation {generation}")
            self.log(f"  {ensemble}: pinned to generation {generation}")

    # ------------------------------------------------------------------ operations

    def gate(self, generation: int, serving: int | None, force: bool = False) -> None:
        """The quality gate (deploy/quality_gate.py): DeployError naming the figures that drop."""
        from productsearch.control.deploy.quality_gate import QualityGateRefused, check

        try:
            self.log(check(self.repository, generation, serving, force=force))
        except GenerationError as err:
            raise DeployError(f"refused: {err}") from None
        except QualityGateRefused as err:
            raise DeployError(str(err)) from None

    def stores(self) -> list:
        """Every shop's catalog in the store (the default shop made if there is none yet)."""
        names = list_shops(self.catalog) or [DEFAULT_SHOP]
        return [open_store(self.catalog, name) for name in names]

    def encode_catalog(self, generation: int, leave: int = 0) -> int:
        """Re-encode, through generation N's loaded encoders, every product lacking N's vectors
        (all but `leave` or fewer, while writes still go to the serving generation)."""
        encoders = verify_generation(self.repository, generation).get("encoders", {})
        rebuilder = Rebuilder(self.url, self.tls, log=self.log)
        register_generation_weight(self.catalog, self.repository, generation)
        done = 0
        for store in self.stores():
            prepare_generation(store, generation, encoders, log=self.log)
            done += rebuilder.fill(store, generation, leave)
            store.close()
        return done

    def check_fence(self, generation: int) -> None:
        """The server's writers see the fence this tool set, or this tool fenced (and encoded)
        another store than the server's: refuse before any request goes to N."""
        if not self.client.is_model_ready("catalog_admin"):
            return  # a first start: the catalog models load after the generation
        from clients.catalog import CatalogClient

        with CatalogClient(self.url, timeout_s=60, tls=self.tls, key=self.headers.get(GRPC_ADMIN_HEADER)) as client:
            seen = client.info().get("write_generation")
        if seen != generation:
            raise DeployError(f"the server's catalog store has its writes at generation {seen}, not {generation}: this "
                              f"tool's store ({self.catalog.split('?')[0]}) is not the server's; set {CATALOG_ENV} as the server has it")

    def ensure_catalog_models(self) -> None:
        for model in CATALOG_MODELS:
            if not self.client.is_model_ready(model):
                self._load(model)
                self.log(f"  {model}: READY")

    def record_swap(self, stage: str, generation: int) -> None:
        """Tell the server a swap stage (`productsearch_swaps_total`, the audit trail); best effort:
        a server without catalog models yet (a first start) or an older one counts nothing."""
        from clients.catalog import CatalogClient, ServiceError

        try:
            if not self.client.is_model_ready("catalog_admin"):
                return
            with CatalogClient(self.url, timeout_s=30, tls=self.tls, key=self.headers.get(GRPC_ADMIN_HEADER)) as client:
                client.admin("record_swap", {"stage": stage, "generation": generation})
        except (InferenceServerException, ServiceError) as err:
            self.log(f"  (swap {stage} not recorded on {self.url}: {err})")

    def swap(self, generation: int, peers: tuple["Deployer", ...] = (), force: bool = False) -> float:
        """Serve generation N (see _swap), each replica told the swap started and finished or failed.
        Refused before anything is touched when N's held-out evaluation is worse than the serving
        generation's (deploy/quality_gate.py), unless `force`."""
        replicas = (self, *peers)
        serving = self.serving_generation()
        if serving == generation:
            self.log(f"generation {generation} is already serving")
            return 0.0
        self.gate(generation, serving, force)
        for replica in replicas:
            replica.record_swap("started", generation)
        try:
            switched = self._swap(generation, peers)
        except BaseException:
            for replica in replicas:
                replica.record_swap("failed", generation)
            raise
        for replica in replicas:
            replica.record_swap("finished", generation)
        return switched

    def _swap(self, generation: int, peers: tuple["Deployer", ...] = ()) -> float:
        """Serve generation N; returns seconds from start until new requests go to N.

        1. N's encoders beside the serving M's; every product encoded for N (writes go on to M);
        2. N's scorer and writer beside M's; 3. the write fence moves to N (M's writers refuse
        with UNAVAILABLE, clients retry); 4. the last writes encoded for N; 5. the ensembles
        pinned to N (new requests go to N, in-flight ones finish on M); 6. M unloaded.
        Every write acknowledged before step 3 is in N by step 4; after it only N's writer writes.
        `peers`: the other replicas on the same catalog store, each step done on every replica
        before the next (the catalog encoded once, through this one); `search` is pinned to N on
        all of them before any `upsert_products`, so a write N acknowledges is found through each."""
        started = time.monotonic()
        replicas = (self, *peers)
        try:
            verify_generation(self.repository, generation)
        except GenerationError as err:
            raise DeployError(f"refused: {err}") from None
        for replica in replicas:  # before N loads: no __pycache__ appears under Triton's eyes mid-swap
            compile_entry_points(replica.repository)
        current = self.serving_generation()
        others = {d.url: d.serving_generation() for d in peers}
        if any(g != current for g in others.values()):
            raise DeployError(f"refused: the replicas serve different generations ({self.url}: {current}, {others})")
        self.log(f"swap: generation {current} -> {generation}" + (f" on {len(replicas)} replicas" if peers else ""))
        both = sorted({v for v in (current, generation) if v is not None})

        def back_to_current() -> None:  # drop the half-loaded N, keep M as it was
            if current is not None:
                for replica in replicas:
                    replica.load_generation_models([current])

        try:
            for replica in replicas:
                replica.load_generation_models(both, models=QUERY_MODELS)
            self.log(f"  {self.encode_catalog(generation, leave=FENCED_TAIL)} products encoded for generation {generation}")
            for replica in replicas:
                replica.load_generation_models(both, models=SERVING_MODELS)
        except (DeployError, InferenceServerException) as err:
            back_to_current()
            raise DeployError(f"generation {generation} not served: {err}") from None
        set_write_generation(self.catalog, generation)
        try:
            for replica in replicas:
                replica.check_fence(generation)
        except DeployError:
            if current is not None:
                set_write_generation(self.catalog, current)
            back_to_current()
            raise
        self.log(f"  writes fenced to generation {generation}; {self.encode_catalog(generation)} written meanwhile encoded")
        for ensembles in (ENSEMBLES[:1], ENSEMBLES[1:2], ENSEMBLES[2:]):
            for replica in replicas:
                replica.pin_ensembles(generation, ensembles)
        switched = time.monotonic() - started
        for replica in replicas:
            replica.load_generation_models([generation])
            replica.ensure_catalog_models()
        for repository in dict.fromkeys(replica.repository.resolve() for replica in replicas):
            write_serving(repository, generation, current)
        self.log(f"generation {generation} serving (switched after {switched:.1f} s, "
                 f"done after {time.monotonic() - started:.1f} s)")
        return switched

    def rollback(self, peers: tuple["Deployer", ...] = ()) -> float:
        state = read_serving(self.repository)
        previous = state.get("previous")
        if previous is None:
            raise DeployError("no previous generation recorded to roll back to")
        self.log(f"rollback to generation {previous}")
        return self.swap(previous, peers, force=True)  # back to what served before: not gated

    def restore(self) -> int | None:
        """After a (re)start: bring back the recorded serving generation (else the newest built),
        its catalog re-encoded where it lacks vectors (a first start, rebuilt encoders)."""
        compile_entry_points(self.repository)
        recorded = read_serving(self.repository).get("generation")
        candidates = [recorded] if recorded is not None else []
        candidates += sorted(built_generations(self.repository), reverse=True)
        for generation in candidates:
            try:
                verify_generation(self.repository, generation)
            except GenerationError as err:
                self.log(f"not restoring generation {generation}: {err}")
                continue
            self.load_generation_models([generation], models=QUERY_MODELS)
            self.encode_catalog(generation)
            set_write_generation(self.catalog, generation)
            self.check_fence(generation)
            self.load_generation_models([generation], models=SERVING_MODELS)
            self.pin_ensembles(generation)
            self.ensure_catalog_models()
            if recorded != generation:
                write_serving(self.repository, generation, read_serving(self.repository).get("generation"))
            return generation
        return None

