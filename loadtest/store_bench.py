"""The embedded store against Milvus, and Triton replicas on one Milvus.

    python -m loadtest.bench --sections stores,replicas --write     # both sections (~15 minutes on 2 cores)
    python -m loadtest.bench --sections stores --products 20000

`stores`: one synthetic catalog (clustered 512-d text and image vectors fused to 1024-d, 10
categories, prices) in the embedded SQLite store and in Milvus (a `milvus-lite server`, FLAT
index: the same pymilvus code as Milvus standalone; milvus-lite's engine is pure Python, so its
latencies are an upper bound). Each store is searched through the real scorer (ScorerModel, in
this process: the store's part of a search, no encoders): p50/p99 at c=1 and c=16 threads, with
no filter, a category (10%) and a category + price range (~3%), recall@10 against numpy brute
force, upserts/s through the writer's path (16 per batch, as the bulk loader sends them) and
memory (the scorer's RSS for the embedded store, the Milvus server's RSS for Milvus).
`replicas`: two tritonservers on one milvus-lite server with the first demo products: search
throughput at c=32 through one replica and through both (SearchClient round-robin), and
searches failed while replica A is killed mid-load (retries on). Every figure: --runs runs,
median (min-max).
"""
from __future__ import annotations

import argparse
import os
import signal
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil

from loadtest.report import publish

CATEGORIES = [f"cat{i}" for i in range(10)]
HALF_DIM = 512
K = 10


def spread(values: list[float], digits: int = 1) -> str:
    return f"{np.median(values):.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def rss_mb(pid: int | None = None) -> float:
    return psutil.Process(pid or os.getpid()).memory_info().rss / 2**20


# ------------------------------------------------------------------ stores

def synthetic(count: int, seed: int = 0):
    from productsearch.core.vectors import fuse, normalize

    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((200, HALF_DIM))
    text = normalize(centers[rng.integers(0, 200, count)] + 0.3 * rng.standard_normal((count, HALF_DIM)))
    image = normalize(centers[rng.integers(0, 200, count)] + 0.3 * rng.standard_normal((count, HALF_DIM)))
    fields = [{"category": CATEGORIES[int(c)], "price": round(float(p), 2)}
              for c, p in zip(rng.integers(0, len(CATEGORIES), count), rng.uniform(5, 200, count))]
    ones = np.ones(count, bool)
    return text.astype(np.float32), image.astype(np.float32), fields, fuse(text, image, ones, ones, 0.5)


FILTERS = {"none": {}, "category": {"categories": ["cat3"]}, "category+price": {"categories": ["cat3"], "price_min": 50.0,
                                                                               "price_max": 110.0}}


def brute_force(fused: np.ndarray, fields: list[dict], query: np.ndarray, spec: dict) -> list[str]:
    allowed = np.array([(not spec.get("categories") or f["category"] in spec["categories"])
                        and f["price"] >= spec.get("price_min", -1) and f["price"] <= spec.get("price_max", 1e9)
                        for f in fields])
    scores = np.where(allowed, fused @ query, -np.inf)
    return [f"P{i:07d}" for i in np.argsort(-scores, kind="stable")[:K]]


def fill(url: str, text, image, fields, batch_size: int) -> float:
    """The catalog written through the writer's path (upsert_one, `batch_size` per batch); products/s."""
    from productsearch.catalog.rows import ProductWrite
    from productsearch.catalog.store import open_store

    store = open_store(url)
    started = time.perf_counter()
    for start in range(0, len(fields), batch_size):
        ids = [f"P{i:07d}" for i in range(start, min(start + batch_size, len(fields)))]
        with store.transaction() as batch:
            store.prefetch(batch, 1, ids)
            for i, pid in zip(range(start, start + len(ids)), ids):
                store.upsert_one(batch, 1, ProductWrite(pid, f"product {i}", fields[i], b"", text[i], image[i]), time.time())
    if store.searched_in_place:  # seal the segments: Milvus does it by itself, milvus-lite only past 128 MB of memtable
        store.client.flush(store.url.collection(1))
    store.close()
    return len(fields) / (time.perf_counter() - started)


def timed_searches(model, queries, spec: dict, threads: int) -> tuple[list[float], float]:
    from productsearch.catalog.ranking.batch import RowQuery

    latencies: list[float] = []
    todo = list(queries)
    lock = threading.Lock()

    def worker():
        while True:
            with lock:
                if not todo:
                    return
                query = todo.pop()
            started = time.perf_counter()
            model.compute_ids([RowQuery(query, K, **spec)])
            with lock:
                latencies.append((time.perf_counter() - started) * 1000)

    started = time.perf_counter()
    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return latencies, len(queries) / (time.perf_counter() - started)


