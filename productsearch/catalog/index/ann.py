"""Vector search over a live catalog matrix: exact (one matrix product + top-k) and IVF (faiss).

Rows are "slots" of the catalog's in-memory matrix (catalog/index/live.py); a slot may be free
(a deleted product): `valid` masks them out, and the IVF index holds only valid slots (faiss ids =
slot numbers, added and removed as products change).
- exact: numpy (BLAS) on the CPU, so the scorer's process carries no torch (~450 MB less resident
  memory); torch on a GPU, with the matrix mirrored on the device.
- ivf: an IVF index over fp16-coded vectors (faiss IndexIVFScalarQuantizer, QT_fp16), nprobe of
  its nlist lists scanned per query; recall against exact search is measured by loadtest/bench.py.
Both return (slots, scores), best first, ties by slot number (stable pages).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

EXACT_MAX_PRODUCTS = 100_000  # from here on the scorer searches an IVF index (CPU); below, exact
DEFAULT_NPROBE = 16


def top_rows(scores: np.ndarray, depth: int) -> np.ndarray:
    """Positions of the `depth` best scores: by score, then by position (stable pages)."""
    if depth < len(scores):
        part = np.argpartition(-scores, depth - 1)[:depth]
    else:
        part = np.arange(len(scores))
    return part[np.lexsort((part, -scores[part]))]


def limit_blas_threads(threads: int) -> None:
    """numpy's BLAS threads (the launcher's OMP_NUM_THREADS=1 already caps them at one)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return
    threadpool_limits(limits=threads, user_api="blas")


