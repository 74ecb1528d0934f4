"""scorer: cosine top-k of fused query embeddings over this generation's catalog.

The catalog (unit-norm fused embeddings) is opened once in initialize(); a batch of queries is
scored in ONE operation. How is decided then, from the catalog's size (config parameters):
- exact (the default below `exact_max_products`, 100,000, and always on a GPU): the fp32 matrix
  in memory, one matrix product [B, D] x [D, N] and one top-k (numpy on the CPU, torch on a GPU);
- ivf (CPU, `exact_max_products` products and up): an IVF index over fp16-coded vectors
  (faiss; catalog/ann.py), `nprobe` of its lists scanned per query: half the memory
  of the fp32 matrix; its recall@10 against exact search is measured by loadtest/bench.py. The
  index is persisted beside the catalog, so it is built once per catalog (by the indexing
  client, or by the first scorer that loads the catalog).
Neither path imports torch on the CPU (it would add ~450 MB to the scorer's process).
Parameters: `search` (auto | exact | ivf), `exact_max_products`, `nprobe`, `ivf_nlist`,
`torch_threads` (threads for either path).

Optional inputs (all per query row; see the README's contract):
- OFFSET: skip that many results (pagination). Results are ordered by score, then by catalog
  row, so pages of one query fit together; OFFSET + TOP_K <= 10,000.
- CATEGORIES (any of), PRICE_MIN / PRICE_MAX (inclusive), EXCLUDE_IDS: filters applied BEFORE
  ranking (never "top-k, then filter", which returns too few): the query is scored exactly
  against the products that pass - except on the IVF path when more than `exact_filter_max`
  (50,000) pass: then the IVF scan itself skips the others (approximate, like every IVF query).
  Unknown categories are refused; unknown excluded ids are ignored (they exclude nothing).
- SEED_IDS (+ SEED_WEIGHTS) instead of QUERY_EMBEDDING: the query is the normalized weighted sum
  of those products' own embeddings ("more like this", "for this shopper"); the seeds are
  excluded from the results; unknown ids are refused. Without weights, recency weights
  RECENCY_DECAY**i (the first id is the most recent).
Rows of one request that end up with fewer results than others (filters, the end of the
catalog) are padded with empty ids and NaN scores.

The model version is the generation number and is returned with every answer (GENERATION), so a
client can tell which generation served it during a hot swap.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from productsearch.catalog.ann import DEFAULT_NPROBE, EXACT_MAX_PRODUCTS, ExactSearch, IndexSpec, IvfSearch, top_rows
from productsearch.catalog.files import open_catalog
from productsearch.runtime.limits import MAX_DEPTH, MAX_LIST, MAX_TOP_K
from productsearch.runtime.model_io import ModelContext, RequestError, configured_threads, input_array, response, run_batched

RECENCY_DECAY = 0.8
EXACT_FILTER_MAX = 50_000  # IVF path: more products than this pass a filter -> filtered IVF scan
NO_ROWS = np.zeros(0, dtype=np.int64)


@dataclass
class RowQuery:
    """One query row, parsed: what to rank and which products may appear."""

    query: np.ndarray | None  # fused query embedding; None: made from the seeds
    k: int
    offset: int = 0
    seeds: np.ndarray = field(default_factory=lambda: NO_ROWS)  # catalog rows
    seed_weights: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    categories: np.ndarray | None = None  # category codes (any of)
    price_min: float | None = None
    price_max: float | None = None
    exclude: np.ndarray = field(default_factory=lambda: NO_ROWS)  # catalog rows

    @property
    def filtered(self) -> bool:
        return self.categories is not None or self.price_min is not None or self.price_max is not None


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


def per_row(array: np.ndarray | None, rows: int, name: str) -> list | None:
    """An optional input's value for each query row (its first axis is the row)."""
    if array is None:
        return None
    if array.ndim == 0 or len(array) != rows:
        raise RequestError(f"{name} needs one entry per query ({rows}), got shape {list(array.shape)}")
    return [array[i].reshape(-1) for i in range(rows)]


def strings(values: np.ndarray, name: str) -> list[bytes]:
    """Non-empty elements of a BYTES row (empty ones are padding)."""
    items = [bytes(v) for v in values.tolist() if len(v)]
    if len(items) > MAX_LIST:
        raise RequestError(f"{name} takes at most {MAX_LIST} values, got {len(items)}")
    return items


def number(values: np.ndarray, name: str) -> float | None:
    value = float(values[0]) if len(values) else float("nan")
    if np.isinf(value):
        raise RequestError(f"{name} must be a finite number, got {value}")
    return None if np.isnan(value) else value