def measure_store(kind: str, url: str, root: Path, data, queries, runs: int, log) -> dict:
    from loadtest.filter_bench import scorer_over
    from productsearch.catalog.ranking.batch import RowQuery
    from productsearch.catalog.store import CATALOG_ENV, register_generation

    text, image, fields, fused = data
    os.environ[CATALOG_ENV] = url
    register_generation(url, 1, 0.5)
    out: dict = {"upsert": [], "search": {}}
    rate = fill(url, text, image, fields, 1000)
    log(f"{kind}: {len(fields)} products loaded ({rate:.0f}/s in batches of 1000)")
    extra = 2000
    rng = np.random.default_rng(9)
    for run in range(runs):
        t2, i2, f2, _ = synthetic(extra, seed=100 + run)
        from productsearch.catalog.rows import ProductWrite
        from productsearch.catalog.store import open_store

        store = open_store(url)
        started = time.perf_counter()
        for start in range(0, extra, 16):
            with store.transaction() as batch:
                ids = [f"U{run}-{i}" for i in range(start, start + 16)]
                store.prefetch(batch, 1, ids)
                for i, pid in zip(range(start, start + 16), ids):
                    store.upsert_one(batch, 1, ProductWrite(pid, f"update {i}", f2[i], b"", t2[i], i2[i]), time.time())
        out["upsert"].append(extra / (time.perf_counter() - started))
        with store.transaction() as batch:  # back to the measured catalog
            for i in range(extra):
                store.delete_one(batch, f"U{run}-{i}", time.time())
        store.close()
    before = rss_mb()
    model = scorer_over(url, root, 1)
    out["memory_mb"] = rss_mb() - before
    for name, spec in FILTERS.items():
        recall = []
        for query in queries[:50]:
            (found, _), = model.compute_ids([RowQuery(query, K, **spec)])
            recall.append(len(set(found) & set(brute_force(fused, fields, query, spec))) / K)
        cells = {"recall": float(np.mean(recall))}
        for threads in (1, 16):
            p50, p99, qps = [], [], []
            for _ in range(runs):
                latencies, throughput = timed_searches(model, queries[rng.permutation(len(queries))], spec, threads)
                p50.append(float(np.percentile(latencies, 50)))
                p99.append(float(np.percentile(latencies, 99)))
                qps.append(throughput)
            cells[threads] = (p50, p99, qps)
        out["search"][name] = cells
        log(f"{kind} {name}: recall {cells['recall']:.3f}, c=1 p50 {np.median(cells[1][0]):.1f} ms")
    model.finalize()
    os.environ.pop(CATALOG_ENV, None)
    return out