class ExactSearch:
    """Every valid slot scored: one [B, D] x [D, N] product and one top-k per batch."""

    method = "exact"

    def __init__(self, device: str = "cpu", threads: int = 1):
        self.device = device
        self.mirror = None  # the matrix on the GPU
        if device == "cpu":
            limit_blas_threads(threads)
        else:
            import torch

            torch.set_num_threads(threads)

    def sync(self, matrix: np.ndarray, slots: np.ndarray | None = None) -> None:
        """Keep the device copy current: all of it (slots None) or these slots."""
        if self.device == "cpu":
            return
        import torch

        if slots is None or self.mirror is None or self.mirror.shape[0] != matrix.shape[0]:
            self.mirror = torch.from_numpy(np.ascontiguousarray(matrix)).to(self.device)
        elif len(slots):
            index = torch.from_numpy(np.asarray(slots, dtype=np.int64)).to(self.device)
            self.mirror[index] = torch.from_numpy(np.ascontiguousarray(matrix[slots])).to(self.device)

    def search(self, matrix: np.ndarray, valid: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        k = min(k, int(valid.sum()))
        if k == 0:
            return np.zeros((len(queries), 0), np.int64), np.zeros((len(queries), 0), np.float32)
        if self.device != "cpu":
            import torch

            with torch.inference_mode():
                scores = torch.from_numpy(queries).to(self.device) @ self.mirror[: len(valid)].T
                scores[:, torch.from_numpy(~valid).to(self.device)] = -float("inf")
                top, index = torch.topk(scores, k, dim=1)
            return index.cpu().numpy(), top.cpu().numpy()
        # [N, D] x [D, B], then [B, N]: the same scores (bit-equal here), the product 1.4-1.5x faster
        # than queries @ matrix.T at batch 4-16 on OpenBLAS's AVX-512 kernels (the scorer per batch
        # 1.03-1.10x, BENCHMARKS.md "Issue 14, second pass")
        scores = np.ascontiguousarray((matrix @ queries.T).T)
        scores[:, ~valid] = -np.inf
        if k < scores.shape[1]:
            index = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        else:
            index = np.broadcast_to(np.arange(scores.shape[1]), scores.shape).copy()
        top = np.take_along_axis(scores, index, axis=1)
        order = np.lexsort((index, -top), axis=1)  # best score first, ties by slot
        return np.take_along_axis(index, order, axis=1), np.take_along_axis(top, order, axis=1)


@dataclass(frozen=True)
class IndexSpec:
    """IVF over fp16-coded vectors. nlist 0: about sqrt(N) lists (1,000 for a million)."""

    nlist: int = 0
    train_per_list: int = 40  # k-means sample: 40 x nlist rows (faiss warns under 39)
    niter: int = 10
    seed: int = 1234

    def lists_for(self, count: int) -> int:
        return self.nlist or int(min(max(round(count ** 0.5), 16), 8192))


class IvfSearch:
    """IVF-SQfp16 index (faiss) over the valid slots; scans `nprobe` of `nlist` lists per query."""

    method = "ivf"

    def __init__(self, matrix: np.ndarray, valid: np.ndarray, spec: IndexSpec = IndexSpec(), nprobe: int = DEFAULT_NPROBE,
                 threads: int = 1, log=lambda *a: None):
        import faiss

        faiss.omp_set_num_threads(threads)
        slots = np.flatnonzero(valid)
        count, dim = len(slots), matrix.shape[1]
        nlist = spec.lists_for(count)
        started = time.monotonic()
        rng = np.random.default_rng(spec.seed)
        sample = np.sort(rng.choice(slots, size=min(count, spec.train_per_list * nlist), replace=False))
        quantizer = faiss.IndexFlatIP(dim)
        index = faiss.IndexIVFScalarQuantizer(quantizer, dim, nlist, faiss.ScalarQuantizer.QT_fp16,
                                              faiss.METRIC_INNER_PRODUCT, False)
        index.cp.niter, index.cp.seed = spec.niter, spec.seed
        index.train(np.ascontiguousarray(matrix[sample]))
        index.own_fields = True
        quantizer.this.disown()
        for start in range(0, count, 65536):
            chunk = slots[start:start + 65536]
            index.add_with_ids(np.ascontiguousarray(matrix[chunk]), chunk.astype(np.int64))
        index.nprobe = min(nprobe, nlist)
        self.index, self.trained_on, self.changes = index, count, 0
        log(f"ivf: {nlist} lists trained on {len(sample)} rows, {count} vectors in {time.monotonic() - started:.1f} s")

    def add(self, slots: np.ndarray, vectors: np.ndarray) -> None:
        """(Re)place these slots' vectors."""
        self.remove(slots)
        self.index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), np.asarray(slots, dtype=np.int64))
        self.changes += len(slots)

    def remove(self, slots: np.ndarray) -> None:
        import faiss

        if len(slots):
            self.index.remove_ids(faiss.IDSelectorBatch(np.asarray(slots, dtype=np.int64)))
            self.changes += len(slots)

    @property
    def drifted(self) -> bool:
        """The lists were trained on a catalog that has changed as much as its size since: retrain."""
        return self.changes > self.trained_on

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        scores, index = self.index.search(np.ascontiguousarray(queries), k)
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

    def search_within(self, query: np.ndarray, k: int, allowed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Top-k among the slots set in the mask `allowed`: the IVF scan skips the others (faiss ID
        selector over a bitmap). The nearest allowed products lie further out than the nearest
        of all, so it probes nprobe / (share of products allowed) lists - as many allowed
        products as an unfiltered query sees - and more while fewer than k were found."""
        import faiss

        packed = np.packbits(allowed, bitorder="little")
        selector = faiss.IDSelectorBitmap(len(allowed), faiss.swig_ptr(packed))
        share = max(int(allowed.sum()) / max(self.index.ntotal, 1), 1e-9)
        nprobe = min(int(np.ceil(self.index.nprobe / share)), self.index.nlist)
        while True:
            params = faiss.SearchParametersIVF(sel=selector, nprobe=nprobe)
            scores, index = self.index.search(np.ascontiguousarray(query[None]), k, params=params)
            if (index >= 0).all() or nprobe >= self.index.nlist:
                keep = index[0] >= 0
                return index[0][keep], scores[0][keep]
            nprobe = min(nprobe * 4, self.index.nlist)
