"""The scale section of the benchmark: synthetic catalogs of 10k-1M products swapped into the
private server's scorer: search latency, recall@10 against exact search, the scorer's memory,
and an nprobe sweep of the IVF index.
"""
from __future__ import annotations

import os
import time

import numpy as np
import tritonclient.grpc.aio as aioclient

from clients.contract import search_inputs
from loadtest.harness import run_load
from loadtest.sections import Settings, cell_requests
from loadtest.private_server import reload_models, stub_rss_mb
from loadtest.workload import ROOT, Workload
from productsearch.core.vectors import fuse

WORK_DIR = ROOT / "run" / "bench"


def work_dir(device: str = "cpu"):
    """run/bench (run/bench-gpu for GPU configs): the private server's repository and the cached catalogs."""
    return WORK_DIR if device == "cpu" else WORK_DIR.with_name(f"bench-{device}")


def with_catalog(url: str | None):
    """A reload_models mutate(): the scorer reads the store at `url` (None: its own)."""
    def mutate(model, config):
        if model == "scorer" and url is not None:
            config.parameters["catalog"].string_value = url
    return mutate


async def scale_section(server, workload: Workload, settings: Settings, log=print, sigma: float = 1.0) -> tuple[str, dict]:
    from loadtest.inprocess import config_parameters
    from loadtest.synthetic import exact_top_k, recall_at_k, synthetic_catalog, synthetic_ids
    from productsearch.catalog.index.ann import EXACT_MAX_PRODUCTS
    from productsearch.catalog.store import catalog_url, open_store

    parameters = config_parameters(server.repository, "scorer")["parameters"]
    threshold = int(parameters.get("exact_max_products", {}).get("string_value", EXACT_MAX_PRODUCTS))
    nprobe = int(parameters.get("nprobe", {}).get("string_value", 0)) or None
    base_store = open_store(catalog_url(server.repository))
    base = next(iter(base_store.snapshot(server.generation, chunk=10**9)))
    base_store.close()
    queries = await recall_queries(server.grpc_url, workload)
    rows, figures, sweep = [], {}, []
    cache = WORK_DIR / "catalogs"
    try:
        for count in settings.scales:
            started = time.monotonic()
            root = synthetic_catalog(cache, base, server.generation, count, sigma=sigma, log=log)
            fused = np.load(root / "fused.npy", mmap_mode="r")
            made = time.monotonic() - started
            load_s = reload_models(server, ("scorer",), with_catalog(f"sqlite://{root}"))
            rss = stub_rss_mb(server, "scorer")
            c1 = await run_load(server.grpc_url, workload, "text", 1, settings.requests, max_seconds=settings.cell_seconds)
            c16 = await run_load(server.grpc_url, workload, "text", 16, cell_requests(settings, 16), max_seconds=settings.cell_seconds)
            recalls, exact = {}, {}
            for kind, (inputs, query_vectors) in queries.items():
                found = await served_top_ids(server.grpc_url, inputs, 10)
                exact[kind] = exact_top_k(fused, query_vectors, 10)
                recalls[kind] = recall_at_k(found, synthetic_ids(exact[kind]))
            raw_mb = count * fused.shape[1] * 4 / 2**20
            method = f"ivf, nprobe {nprobe or 'default'}" if count >= threshold else "exact fp32"
            row = (f"| {count:,} | {method} | {rss:.0f} | {raw_mb:.0f} | {rss / raw_mb:.2f} | {c1.percentile(50):.1f} | "
                   f"{c1.percentile(99):.1f} | {c16.percentile(50):.1f} | {c16.percentile(99):.1f} | {c16.throughput:.1f} | "
                   f"{recalls['text']:.3f} / {recalls['image']:.3f} | {load_s:.0f} | {c1.errors + c16.errors} |")
            log(row + f"  (catalog ready in {made:.0f} s)")
            rows.append(row)
            figures[count] = {"rss_ratio": rss / raw_mb, "p50_c1": c1.percentile(50), "recall": min(recalls.values())}
            if count >= threshold and count == max(settings.scales):
                sweep = nprobe_sweep(fused, queries, exact, nprobe)
            del fused
    finally:
        reload_models(server, ("scorer",))
    lines = ["| products | scorer search | scorer RSS MB | raw fp32 MB | RSS / raw | p50 ms c=1 | p99 ms c=1 | p50 ms c=16 | "
             "p99 ms c=16 | throughput c=16 req/s | recall@10 vs exact, text / image queries | scorer load s | errors |",
             "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|", *rows, "",
             f"Text search end to end (encoder + fusion + scorer). Catalogs: synthetic catalog stores, each product a mix "
             f"of two of the demo catalog's {len(base.rows)} products' text and image vectors plus noise "
             f"(loadtest/synthetic.py, sigma {sigma:g}), fused to {base.rows[0].text.shape[0] * 2}-d. Recall@10: "
             f"{len(queries['text'][0])} text and {len(queries['image'][0])} image queries, the served top-10 ids vs "
             "exact fp32 top-10 over the same fused matrix (query embeddings from the served encoders, fused as the "
             "server does). RSS: VmRSS of the scorer's python stub after load (the live index holds the fp32 matrix, "
             f"and from {threshold:,} products an IVF-SQfp16 index beside it). Scorer load: the reload, which reads the "
             "store and builds the index."]
    if sweep:
        lines += ["", f"The IVF index at {max(settings.scales):,} products (built as the scorer builds it) searched in "
                  "this process, one query at a time, one thread (the scorer's setting), same queries and exact answers:",
                  "", "| nprobe (of nlist) | recall@10 vs exact, text / image | ms per query |", "|---|---:|---:|", *sweep]
    return "\n".join(lines), figures


def nprobe_sweep(fused: np.ndarray, queries: dict, exact: dict, served_nprobe: int | None,
                 probes=(1, 4, 8, 16, 32, 64)) -> list[str]:
    """Recall and time per query of the IVF index against nprobe (in this process)."""
    import faiss

    from productsearch.catalog.index.ann import DEFAULT_NPROBE, IvfSearch

    served_nprobe = served_nprobe or DEFAULT_NPROBE
    matrix = np.asarray(fused, dtype=np.float32)
    started = time.perf_counter()
    index = IvfSearch(matrix, np.ones(len(matrix), bool), threads=os.cpu_count() or 1).index
    build_s = time.perf_counter() - started
    faiss.omp_set_num_threads(1)
    rows = []
    for nprobe in probes:
        index.nprobe = nprobe
        recalls, seconds, total = [], 0.0, 0
        for kind, (_, vectors) in queries.items():
            started = time.perf_counter()
            found = np.concatenate([index.search(vectors[i:i + 1], 10)[1] for i in range(len(vectors))])
            seconds += time.perf_counter() - started
            total += len(vectors)
            recalls.append(np.mean([len(set(f) & set(e)) / 10 for f, e in zip(found.tolist(), exact[kind].tolist())]))
        mark = " (served)" if nprobe == served_nprobe else ""
        rows.append(f"| {nprobe} of {index.nlist}{mark} | {' / '.join(f'{r:.3f}' for r in recalls)} | {seconds / total * 1000:.2f} |")
    faiss.omp_set_num_threads(os.cpu_count() or 1)
    return rows + ["", f"(index build in this process, {os.cpu_count()} threads: {build_s:.0f} s)"]


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
