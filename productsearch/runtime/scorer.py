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
`torch_threads`, `query_text_weight`, `max_shops`, `shop_idle_s` (runtime/shop_searchers.py),
`max_facet_values` (values per facet field, the most frequent; default 100), `words_refresh_s`
(Milvus: how often "did you mean"'s words snapshot is rebuilt, catalog/milvus/words.py; 60). The catalog is fused with generation N's text weight (runtime/generation_settings.py).

Inputs per query row (see the README's contract): QUERY_EMBEDDING, or the encoders' TEXT_EMBEDDING,
TEXT_PRESENT, IMAGE_EMBEDDING, IMAGE_PRESENT (+ TEXT_WEIGHT), fused here as `fusion` does (the
`search` ensemble: one python step less per query; default weight: parameter `query_text_weight`,
else generation N's), or SEED_IDS (+ SEED_WEIGHTS:
"more like this", "for this shopper"; seeds are excluded, unknown ids refused, default recency
weights 0.8**i); TOP_K; optional OFFSET (pages, OFFSET + TOP_K <= 10,000), CATEGORIES (any of),
PRICE_MIN / PRICE_MAX (inclusive), EXCLUDE_IDS, SHOP (default "default"; each row is answered
from its own shop), MIN_SEQUENCE (answer only once the catalog has applied that sequence, waiting
at most `min_sequence_wait_s`, then UNAVAILABLE naming the lag; a sequence beyond the store's own
head is INVALID_ARGUMENT at once, so it never holds its batch-mates); relevance (runtime/relevance_inputs.py, catalog/ranking/relevance.py):
QUERY_TEXT, LEXICAL_WEIGHT, HYBRID_MODE, BOOSTS, IN_STOCK, MAX_PER_GROUP, GROUP_BY, FACETS,
EXPLAIN. Outputs: PRODUCT_IDS, TITLES, SCORES (padded with "" / NaN where a row has fewer results
than others of its request), GENERATION (the model version: the generation), CATALOG_SEQUENCE
(the catalog sequence the answer reflects), FACET_COUNTS (JSON), EXPLANATIONS (JSON per result),
CORRECTED_QUERY (the query with the words the shop's catalog lacks corrected to close ones it has,
searched instead when none of its words is known; "" when none: catalog/ranking/spelling.py).
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from productsearch.catalog.index.ann import DEFAULT_NPROBE, EXACT_MAX_PRODUCTS, IndexSpec
from productsearch.catalog.index.follower import Lagging, ShopFollower
from productsearch.catalog.ranking.event_popularity import ShopPopularity
from productsearch.catalog.index.live import LiveIndex
from productsearch.catalog.ranking.batch import EXACT_FILTER_MAX, QueryError, RowQuery
from productsearch.catalog.ranking.relevance import top_facet_values
from productsearch.catalog.store import catalog_url, open_store, register_generation
from productsearch.catalog.rows import DEFAULT_SHOP
from productsearch.core.limits import MAX_FACET_VALUES
from productsearch.runtime.arm_router import ArmRouter
from productsearch.runtime.authorize import Gatekeeper, Refused
from productsearch.runtime.generation_settings import generation_text_weight
from productsearch.runtime.model_io import (ModelContext, RequestError, configured_threads, internal, invalid,
                                            response, unavailable)
from productsearch.runtime.scorer_inputs import parse_rows
from productsearch.runtime.search_log import FLUSH_S, SearchLog, search_row
from productsearch.runtime.shadow import SHADOW_QUEUE, SHADOW_THREADS, ShadowSender
from productsearch.catalog.events import RETENTION_DAYS, events_path
from productsearch.catalog.query_ids import new_query_id
from productsearch.runtime.scorer_metrics import ScorerMetrics
from productsearch.runtime.shop_searchers import MAX_SHOPS, SHOP_IDLE_S, ShopSearchers

if TYPE_CHECKING:
    from productsearch.catalog.milvus.search import MilvusShopSearch

MIN_SEQUENCE_WAIT_S = 2.0


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
        self.max_facet_values = int(self.ctx.parameter("max_facet_values", str(MAX_FACET_VALUES)))
        self.url = catalog_url(Path(self.ctx.version_dir).parent.parent, self.ctx.parameter("catalog", "") or None)
        self.gate = Gatekeeper(self.url, Path(self.ctx.version_dir).parent.parent)
        self.generation = np.array([self.ctx.version], dtype=np.int64)
        self.text_weight = generation_text_weight(Path(self.ctx.version_dir).parent.parent, self.ctx.version)
        # the queries' default weight (like fusion's `text_weight`); the catalog always uses N's
        self.query_weight = float(self.ctx.parameter("query_text_weight", str(self.text_weight)))
        register_generation(self.url, self.ctx.version, self.text_weight)
        self.searchers = ShopSearchers(self.open_searcher, int(self.ctx.parameter("max_shops", str(MAX_SHOPS))),
                                       float(self.ctx.parameter("shop_idle_s", str(SHOP_IDLE_S))), DEFAULT_SHOP)
        self.shops = self.searchers.shops
        self.metrics = ScorerMetrics(self.ctx, self.shops)
        # experiments: treatment shoppers' requests passed on to the treatment generation (runtime/arm_router.py)
        self.router = ArmRouter(Path(self.ctx.version_dir).parent.parent, self.ctx.version,
                                [o["name"] for o in self.ctx.config.get("output", [])])
        self.search_log = SearchLog(self.url, Path(self.ctx.version_dir).parent.parent,
                                    float(self.ctx.parameter("search_log_flush_s", str(FLUSH_S))),
                                    float(self.ctx.parameter("retention_days", str(RETENTION_DAYS))),
                                    self.ctx.parameter("search_log", "on") != "off")
        # shadow experiments: each answered request repeated on generation N off the request path
        self.shadow = ShadowSender(self.search_log, int(self.ctx.parameter("shadow_queue", str(SHADOW_QUEUE))),
                                   self.metrics.metrics, threads=int(self.ctx.parameter("shadow_threads", str(SHADOW_THREADS))))
        self.follower(DEFAULT_SHOP)  # load the default shop now, not on the first query

    def make_index(self) -> LiveIndex:
        return LiveIndex(self.ctx.device, self.threads, self.method, self.exact_max, self.spec, self.nprobe,
                         text_weight=self.text_weight, log=print)

    def open_searcher(self, shop: str) -> ShopFollower | MilvusShopSearch:
        """The shop's searcher: a follower of the embedded store, or a Milvus search in place."""
        store = open_store(self.url, shop, create=shop == DEFAULT_SHOP)
        popularity = ShopPopularity(events_path(self.url, shop, Path(self.ctx.version_dir).parent.parent))
        if store.searched_in_place:
            from productsearch.catalog.milvus.search import MilvusShopSearch

            return MilvusShopSearch(store, self.ctx.version, self.text_weight, popularity=popularity,
                                    words_refresh_s=float(self.ctx.parameter("words_refresh_s", "60")))
        return ShopFollower(store, self.ctx.version, self.make_index, popularity=popularity)

    def follower(self, shop: str) -> ShopFollower | MilvusShopSearch:
        """The shop's searcher, kept while used (runtime/shop_searchers.py bounds how many)."""
        return self.searchers.get(shop)

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
                result.facets = top_facet_values(result.facets, self.max_facet_values)
            return results

    def compute_ids(self, rows: list[RowQuery]) -> list[tuple[list[str], np.ndarray]]:
        return [(r.ids, r.scores) for r in self.compute_ranked(rows)]

    def index(self, shop: str = DEFAULT_SHOP) -> LiveIndex:
        return self.follower(shop).catch_up()

    def execute(self, requests):
        """Rows grouped by their own shop (a request may hold rows of several); per shop: catch up
        (and wait for MIN_SEQUENCE), then one ranking over all its rows. A bad request fails alone;
        a request whose MIN_SEQUENCE is beyond its shop's catalog is refused at once, and one that
        must wait does not fail the others."""
        started = time.perf_counter()
        parsed: list = []
        for request in requests:
            try:
                parsed.append(self.gate.search_rows(request, parse_rows(request, self.query_weight)))
            except RequestError as err:
                parsed.append(err)
            except Exception as err:  # noqa: BLE001 - isolate a bug to its own request
                parsed.append(RuntimeError(f"could not read the request: {type(err).__name__}: {err}"))
        responses: list = [None] * len(requests)
        for i, item in enumerate(parsed):  # a treatment shopper's request: answered by the treatment generation
            target = None if isinstance(item, Exception) else self.router.treatment_generation(requests[i], item)
            if target is not None:
                responses[i], parsed[i] = self.router.forward(requests[i], target), []
        answers: list = [None if isinstance(item, Exception) else [None] * len(item) for item in parsed]
        for i, item in enumerate(parsed):
            if isinstance(item, Exception):
                responses[i] = error_response(item)
                self.metrics.refused(None, search_refusal_reason(item))
        shops = sorted({row.shop for item in parsed if not isinstance(item, Exception) for row in item})
        for shop in shops:
            cells = [(i, j) for i, item in enumerate(parsed) if not isinstance(item, Exception)
                     for j, row in enumerate(item) if row.shop == shop]
            with self.metrics.batch(shop) as batch:
                self.rank_shop(shop, cells, parsed, answers, responses, batch)
        for i, cells in enumerate(answers):
            if responses[i] is None:
                arm = self.router.answering_arm(requests[i])
                responses[i] = self.respond(cells, arm)
                self.log_searches(parsed[i], cells, started, arm, self.router.shadow_of(requests[i], len(cells)))
                shadow = self.router.shadow_generation(requests[i], parsed[i])
                if shadow is not None:  # a shadow experiment: N repeats it after this answer
                    self.shadow.offer(requests[i], shadow, parsed[i], [found.query_id for found in cells])
        return responses

    def log_searches(self, rows: list, cells: list[Answer], started: float, arm: str,
                     query_ids: list[str] | None = None) -> None:
        """The search log's rows of one answered request (a shadow answer's under M's ids + "/shadow")."""
        latency_ms = (time.perf_counter() - started) * 1000.0
        for j, (row, found) in enumerate(zip(rows, cells)):
            self.search_log.add(row.shop, search_row(row, query_ids[j] if query_ids else found.query_id, found.ids,
                                                     self.ctx.version, arm, latency_ms))

    def rank_shop(self, shop: str, cells: list[tuple[int, int]], parsed: list, answers: list, responses: list,
                  batch) -> None:
        """Rank the rows `cells` ((request, row) pairs) of one shop; a refusal fails its whole request."""
        def refuse(i: int, reply, reason: str) -> None:
            if responses[i] is None:
                responses[i] = reply
                batch.refused(reason)

        try:
            searcher = self.follower(shop)
            dim = searcher.dim
        except Exception as err:  # noqa: BLE001 - an unknown shop, an unreadable store
            for i in sorted({i for i, _ in cells}):
                refuse(i, error_response(RequestError(str(err))), "bad_input")
            return
        for i, j in cells:
            query = parsed[i][j].query
            if dim is not None and query is not None and query.shape[0] != dim:
                refuse(i, error_response(RequestError(f"QUERY_EMBEDDING has dim {query.shape[0]}, the catalog has {dim}")),
                       "bad_input")
        try:
            for i, j in cells:
                beyond = searcher.beyond(parsed[i][j].min_sequence, self.wait_s) if responses[i] is None else None
                if beyond:
                    refuse(i, error_response(RequestError(beyond)), "bad_input")
        except Exception as err:  # noqa: BLE001 - the store failed (Milvus down): these fail, the server lives on
            for i, _ in cells:
                refuse(i, unavailable(f"the catalog store did not answer: {type(err).__name__}: {err}"),
                       "store_unavailable")
            return
        cells = [(i, j) for i, j in cells if responses[i] is None]
        if not cells:
            return
        rows = [parsed[i][j] for i, j in cells]
        try:
            with searcher.searching(rows, max(r.min_sequence for r in rows), self.wait_s, self.exact_filter_max,
                                    batch.clock) as (index, results):
                for (i, j), ranked in zip(cells, results):
                    if isinstance(ranked, QueryError):
                        refuse(i, error_response(RequestError(str(ranked))), "bad_input")
                    elif responses[i] is None:
                        answers[i][j] = answer(index, ranked, self.max_facet_values, new_query_id(shop))
                        batch.answered([parsed[i][j]], [ranked])
        except Lagging as err:
            for i, _ in cells:
                refuse(i, unavailable(str(err)), "catalog_lag")
        except Exception as err:  # noqa: BLE001 - the store failed (Milvus down): these fail, the server lives on
            for i, _ in cells:
                refuse(i, unavailable(f"the catalog store did not answer: {type(err).__name__}: {err}"),
                       "store_unavailable")

    def respond(self, rows: list[Answer], arm: str = "control"):
        width = max(len(r.ids) for r in rows)
        ids = np.full((len(rows), width), b"", dtype=object)
        titles = np.full((len(rows), width), b"", dtype=object)
        scores = np.full((len(rows), width), np.nan, dtype=np.float32)
        notes = np.full((len(rows), width), b"", dtype=object)
        facets = np.array([[json.dumps(r.facets or {}, ensure_ascii=False).encode()] for r in rows], dtype=object)
        for row, found in enumerate(rows):
            ids[row, : len(found.ids)] = found.ids
            titles[row, : len(found.titles)] = found.titles
            scores[row, : len(found.scores)] = found.scores
            notes[row, : len(found.explanations)] = [n.encode() for n in found.explanations]
        return response(PRODUCT_IDS=ids, TITLES=titles, SCORES=scores,
                        GENERATION=np.repeat(self.generation[None], len(rows), axis=0),
                        CATALOG_SEQUENCE=np.array([[r.applied] for r in rows], dtype=np.int64),
                        FACET_COUNTS=facets, EXPLANATIONS=notes,
                        QUERY_ID=np.array([[r.query_id.encode()] for r in rows], dtype=object),
                        ARM=np.array([[arm.encode()]] * len(rows), dtype=object),
                        CORRECTED_QUERY=np.array([[r.corrected.encode()] for r in rows], dtype=object))

    def finalize(self) -> None:
        self.shadow.close()  # first: what it could not send goes to the search log
        self.search_log.close()
        self.metrics.close()
        self.gate.close()
        self.searchers.close()


@dataclass
class Answer:
    """One row's answer, read off its shop's index while that is locked."""

    ids: list[bytes]
    titles: list[bytes]
    scores: np.ndarray
    explanations: list[str]
    facets: dict | None
    applied: int  # the catalog sequence the answer reflects
    query_id: str  # QUERY_ID: what record_events refers to (catalog/query_ids.py)
    corrected: str = ""  # CORRECTED_QUERY: "did you mean" (catalog/ranking/spelling.py), "" when none


def answer(index: LiveIndex, ranked, max_facet_values: int, query_id: str) -> Answer:
    slots = ranked.slots.tolist()
    return Answer([index.ids[s] for s in slots], [index.titles[s] for s in slots], ranked.scores,
                  list(ranked.explanations), top_facet_values(ranked.facets, max_facet_values), index.applied,
                  query_id, ranked.corrected)


def search_refusal_reason(err: Exception) -> str:
    """The `reason` label of a search refused before ranking: a key that may not search
    (`key`: none, unknown, revoked, expired, another shop's, wrong scope), its rate limit
    (`rate_limit`), the client's input (`bad_input`), or ours (`internal`)."""
    if isinstance(err, Refused):
        return "rate_limit" if err.reason == "rate_limited" else "key"
    return "bad_input" if isinstance(err, RequestError) else "internal"


def error_response(err: Exception):
    """INVALID_ARGUMENT for the client's mistakes, INTERNAL for ours."""
    return invalid(str(err)) if isinstance(err, RequestError) else internal(str(err))
