"""Vector search over a catalog matrix: exact (one matrix product + top-k) and IVF (faiss).

- exact: the fp32 matrix in memory, numpy (BLAS) on the CPU, so the scorer's process carries no
  torch (~450 MB less resident memory); torch on a GPU.
- ivf: an IVF index over fp16-coded vectors (faiss IndexIVFScalarQuantizer, QT_fp16): half the
  memory of the fp32 matrix and a scan of nprobe/nlist of it per query; its recall against exact
  search is measured by loadtest/bench.py. The index is persisted beside its catalog, so it is
  built once per catalog. faiss is imported only here, when an index is used.
Both return (rows, scores), best first, ties by row number (stable pages).
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from productsearch.catalog.files import sha256_file

EXACT_MAX_PRODUCTS = 100_000  # from here on the scorer searches an IVF index (CPU); below, exact
DEFAULT_NPROBE = 16


def top_rows(scores: np.ndarray, depth: int) -> np.ndarray:
    """Positions of the `depth` best scores: by score, then by position (stable pages)."""
    if depth < len(scores):
        part = np.argpartition(-scores, depth - 1)[:depth]
    else:
        part = np.arange(len(scores))
    return part[np.lexsort((part, -scores[part]))]


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

    def search_within(self, query: np.ndarray, k: int, allowed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Top-k among the catalog rows set in the mask `allowed`: the IVF scan skips the others (faiss ID
        selector over a bitmap). The nearest allowed products lie further out than the nearest
        of all, so it probes nprobe / (share of products allowed) lists - as many allowed
        products as an unfiltered query sees - and more while fewer than k were found."""
        import faiss

        packed = np.packbits(allowed, bitorder="little")
        selector = faiss.IDSelectorBitmap(self.count, faiss.swig_ptr(packed))
        share = max(int(allowed.sum()) / self.count, 1e-9)
        nprobe = min(int(np.ceil(self.index.nprobe / share)), self.index.nlist)
        while True:
            params = faiss.SearchParametersIVF(sel=selector, nprobe=nprobe)
            scores, index = self.index.search(query[None], k, params=params)
            if (index >= 0).all() or nprobe >= self.index.nlist:
                keep = index[0] >= 0
                return index[0][keep], scores[0][keep]
            nprobe = min(nprobe * 4, self.index.nlist)

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


@dataclass(frozen=True)
class IndexSpec:
    """IVF over fp16-coded vectors. nlist 0: about sqrt(N) lists (1,000 for a million)."""

    nlist: int = 0
    train_per_list: int = 40  # k-means sample: 40 x nlist rows (faiss warns under 39)
    niter: int = 10
    seed: int = 1234

    def lists_for(self, count: int) -> int:
        return self.nlist or int(min(max(round(count ** 0.5), 16), 8192))

    def name(self, count: int) -> str:
        return f"ivf{self.lists_for(count)}-sqfp16-s{self.seed}"


def index_path(catalog_root: Path, spec: IndexSpec, count: int) -> Path:
    return Path(catalog_root) / f"index-{spec.name(count)}.faiss"


def build_index(catalog_root: Path, embeddings: np.ndarray, spec: IndexSpec = IndexSpec(), threads: int | None = None,
                persist: bool = True, log=lambda *a: None):
    """Train and fill an IVF-SQfp16 inner-product index over `embeddings` (rows in order, so
    labels are row numbers); written atomically beside the catalog with a checksummed sidecar
    unless persist is False or the directory is read-only."""
    import faiss

    if threads:
        faiss.omp_set_num_threads(threads)
    count, dim = embeddings.shape
    nlist = spec.lists_for(count)
    started = time.monotonic()
    rng = np.random.default_rng(spec.seed)
    sample = np.sort(rng.choice(count, size=min(count, spec.train_per_list * nlist), replace=False))
    quantizer = faiss.IndexFlatIP(dim)
    index = faiss.IndexIVFScalarQuantizer(quantizer, dim, nlist, faiss.ScalarQuantizer.QT_fp16,
                                          faiss.METRIC_INNER_PRODUCT, False)
    index.cp.niter = spec.niter
    index.cp.seed = spec.seed
    index.train(np.ascontiguousarray(embeddings[sample], dtype=np.float32))
    index.quantizer_trains_alone = 0
    log(f"index: trained {nlist} lists on {len(sample)} rows ({time.monotonic() - started:.1f} s)")
    for start in range(0, count, 65536):
        index.add(np.ascontiguousarray(embeddings[start:start + 65536], dtype=np.float32))
    index.own_fields = True
    quantizer.this.disown()
    seconds = time.monotonic() - started
    log(f"index: {count} vectors added ({seconds:.1f} s)")
    if persist:
        path = index_path(catalog_root, spec, count)
        try:
            tmp = path.with_name(f".{path.name}.tmp")
            faiss.write_index(index, str(tmp))
            with open(tmp, "rb") as handle:
                os.fsync(handle.fileno())
            sidecar = {"spec": spec.__dict__, "nlist": nlist, "count": count, "dim": dim, "build_seconds": round(seconds, 1),
                       "sha256": sha256_file(tmp), "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
            path.with_suffix(".json").write_text(json.dumps(sidecar, indent=1))
            os.replace(tmp, path)
        except OSError as err:  # a read-only repository still serves, it just rebuilds next load
            log(f"index: not persisted ({err})")
    return index


def load_index(catalog_root: Path, count: int, spec: IndexSpec = IndexSpec(), verify: bool = True):
    """The persisted index for this catalog and spec, or None if there is none (or it fails its
    checksum or does not match the catalog)."""
    import faiss

    path = index_path(catalog_root, spec, count)
    sidecar_path = path.with_suffix(".json")
    if not path.exists() or not sidecar_path.exists():
        return None
    try:
        sidecar = json.loads(sidecar_path.read_text())
    except ValueError:
        return None
    if sidecar.get("count") != count or (verify and sha256_file(path) != sidecar.get("sha256")):
        return None
    index = faiss.read_index(str(path))
    return index if index.ntotal == count else None

