"""scorer: cosine top-k of fused query embeddings over this generation's catalog.

The catalog (unit-norm fused embeddings) is opened once in initialize(); a batch of queries is
scored in ONE operation. How is decided then, from the catalog's size (config parameters):
- exact (the default below `exact_max_products`, 100,000, and always on a GPU): the fp32 matrix
  in memory, one matrix product [B, D] x [D, N] and one top-k (numpy on the CPU, torch on a GPU);
- ivf (CPU, `exact_max_products` products and up): an IVF index over fp16-coded vectors
  (faiss; catalog_store.build_index), `nprobe` of its lists scanned per query: half the memory
  of the fp32 matrix; its recall@10 against exact search is measured by loadtest/bench.py. The
  index is persisted beside the catalog, so it is built once per catalog (by the indexing
  client, or by the first scorer that loads the catalog).
Neither path imports torch on the CPU (it would add ~450 MB to the scorer's process).
Parameters: `search` (auto | exact | ivf), `exact_max_products`, `nprobe`, `ivf_nlist`,
`torch_threads` (threads for either path).

The model version is the generation number and is returned with every answer (GENERATION), so a
client can tell which generation served it during a hot swap.
"""
from __future__ import annotations

import numpy as np

from productsearch.backends.common import ModelContext, RequestError, configured_threads, input_array, response, run_batched
from productsearch.catalog_store import EXACT_MAX_PRODUCTS, IndexSpec, build_index, load_index, open_catalog

MAX_TOP_K = 1000
DEFAULT_NPROBE = 16


def check_top_k(raw: np.ndarray | None, rows: int) -> list[int]:
    if raw is None:
        raise RequestError("missing input TOP_K")
    values = raw.reshape(-1).tolist()
    if len(values) != rows:
        raise RequestError(f"TOP_K needs one value per query ({rows}), got {len(values)}")
    for k in values:
        if k < 1 or k > MAX_TOP_K:
            raise RequestError(f"TOP_K must be between 1 and {MAX_TOP_K}, got {k}")
    if len(set(values)) > 1:
        raise RequestError("TOP_K must be the same for every query of one request")
    return values


class ExactSearch:
    """The fp32 matrix, one matrix product + top-k per batch: numpy (BLAS) on the CPU, so the
    scorer's process carries no torch (~450 MB less resident memory); torch on a GPU."""

    method = "exact"

    def __init__(self, embeddings: np.ndarray, device: str, threads: int):
        self.device = device
        if device == "cpu":
            limit_blas_threads(threads)
            self.matrix = np.array(embeddings, dtype=np.float32)  # copied out of the memory map
        else:
            import torch

            torch.set_num_threads(threads)
            self.matrix = torch.from_numpy(np.array(embeddings, dtype=np.float32)).to(device)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        if self.device != "cpu":
            import torch

            with torch.inference_mode():
                scores, index = torch.topk(torch.from_numpy(queries).to(self.matrix.device) @ self.matrix.T, k, dim=1)
            return index.cpu().numpy(), scores.cpu().numpy()
        scores = queries @ self.matrix.T
        if k < scores.shape[1]:
            index = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        else:
            index = np.broadcast_to(np.arange(scores.shape[1]), scores.shape).copy()
        top = np.take_along_axis(scores, index, axis=1)
        order = np.lexsort((index, -top), axis=1)  # best score first, ties by row number
        return np.take_along_axis(index, order, axis=1), np.take_along_axis(top, order, axis=1)