def stores_section(products: int, runs: int, log) -> str:
    from productsearch.control.milvus_lite import MilvusLiteServer

    data = synthetic(products)
    queries = np.stack([data[3][i] for i in np.random.default_rng(5).integers(0, products, 200)])
    queries = queries + 0.02 * np.random.default_rng(6).standard_normal(queries.shape).astype(np.float32)
    queries = (queries / np.linalg.norm(queries, axis=1, keepdims=True)).astype(np.float32)
    results = {}
    with tempfile.TemporaryDirectory(prefix="store_bench_") as tmp:
        root = Path(tmp)
        (root / "sqlite").mkdir()
        results["embedded SQLite + in-memory index (faiss IVF from 100k)"] = measure_store("sqlite", f"sqlite://{root / 'sqlite' / 'catalog_store'}",
                                                                     root / "sqlite", data, queries, runs, log)
        milvus = MilvusLiteServer(root / "milvus-data").start()
        try:
            (root / "milvus").mkdir()
            results["Milvus (milvus-lite server, FLAT)"] = measure_store(
                "milvus", milvus.catalog_url(root / "images"), root / "milvus", data, queries, runs, log)
            results["Milvus (milvus-lite server, FLAT)"]["memory_mb"] = rss_mb(milvus.pid)
        finally:
            milvus.stop()
    lines = ["| store | filter | recall@10 | c=1 p50 ms | c=1 p99 ms | c=16 p50 ms | c=16 p99 ms | c=16 searches/s |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for store, out in results.items():
        for name, cells in out["search"].items():
            lines.append(f"| {store} | {name} | {cells['recall']:.3f} | {spread(cells[1][0])} | {spread(cells[1][1])} | "
                         f"{spread(cells[16][0])} | {spread(cells[16][1])} | {spread(cells[16][2])} |")
    lines += ["", "| store | upserts/s (16 per batch, no encoding) | memory MB |", "|---|---:|---:|"]
    for store, out in results.items():
        lines.append(f"| {store} | {spread(out['upsert'], 0)} | {out['memory_mb']:.0f} |")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------ replicas

def replicas_section(runs: int, seconds: float, log) -> str:
    from contextlib import ExitStack

    from clients.index import load_products, read_products
    from loadtest.private_server import temporary_server
    from loadtest.search_load import SearchLoad
    from loadtest.workload import Workload
    from productsearch.control.milvus_lite import MilvusLiteServer
    from productsearch.control.paths import DEFAULT_MODEL_REPOSITORY, DEMO_CATALOG
    from productsearch.control.repository import link_repository

    single, both, failed, after = [], [], [], []
    with tempfile.TemporaryDirectory(prefix="replica_bench_") as tmp:
        root = Path(tmp)
        milvus = MilvusLiteServer(root / "milvus-data").start()
        repository = link_repository(DEFAULT_MODEL_REPOSITORY, root / "model_repository", generations=[1])
        url = milvus.catalog_url(root / "images")
        try:
            with ExitStack() as stack:
                b = stack.enter_context(temporary_server(root, catalog_url=url, name="triton-b", repository=repository))
                report = load_products(b.grpc_url, read_products(DEMO_CATALOG)[:300], key=b.key, progress=False)
                assert not report.failed, report.summary()
                for run in range(runs):
                    with temporary_server(root, catalog_url=url, name=f"triton-a{run}", repository=repository) as a:
                        for target, sink in ((a.grpc_url, single), (f"{a.grpc_url},{b.grpc_url}", both)):
                            with SearchLoad(target, 32, Workload.texts_only(), timeout_s=30, retries=3) as load:
                                time.sleep(seconds)
                                started, count = time.monotonic(), len(load.answers)
                                time.sleep(seconds)
                                sink.append((len(load.answers) - count) / (time.monotonic() - started))
                        with SearchLoad(f"{a.grpc_url},{b.grpc_url}", 8, Workload.texts_only(), timeout_s=30, retries=10, backoff_s=0.05) as load:
                            time.sleep(3)
                            os.killpg(a.pid, signal.SIGKILL)
                            killed = time.monotonic()
                            time.sleep(5)
                        failed.append(len(load.failures))
                        after.append(len([c for c in load.calls if c.sent > killed and c.ok]))
                    log(f"run {run + 1}: one {single[-1]:.1f}/s, both {both[-1]:.1f}/s, {failed[-1]} failed while A was killed")
        finally:
            milvus.stop()
    ratios = [b / s for s, b in zip(single, both)]
    return ("| figure | value |\n|---|---:|\n"
            f"| search throughput c=32, one replica (req/s) | {spread(single)} |\n"
            f"| search throughput c=32, two replicas (req/s) | {spread(both)} |\n"
            f"| two / one | {spread(ratios, 2)} |\n"
            f"| searches failed while replica A was killed (c=8, retries 10) | {spread(failed, 0)} |\n"
            f"| searches answered in the 5 s after the kill | {spread(after, 0)} |\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.bench --sections stores|replicas", description=__doc__.split("\n")[0])
    parser.add_argument("--sections", default="stores,replicas")
    parser.add_argument("--products", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10.0, help="replicas: seconds per throughput window")
    parser.add_argument("--write", action="store_true", help="record the tables in BENCHMARKS.md")
    args = parser.parse_args(argv)
    sections = args.sections.split(",")
    if "stores" in sections:
        publish("stores", "Catalog stores: embedded SQLite vs Milvus", "loadtest.bench", argv,
                f"{args.products} synthetic products (1024-d fused), scorer in process, {args.runs} runs: median (min-max); "
                "memory: the scorer's RSS growth (embedded) / the milvus-lite server's RSS (Milvus)",
                stores_section(args.products, args.runs, print), args.write)
    if "replicas" in sections:
        publish("replicas", "Triton replicas on one Milvus", "loadtest.bench", argv,
                f"two tritonservers on one milvus-lite server, 300 demo products, {args.runs} runs: median (min-max); "
                "both replicas and the load share the same 2 cores, so ~1.0x is what this machine can show",
                replicas_section(args.runs, args.seconds, print), args.write)
    return 0

