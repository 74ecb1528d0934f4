"""scorer: cosine top-k of fused query embeddings over this generation's live catalog.

The catalog comes from the catalog store (catalog/store.py; the embedded default is one SQLite
database per shop): each shop's products with their vectors for this generation are loaded into
a live index (catalog/index/live.py) the first time the shop is asked for, and kept current by
following the store's log (catalog/index/follower.py) - before each batch, and every 50 ms meanwhile.
A batch of queries of one shop is scored in ONE operation (catalog/ranking/batch.py): below
`exact_max_products` products (100,000) and always on a GPU exactly (one matrix product and one
top-k; numpy on the CPU, torch on a GPU), from there on the CPU through an IVF index over
fp16-coded vectors (faiss, `nprobe` lists per query).
Parameters: `catalog` (store URL; PRODUCTSEARCH_CATALOG wins), `search` (auto | exact | ivf),
`exact_max_products`, `nprobe`, `ivf_nlist`, `exact_filter_max`, `min_sequence_wait_s`,
`torch_threads`, `query_text_weight`. The catalog is fused with generation N's text weight (runtime/generation_settings.py).

Inputs per query row (see the README's contract): QUERY_EMBEDDING, or the encoders' TEXT_EMBEDDING,
TEXT_PRESENT, IMAGE_EMBEDDING, IMAGE_PRESENT (+ TEXT_WEIGHT), fused here as `fusion` does (the
`search` ensemble: one python step less per query; default weight: parameter `query_text_weight`,
else generation N's), or SEED_IDS (+ SEED_WEIGHTS:
"more like this", "for this shopper"; seeds are excluded, unknown ids refused, default recency
weights 0.8**i); TOP_K; optional OFFSET (pages, OFFSET + TOP_K <= 10,000), CATEGORIES (any of),
PRICE_MIN / PRICE_MAX (inclusive), EXCLUDE_IDS, SHOP (default "default"), MIN_SEQUENCE (answer
only once the catalog has applied that sequence, waiting at most `min_sequence_wait_s`, then
UNAVAILABLE naming the lag); relevance (runtime/relevance_inputs.py, catalog/ranking/relevance.py):
QUERY_TEXT, LEXICAL_WEIGHT, HYBRID_MODE, BOOSTS, IN_STOCK, MAX_PER_GROUP, GROUP_BY, FACETS,
EXPLAIN. Outputs: PRODUCT_IDS, TITLES, SCORES (padded with "" / NaN where a row has fewer results
than others of its request), GENERATION (the model version: the generation), CATALOG_SEQUENCE
(the catalog sequence the answer reflects), FACET_COUNTS (JSON), EXPLANATIONS (JSON per result).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from productsearch.catalog.index.ann import DEFAULT_NPROBE, EXACT_MAX_PRODUCTS, IndexSpec
from productsearch.catalog.index.follower import Lagging, ShopFollower
from productsearch.catalog.index.live import LiveIndex
from productsearch.catalog.ranking.batch import EXACT_FILTER_MAX, QueryError, RowQuery
from productsearch.catalog.records import RecordError
from productsearch.catalog.store import catalog_url, open_store, register_generation
from productsearch.catalog.rows import DEFAULT_SHOP, check_shop
from productsearch.core.vectors import DEFAULT_TEXT_WEIGHT, fuse
from productsearch.runtime.authorize import Gatekeeper, Refused
from productsearch.runtime.fusion import query_rows
from productsearch.runtime.generation_settings import generation_text_weight
from productsearch.core.limits import MAX_DEPTH, MAX_LIST, MAX_TOP_K
from productsearch.runtime.model_io import (ModelContext, RequestError, configured_threads, input_array, internal, invalid,
                                            response, unavailable)
from productsearch.runtime.relevance_inputs import parse_relevance
from productsearch.runtime.scorer_metrics import ScorerMetrics

if TYPE_CHECKING:
    from productsearch.catalog.milvus.search import MilvusShopSearch

MIN_SEQUENCE_WAIT_S = 2.0


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


def strings(values: np.ndarray, name: str) -> list[str]:
    """Non-empty elements of a BYTES row (empty ones are padding), decoded."""
    items = [bytes(v).decode("utf-8", errors="replace") for v in values.tolist() if len(v)]
    if len(items) > MAX_LIST:
        raise RequestError(f"{name} takes at most {MAX_LIST} values, got {len(items)}")
    return items


def number(values: np.ndarray, name: str) -> float | None:
    value = float(values[0]) if len(values) else float("nan")
    if np.isinf(value):
        raise RequestError(f"{name} must be a finite number, got {value}")
    return None if np.isnan(value) else value


def seed_weights(ids: np.ndarray, weights: np.ndarray | None) -> tuple[list[str], np.ndarray | None]:
    present = [j for j, v in enumerate(ids.tolist()) if len(v)]
    if not present:
        raise RequestError("SEED_IDS is empty: send at least one product id")
    if len(present) > MAX_LIST:
        raise RequestError(f"SEED_IDS takes at most {MAX_LIST} ids, got {len(present)}")
    names = [bytes(ids[j]).decode("utf-8", errors="replace") for j in present]
    if weights is None:
        return names, None
    if len(weights) != len(ids):
        raise RequestError(f"SEED_WEIGHTS needs one weight per id ({len(ids)}), got {len(weights)}")
    chosen = weights[present].astype(np.float32)
    if not np.all(np.isfinite(chosen)) or np.any(chosen < 0) or chosen.sum() <= 0:
        raise RequestError(f"SEED_WEIGHTS must be finite, >= 0 and not all 0, got {chosen.tolist()}")
    return names, chosen


def query_kind(text: bool, image: bool) -> str:
    return "text+image" if text and image else "text" if text else "image"


def parse_rows(request, query_weight: float = DEFAULT_TEXT_WEIGHT) -> list[RowQuery]:
    """The query rows of one request, every input checked (the catalog itself is not read here).
    A query is QUERY_EMBEDDING (fused already), or the encoders' outputs fused here with TEXT_WEIGHT
    (default `query_weight`; the `search` ensemble's path), or SEED_IDS."""
    query = input_array(request, "QUERY_EMBEDDING")
    seeds = input_array(request, "SEED_IDS")
    kinds = None  # per row, for the metrics: what the shopper sent
    if query is None and input_array(request, "TEXT_EMBEDDING") is not None:
        parts = query_rows(lambda name: input_array(request, name), query_weight)
        query = fuse(*parts)
        kinds = [query_kind(t, im) for t, im in zip(parts[2].tolist(), parts[3].tolist())]
    if (query is None) == (seeds is None):
        raise RequestError("send either QUERY_EMBEDDING or SEED_IDS (or the encoders' TEXT_EMBEDDING and IMAGE_EMBEDDING)")
    rows = len(query) if query is not None else len(seeds)
    if query is not None:
        query = query.reshape(rows, -1)
    top_k = check_top_k(input_array(request, "TOP_K"), rows)
    offsets = per_row(input_array(request, "OFFSET"), rows, "OFFSET")
    categories = per_row(input_array(request, "CATEGORIES"), rows, "CATEGORIES")
    price_min = per_row(input_array(request, "PRICE_MIN"), rows, "PRICE_MIN")
    price_max = per_row(input_array(request, "PRICE_MAX"), rows, "PRICE_MAX")
    exclude = per_row(input_array(request, "EXCLUDE_IDS"), rows, "EXCLUDE_IDS")
    shops = per_row(input_array(request, "SHOP"), rows, "SHOP")
    sequences = per_row(input_array(request, "MIN_SEQUENCE"), rows, "MIN_SEQUENCE")
    seed_ids = per_row(seeds, rows, "SEED_IDS")
    weights = per_row(input_array(request, "SEED_WEIGHTS"), rows, "SEED_WEIGHTS")
    relevance = parse_relevance(lambda name: input_array(request, name), rows)
    parsed = []
    for i in range(rows):
        row = RowQuery(None if query is None else query[i], top_k[i])
        row.kind = "recommend" if query is None else kinds[i] if kinds else "embedding"
        row.relevance, row.in_stock = relevance[i]
        if offsets is not None:
            row.offset = int(offsets[i][0]) if len(offsets[i]) else 0
            if row.offset < 0 or row.offset + row.k > MAX_DEPTH:
                raise RequestError(f"OFFSET must be >= 0 with OFFSET + TOP_K <= {MAX_DEPTH}, got OFFSET "
                                   f"{row.offset} and TOP_K {row.k}")
        if categories is not None:
            row.categories = strings(categories[i], "CATEGORIES") or None
        if price_min is not None:
            row.price_min = number(price_min[i], "PRICE_MIN")
        if price_max is not None:
            row.price_max = number(price_max[i], "PRICE_MAX")
        if row.price_min is not None and row.price_max is not None and row.price_min > row.price_max:
            raise RequestError(f"PRICE_MIN {row.price_min:g} is above PRICE_MAX {row.price_max:g}")
        if seed_ids is not None:
            row.seed_ids, row.seed_weights = seed_weights(seed_ids[i], None if weights is None else weights[i])
        if exclude is not None:
            row.exclude_ids = strings(exclude[i], "EXCLUDE_IDS")
        if shops is not None:
            names = strings(shops[i], "SHOP")
            try:
                row.shop = check_shop(names[0]) if names else DEFAULT_SHOP
            except RecordError as err:
                raise RequestError(str(err)) from None
        if sequences is not None:
            row.min_sequence = int(sequences[i][0]) if len(sequences[i]) else 0
        parsed.append(row)
    return parsed


class ScorerModel:
    def initialize(self, args: dict) -> None:
        self.ctx = ModelContext.from_args(args)
        self.threads = configured_threads(self.ctx)
        self.method = self.ctx.parameter("search", "auto")
        if self.method not in ("auto", "exact", "ivf"):
            raise ValueError(f"scorer parameter search must be auto, exact or ivf, not {self.method!r}")
        self.exact_max = int(self.ctx.parameter("exact_max_products", str(EXACT_MAX_PRODUCTS)))
        self.spec = IndexSpec(nlist=int(self.ctx.parameter("ivf_nlist", "0")))
        self.nprobe = int(self.ctx.parameter("nprobe", str(DEFAULT_NPROBE)))
        self.exact_filter_max = int(self.ctx.parameter("exact_filter_max", str(EXACT_FILTER_MAX)))
        self.wait_s = float(self.ctx.parameter("min_sequence_wait_s", str(MIN_SEQUENCE_WAIT_S)))
        self.url = catalog_url(Path(self.ctx.version_dir).parent.parent, self.ctx.parameter("catalog", "") or None)
        self.gate = Gatekeeper(self.url, Path(self.ctx.version_dir).parent.parent)
        self.generation = np.array([self.ctx.version], dtype=np.int64)
        self.text_weight = generation_text_weight(Path(self.ctx.version_dir).parent.parent, self.ctx.version)
        # the queries' default weight (like fusion's `text_weight`); the catalog always uses N's
        self.query_weight = float(self.ctx.parameter("query_text_weight", str(self.text_weight)))
        register_generation(self.url, self.ctx.version, self.text_weight)
        self.shops: dict = {}
        self.metrics = ScorerMetrics(self.ctx, args.get("model_instance_name", self.ctx.name), self.shops)
        self.follower(DEFAULT_SHOP)  # load the default shop now, not on the first query

    def make_index(self) -> LiveIndex:
        return LiveIndex(self.ctx.device, self.threads, self.method, self.exact_max, self.spec, self.nprobe,
                         text_weight=self.text_weight, log=print)

    def follower(self, shop: str) -> ShopFollower | MilvusShopSearch:
        """The shop's searcher: a follower of the embedded store, or a Milvus search in place."""
        if shop not in self.shops:
            store = open_store(self.url, shop, create=shop == DEFAULT_SHOP)
            if store.searched_in_place:
                from productsearch.catalog.milvus.search import MilvusShopSearch

                self.shops[shop] = MilvusShopSearch(store, self.ctx.version, self.text_weight)
            else:
                self.shops[shop] = ShopFollower(store, self.ctx.version, self.make_index)
        return self.shops[shop]

    def parse(self, request) -> list[RowQuery]:
        return parse_rows(request, self.query_weight)

    def compute(self, rows: list[RowQuery]) -> list[tuple[np.ndarray, np.ndarray]]:
        """In-process ranking (tests, benchmarks): (slots, scores) per row, rows of one shop."""
        with self.follower(rows[0].shop).searching(rows, 0, self.wait_s, self.exact_filter_max) as (_, results):
            pass
        for result in results:
            if isinstance(result, QueryError):
                raise RequestError(str(result))
        return results

    def compute_ranked(self, rows: list[RowQuery]) -> list:
        """In-process ranking on either store (tests, benchmarks): a Ranked per row, with `ids`."""
        with self.follower(rows[0].shop).searching(rows, 0, self.wait_s, self.exact_filter_max) as (index, results):
            for result in results:
                if isinstance(result, QueryError):
                    raise RequestError(str(result))
                result.ids = [index.ids[s].decode() for s in result.slots.tolist()]
            return results

    def compute_ids(self, rows: list[RowQuery]) -> list[tuple[list[str], np.ndarray]]:
        return [(r.ids, r.scores) for r in self.compute_ranked(rows)]

    def index(self, shop: str = DEFAULT_SHOP) -> LiveIndex:
        return self.follower(shop).catch_up()

    def execute(self, requests):
        """Requests grouped by shop; per shop: catch up (and wait for MIN_SEQUENCE), then one
        ranking over all its rows. A bad request fails alone."""
        parsed: list = []
        for request in requests:
            try:
                parsed.append(self.gate.search_rows(request, parse_rows(request, self.query_weight)))
            except RequestError as err:
                parsed.append(err)
            except Exception as err:  # noqa: BLE001 - isolate a bug to its own request
                parsed.append(RuntimeError(f"could not read the request: {type(err).__name__}: {err}"))
        responses: list = [None] * len(requests)
        for i, item in enumerate(parsed):
            if isinstance(item, Exception):
                responses[i] = error_response(item)
                self.metrics.refused(None, "key" if isinstance(item, Refused) else
                                     "bad_input" if isinstance(item, RequestError) else "internal")
        shops = sorted({row.shop for item in parsed if not isinstance(item, Exception) for row in item})
        for shop in shops:
            members = [i for i, item in enumerate(parsed) if not isinstance(item, Exception) and item[0].shop == shop]
            self.rank_shop(shop, members, parsed, responses)
        return responses

    def rank_shop(self, shop: str, members: list[int], parsed: list, responses: list) -> None:
        with self.metrics.batch(shop) as batch:
            self._rank_shop(shop, members, parsed, responses, batch)

    def _rank_shop(self, shop: str, members: list[int], parsed: list, responses: list, batch) -> None:
        try:
            searcher = self.follower(shop)
            dim = searcher.dim
        except Exception as err:  # noqa: BLE001 - an unknown shop, an unreadable store
            for i in members:
                responses[i] = error_response(RequestError(str(err)))
                batch.refused("bad_input")
            return
        for i in members:
            dims = {r.query.shape[0] for r in parsed[i] if r.query is not None}
            if dim is not None and dims and dims != {dim}:
                responses[i] = error_response(RequestError(f"QUERY_EMBEDDING has dim {dims.pop()}, the catalog has {dim}"))
                batch.refused("bad_input")
        members = [i for i in members if responses[i] is None]
        if not members:
            return
        rows = [row for i in members for row in parsed[i]]
        try:
            with searcher.searching(rows, max(r.min_sequence for r in rows), self.wait_s, self.exact_filter_max,
                                    batch.clock) as (index, results):
                start = 0
                for i in members:
                    mine = results[start:start + len(parsed[i])]
                    start += len(parsed[i])
                    failed = next((r for r in mine if isinstance(r, QueryError)), None)
                    if failed:
                        responses[i] = error_response(RequestError(str(failed)))
                        batch.refused("bad_input")
                    else:
                        responses[i] = self.respond(index, mine)
                        batch.answered(parsed[i], mine)
        except Lagging as err:
            for i in members:
                responses[i] = unavailable(str(err))
                batch.refused("catalog_lag")
        except Exception as err:  # noqa: BLE001 - the store failed (Milvus down): these fail, the server lives on
            for i in members:
                if responses[i] is None:
                    responses[i] = unavailable(f"the catalog store did not answer: {type(err).__name__}: {err}")
                    batch.refused("store_unavailable")

    def respond(self, index: LiveIndex, results: list):
        width = max(len(r.slots) for r in results)
        ids = np.full((len(results), width), b"", dtype=object)
        titles = np.full((len(results), width), b"", dtype=object)
        scores = np.full((len(results), width), np.nan, dtype=np.float32)
        notes = np.full((len(results), width), b"", dtype=object)
        facets = np.array([[json.dumps(r.facets or {}, ensure_ascii=False).encode()] for r in results], dtype=object)
        for row, ranked in enumerate(results):
            slots = ranked.slots.tolist()
            ids[row, : len(slots)] = [index.ids[s] for s in slots]
            titles[row, : len(slots)] = [index.titles[s] for s in slots]
            scores[row, : len(slots)] = ranked.scores
            notes[row, : len(ranked.explanations)] = [n.encode() for n in ranked.explanations]
        return response(PRODUCT_IDS=ids, TITLES=titles, SCORES=scores,
                        GENERATION=np.repeat(self.generation[None], len(results), axis=0),
                        CATALOG_SEQUENCE=np.full((len(results), 1), index.applied, dtype=np.int64),
                        FACET_COUNTS=facets, EXPLANATIONS=notes)

    def finalize(self) -> None:
        self.metrics.close()
        self.gate.close()
        for follower in self.shops.values():
            follower.close()


def error_response(err: Exception):
    """INVALID_ARGUMENT for the client's mistakes, INTERNAL for ours."""
    return invalid(str(err)) if isinstance(err, RequestError) else internal(str(err))