def limit_blas_threads(threads: int) -> None:
    """numpy's BLAS threads (the launcher's OMP_NUM_THREADS=1 already caps them at one)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return
    threadpool_limits(limits=threads, user_api="blas")


class IvfSearch:
    """IVF-SQfp16 index (faiss): scans `nprobe` of `nlist` lists per query."""

    method = "ivf"

    def __init__(self, catalog, spec: IndexSpec, nprobe: int, threads: int, log=lambda *a: None):
        import faiss

        faiss.omp_set_num_threads(threads)
        count = len(catalog)
        self.index = load_index(catalog.root, count, spec)
        if self.index is None:
            log(f"scorer: building the IVF index for {count} products (persisted beside the catalog)")
            self.index = build_index(catalog.root, catalog.embeddings, spec, threads, log=log)
        self.index.nprobe = min(nprobe, self.index.nlist)
        self.count = count

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        scores, index = self.index.search(queries, k)
        short = np.flatnonzero((index < 0).any(axis=1))
        if len(short):  # the probed lists held fewer than k products: probe more for those rows
            nprobe = self.index.nprobe
            try:
                while len(short) and self.index.nprobe < self.index.nlist:
                    self.index.nprobe = min(self.index.nprobe * 4, self.index.nlist)
                    scores[short], index[short] = self.index.search(queries[short], k)
                    short = short[(index[short] < 0).any(axis=1)]
            finally:
                self.index.nprobe = nprobe
        return index, scores


class ScorerModel:
    def initialize(self, args: dict) -> None:
        self.ctx = ModelContext.from_args(args)
        threads = configured_threads(self.ctx)
        catalog = open_catalog(self.ctx.version_dir)
        self.ids, self.titles = catalog.ids, catalog.titles
        self.count, self.dim = catalog.embeddings.shape
        method = self.ctx.parameter("search", "auto")
        if method not in ("auto", "exact", "ivf"):
            raise ValueError(f"scorer parameter search must be auto, exact or ivf, not {method!r}")
        threshold = int(self.ctx.parameter("exact_max_products", str(EXACT_MAX_PRODUCTS)))
        if method == "auto":
            method = "ivf" if self.ctx.device == "cpu" and self.count >= threshold else "exact"
        if method == "ivf":
            spec = IndexSpec(nlist=int(self.ctx.parameter("ivf_nlist", "0")))
            nprobe = int(self.ctx.parameter("nprobe", str(DEFAULT_NPROBE)))
            self.searcher = IvfSearch(catalog, spec, nprobe, threads, log=print)
        else:
            self.searcher = ExactSearch(catalog.embeddings, self.ctx.device, threads)
        del catalog  # the memory map of embeddings.npy goes with it
        self.generation = np.array([self.ctx.version], dtype=np.int64)

    def parse(self, request) -> list[tuple[np.ndarray, int]]:
        query = input_array(request, "QUERY_EMBEDDING")
        if query is None:
            raise RequestError("missing input QUERY_EMBEDDING")
        query = query.reshape(len(query), -1)
        if query.shape[1] != self.dim:
            raise RequestError(f"QUERY_EMBEDDING has dim {query.shape[1]}, catalog has {self.dim}")
        top_k = check_top_k(input_array(request, "TOP_K"), len(query))
        return list(zip(query, top_k))

    def compute(self, rows: list[tuple[np.ndarray, int]]) -> list[tuple[np.ndarray, np.ndarray]]:
        queries = np.ascontiguousarray(np.stack([q for q, _ in rows]), dtype=np.float32)
        k_max = min(max(k for _, k in rows), self.count)
        index, scores = self.searcher.search(queries, k_max)
        return [(index[row, : min(k, k_max)], scores[row, : min(k, k_max)]) for row, (_, k) in enumerate(rows)]

    def respond(self, results: list[tuple[np.ndarray, np.ndarray]]):
        # Rows of one request share TOP_K (checked in parse), so they stack. A catalog smaller
        # than TOP_K returns the whole catalog, ranked.
        index = np.stack([i for i, _ in results])
        return response(
            PRODUCT_IDS=self.ids.take(index),
            TITLES=self.titles.take(index),
            SCORES=np.stack([s for _, s in results]).astype(np.float32),
            GENERATION=np.repeat(self.generation[None], len(results), axis=0),
        )

    def execute(self, requests):
        return run_batched(requests, self.parse, self.compute, self.respond)
