"""scorer: cosine top-k of fused query embeddings over this generation's catalog.

The catalog (unit-norm fused embeddings) is loaded once in initialize(); a batch of queries is
scored with ONE matrix product [B, D] x [D, N] and one top-k. The model version is the
generation number and is returned with every answer (GENERATION), so a client can tell which
generation served it during a hot swap.
"""
from __future__ import annotations

import numpy as np

from productsearch.backends.common import ModelContext, RequestError, input_array, response, run_batched, set_torch_threads
from productsearch.catalog_store import load_catalog

MAX_TOP_K = 1000


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


class ScorerModel:
    def initialize(self, args: dict) -> None:
        import torch

        self.ctx = ModelContext.from_args(args)
        set_torch_threads(self.ctx)
        catalog = load_catalog(self.ctx.version_dir)
        self.ids = np.array(catalog.ids, dtype=object)
        self.titles = np.array([p.get("title", "") for p in catalog.products], dtype=object)
        self.matrix = torch.from_numpy(np.ascontiguousarray(catalog.embeddings, dtype=np.float32)).to(self.ctx.device)
        self.generation = np.array([self.ctx.version], dtype=np.int64)

    def parse(self, request) -> list[tuple[np.ndarray, int]]:
        query = input_array(request, "QUERY_EMBEDDING")
        if query is None:
            raise RequestError("missing input QUERY_EMBEDDING")
        query = query.reshape(len(query), -1)
        if query.shape[1] != self.matrix.shape[1]:
            raise RequestError(f"QUERY_EMBEDDING has dim {query.shape[1]}, catalog has {self.matrix.shape[1]}")
        top_k = check_top_k(input_array(request, "TOP_K"), len(query))
        return list(zip(query, top_k))

    def compute(self, rows: list[tuple[np.ndarray, int]]) -> list[tuple[np.ndarray, np.ndarray]]:
        import torch

        queries = torch.from_numpy(np.stack([q for q, _ in rows]).astype(np.float32)).to(self.matrix.device)
        k_max = min(max(k for _, k in rows), len(self.ids))
        with torch.inference_mode():
            scores, index = torch.topk(queries @ self.matrix.T, k_max, dim=1)
        scores, index = scores.cpu().numpy(), index.cpu().numpy()
        return [(index[row, : min(k, k_max)], scores[row, : min(k, k_max)]) for row, (_, k) in enumerate(rows)]

    def respond(self, results: list[tuple[np.ndarray, np.ndarray]]):
        # Rows of one request share TOP_K (checked in parse), so they stack. A catalog smaller
        # than TOP_K returns the whole catalog, ranked.
        index = np.stack([i for i, _ in results])
        return response(
            PRODUCT_IDS=self.ids[index],
            TITLES=self.titles[index],
            SCORES=np.stack([s for _, s in results]).astype(np.float32),
            GENERATION=np.repeat(self.generation[None], len(results), axis=0),
        )

    def execute(self, requests):
        return run_batched(requests, self.parse, self.compute, self.respond)