class ScorerModel:
    def initialize(self, args: dict) -> None:
        self.ctx = ModelContext.from_args(args)
        threads = configured_threads(self.ctx)
        catalog = open_catalog(self.ctx.version_dir)
        self.ids, self.titles = catalog.ids, catalog.titles
        self.count, self.dim = catalog.embeddings.shape
        self.categories, self.prices, self.lookup = catalog.categories, catalog.prices, catalog.lookup
        self.category_codes = {name.encode(): code for code, name in enumerate(catalog.category_names)}
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
        # Rows for seeds and filtered (exact) search: the in-memory matrix on the CPU path, else
        # the memory map (only the pages read are resident).
        on_cpu = isinstance(self.searcher, ExactSearch) and self.searcher.device == "cpu"
        self.vectors = self.searcher.matrix if on_cpu else catalog.embeddings
        self.exact_filter_max = int(self.ctx.parameter("exact_filter_max", str(EXACT_FILTER_MAX)))
        self.generation = np.array([self.ctx.version], dtype=np.int64)

    # ------------------------------------------------------------------ reading a request

    def parse(self, request) -> list[RowQuery]:
        query = input_array(request, "QUERY_EMBEDDING")
        seeds = input_array(request, "SEED_IDS")
        if (query is None) == (seeds is None):
            raise RequestError("send either QUERY_EMBEDDING or SEED_IDS")
        rows = len(query) if query is not None else len(seeds)
        if query is not None:
            query = query.reshape(rows, -1)
            if query.shape[1] != self.dim:
                raise RequestError(f"QUERY_EMBEDDING has dim {query.shape[1]}, catalog has {self.dim}")
        top_k = check_top_k(input_array(request, "TOP_K"), rows)
        offsets = per_row(input_array(request, "OFFSET"), rows, "OFFSET")
        categories = per_row(input_array(request, "CATEGORIES"), rows, "CATEGORIES")
        price_min = per_row(input_array(request, "PRICE_MIN"), rows, "PRICE_MIN")
        price_max = per_row(input_array(request, "PRICE_MAX"), rows, "PRICE_MAX")
        exclude = per_row(input_array(request, "EXCLUDE_IDS"), rows, "EXCLUDE_IDS")
        seed_ids = per_row(seeds, rows, "SEED_IDS")
        seed_weights = per_row(input_array(request, "SEED_WEIGHTS"), rows, "SEED_WEIGHTS")
        parsed = []
        for i in range(rows):
            row = RowQuery(None if query is None else query[i], top_k[i])
            if offsets is not None:
                row.offset = int(offsets[i][0]) if len(offsets[i]) else 0
                if row.offset < 0 or row.offset + row.k > MAX_DEPTH:
                    raise RequestError(f"OFFSET must be >= 0 with OFFSET + TOP_K <= {MAX_DEPTH}, got OFFSET "
                                       f"{row.offset} and TOP_K {row.k}")
            if categories is not None:
                row.categories = self.category_rows(strings(categories[i], "CATEGORIES"))
            if price_min is not None:
                row.price_min = number(price_min[i], "PRICE_MIN")
            if price_max is not None:
                row.price_max = number(price_max[i], "PRICE_MAX")
            if row.price_min is not None and row.price_max is not None and row.price_min > row.price_max:
                raise RequestError(f"PRICE_MIN {row.price_min:g} is above PRICE_MAX {row.price_max:g}")
            if seed_ids is not None:
                row.seeds, row.seed_weights = self.seed_rows(seed_ids[i], None if seed_weights is None else seed_weights[i])
            excluded = self.lookup.rows(strings(exclude[i], "EXCLUDE_IDS"))[0] if exclude is not None else NO_ROWS
            row.exclude = np.union1d(excluded, row.seeds)
            parsed.append(row)
        return parsed

    def category_rows(self, names: list[bytes]) -> np.ndarray | None:
        """Category names -> codes; no names (all empty) -> no category filter."""
        if not names:
            return None
        unknown = [n.decode(errors="replace") for n in names if n not in self.category_codes]
        if unknown:
            known = sorted(c.decode(errors="replace") for c in self.category_codes)
            raise RequestError(f"unknown category {', '.join(map(repr, unknown))}; this catalog has: "
                               f"{', '.join(known[:50])}{' ...' if len(known) > 50 else ''}")
        return np.array([self.category_codes[n] for n in names], dtype=self.categories.dtype)

    def seed_rows(self, ids: np.ndarray, weights: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        present = [j for j, v in enumerate(ids.tolist()) if len(v)]
        if not present:
            raise RequestError("SEED_IDS is empty: send at least one product id")
        if len(present) > MAX_LIST:
            raise RequestError(f"SEED_IDS takes at most {MAX_LIST} ids, got {len(present)}")
        wanted = [bytes(ids[j]) for j in present]
        rows, unknown = self.lookup.rows(wanted)
        if unknown:
            shown = ", ".join(repr(u.decode(errors="replace")) for u in unknown[:10])
            raise RequestError(f"unknown product id(s) {shown}{' ...' if len(unknown) > 10 else ''} "
                               f"(not in the catalog of generation {self.ctx.version})")
        if weights is None:
            chosen = RECENCY_DECAY ** np.arange(len(present), dtype=np.float32)
        else:
            if len(weights) != len(ids):
                raise RequestError(f"SEED_WEIGHTS needs one weight per id ({len(ids)}), got {len(weights)}")
            chosen = weights[present].astype(np.float32)
            if not np.all(np.isfinite(chosen)) or np.any(chosen < 0) or chosen.sum() <= 0:
                raise RequestError(f"SEED_WEIGHTS must be finite, >= 0 and not all 0, got {chosen.tolist()}")
        return rows, chosen

    # ------------------------------------------------------------------ ranking

    def seed_query(self, row: RowQuery) -> np.ndarray:
        mean = (np.asarray(self.vectors[row.seeds], dtype=np.float32) * row.seed_weights[:, None]).sum(axis=0)
        return mean / max(float(np.linalg.norm(mean)), 1e-12)

    def passing(self, row: RowQuery) -> np.ndarray:
        """A mask over the catalog: the products that pass the row's filters (and are not excluded)."""
        mask = np.ones(self.count, dtype=bool)
        if row.categories is not None:
            mask &= np.isin(self.categories, row.categories)
        if row.price_min is not None:
            mask &= self.prices >= row.price_min  # NaN (no price) passes no price filter
        if row.price_max is not None:
            mask &= self.prices <= row.price_max
        mask[row.exclude] = False
        return mask

    def compute(self, rows: list[RowQuery]) -> list[tuple[np.ndarray, np.ndarray]]:
        queries = np.stack([self.seed_query(r) if r.query is None else r.query for r in rows]).astype(np.float32)
        results: list = [None] * len(rows)
        plain = [i for i, r in enumerate(rows) if not r.filtered]
        if plain:  # one batched search; exclusions dropped from a deeper list
            depth = min(max(rows[i].offset + rows[i].k + len(rows[i].exclude) for i in plain), self.count)
            index, scores = self.searcher.search(np.ascontiguousarray(queries[plain]), depth)
            for j, i in enumerate(plain):
                keep = (index[j] >= 0) & ~np.isin(index[j], rows[i].exclude)
                window = slice(rows[i].offset, rows[i].offset + rows[i].k)
                results[i] = (index[j][keep][window], scores[j][keep][window])
        for i, row in enumerate(rows):  # filtered: search only the products that pass
            if results[i] is None:
                results[i] = self.filtered_search(row, queries[i])
        return results

    def filtered_search(self, row: RowQuery, query: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Exact over the products that pass; on the IVF path, when more than
        `exact_filter_max` pass, the IVF scan restricted to them (reading that many rows from
        the memory map would cost more than the unfiltered search)."""
        mask = self.passing(row)
        passing = int(mask.sum())
        depth = min(row.offset + row.k, passing)
        if depth == 0:
            return NO_ROWS, np.zeros(0, np.float32)
        if isinstance(self.searcher, IvfSearch) and passing > self.exact_filter_max:
            index, scores = self.searcher.search_within(query, depth, mask)
            return index[row.offset:], scores[row.offset:]
        candidates = np.flatnonzero(mask)
        scores = np.asarray(self.vectors[candidates], dtype=np.float32) @ query
        top = top_rows(scores, depth)[row.offset:]
        return candidates[top], scores[top]

    def respond(self, results: list[tuple[np.ndarray, np.ndarray]]):
        width = max(len(index) for index, _ in results)
        ids = np.full((len(results), width), b"", dtype=object)
        titles = np.full((len(results), width), b"", dtype=object)
        scores = np.full((len(results), width), np.nan, dtype=np.float32)
        for row, (index, score) in enumerate(results):
            ids[row, : len(index)] = self.ids.take(index)
            titles[row, : len(index)] = self.titles.take(index)
            scores[row, : len(index)] = score
        return response(PRODUCT_IDS=ids, TITLES=titles, SCORES=scores,
                        GENERATION=np.repeat(self.generation[None], len(results), axis=0))

    def execute(self, requests):
        return run_batched(requests, self.parse, self.compute, self.respond)
