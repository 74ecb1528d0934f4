"""suggest: completions of what a shopper has typed, from the shop's own catalog
(catalog/ranking/suggestions.py reads the FTS5 vocabulary and, for phrases over several words,
the names of a few products the lexical index matches, so a product written is suggestable in the
very next call: the index is kept in each write's transaction) and from the shop's popular
queries that returned results (catalog/ranking/popular_queries.py, recounted in the background by
runtime/popular_refresh.py; mixed as suggestions.py's `mix` says: popular first, half the places
kept for the catalog). On Milvus the same code reads the shop's words snapshot instead
(catalog/milvus/words.py: its products' texts in an in-memory catalog of the embedded store's
schema, rebuilt in the background every `words_refresh_s`), so a product written there is
suggestable within that interval; the popular queries come from the search log as on the
embedded store (the scorer writes it under the key folder, catalog/events.py events_path).

Rows: PREFIX (BYTES, UTF-8, 1..MAX_PREFIX_BYTES); optional SHOP (default "default"), TOP_K
(INT32, 1..MAX_SUGGESTIONS, default 10). Authorised like `search`: a search key of the shop (a
public shop, the default, needs none). Every row of every request of one execute() is answered in
one read transaction per shop. A bad request gets INVALID_ARGUMENT naming its problem; the
others go on.

Parameters: catalog (store URL; PRODUCTSEARCH_CATALOG wins); popular_queries (on | off, default
on), popular_refresh_s (60), popular_window_days (30), popular_min_searchers (2: distinct USERs,
each search without a USER counting as one); words_refresh_s (Milvus only: 60). A store that
fails (Milvus unreachable) answers its shop's rows UNAVAILABLE.
"""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import numpy as np

from productsearch.catalog.milvus.words import REFRESH_S as WORDS_REFRESH_S
from productsearch.catalog.milvus.words import no_words, read_words
from productsearch.catalog.ranking.popular_queries import PopularQueries
from productsearch.catalog.ranking.suggestions import mix, suggest
from productsearch.catalog.records import RecordError
from productsearch.catalog.refreshed import RefreshedByKey
from productsearch.catalog.rows import DEFAULT_SHOP, UnknownShop, check_shop
from productsearch.catalog.store import catalog_url, is_milvus, open_store
from productsearch.runtime.authorize import Gatekeeper, Refused
from productsearch.runtime.model_io import ModelContext, RequestError, input_array, invalid, response, unavailable
from productsearch.runtime.popular_refresh import MIN_SEARCHERS, REFRESH_S, WINDOW_DAYS, PopularRefresher

MAX_PREFIX_BYTES = 256
MAX_SUGGESTIONS = 100
DEFAULT_TOP_K = 10


def text_of(raw, name: str, limit: int) -> str:
    raw = raw if isinstance(raw, bytes) else bytes(raw)
    if len(raw) > limit:
        raise RequestError(f"{name} is at most {limit} bytes, got {len(raw)}")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise RequestError(f"{name} must be UTF-8 text") from None


class SuggestModel:
    def initialize(self, args: dict) -> None:
        self.ctx = ModelContext.from_args(args)
        self.repository = Path(self.ctx.version_dir).parent.parent
        self.url = catalog_url(self.repository, self.ctx.parameter("catalog", "") or None)
        self.gate = Gatekeeper(self.url, self.repository)
        self.stores: dict = {}
        # Milvus: the shop's words snapshot (catalog/milvus/words.py) stands in for the store's FTS5 index
        self.words = RefreshedByKey(lambda shop: read_words(self.store(shop)),
                                    float(self.ctx.parameter("words_refresh_s", str(WORDS_REFRESH_S))), no_words(),
                                    "suggest: words") if is_milvus(self.url) else None
        self.popular = None if self.ctx.parameter("popular_queries", "on") == "off" else \
            PopularRefresher(self.url, self.repository, float(self.ctx.parameter("popular_refresh_s", str(REFRESH_S))),
                             float(self.ctx.parameter("popular_window_days", str(WINDOW_DAYS))),
                             int(self.ctx.parameter("popular_min_searchers", str(MIN_SEARCHERS))))

    def parse(self, request) -> list[tuple[str, str, int]]:
        """(shop, prefix, top_k) per row; raises RequestError (Refused included)."""
        prefixes = input_array(request, "PREFIX")
        if prefixes is None:
            raise RequestError("missing input PREFIX")
        prefixes = prefixes.reshape(-1)
        shops, ks = input_array(request, "SHOP"), input_array(request, "TOP_K")
        rows = len(prefixes)
        for name, values in (("SHOP", shops), ("TOP_K", ks)):
            if values is not None and values.size != rows:
                raise RequestError(f"{name} needs one value per row ({rows}), got {values.size}")
        principal = self.gate.principal(request)
        parsed = []
        for i in range(rows):
            prefix = text_of(prefixes[i], "PREFIX", MAX_PREFIX_BYTES)
            if not prefix.strip():
                raise RequestError("PREFIX is empty")
            shop = check_shop(text_of(shops.reshape(-1)[i], "SHOP", 128).strip() or DEFAULT_SHOP) if shops is not None \
                else DEFAULT_SHOP
            k = int(ks.reshape(-1)[i]) if ks is not None else DEFAULT_TOP_K
            if not 1 <= k <= MAX_SUGGESTIONS:
                raise RequestError(f"TOP_K must be between 1 and {MAX_SUGGESTIONS}, got {k}")
            self.gate.allow(principal, shop, "search")
            parsed.append((shop, prefix, k))
        return parsed

    def store(self, shop: str):
        if shop not in self.stores:
            self.stores[shop] = open_store(self.url, shop, create=shop == DEFAULT_SHOP)
        return self.stores[shop]

    def execute(self, requests):
        parsed = []
        for request in requests:
            try:
                parsed.append(self.parse(request))
            except (RequestError, RecordError) as err:
                parsed.append(err)
            except Exception as err:  # noqa: BLE001 - isolate a bug to its own request
                parsed.append(RequestError(f"could not read the request: {type(err).__name__}: {err}"))
        answers, failed = self.answer(sorted({row for item in parsed if not isinstance(item, Exception) for row in item}))
        return [self.respond(item, answers, failed) for item in parsed]

    def answer(self, wanted: list[tuple[str, str, int]]) -> tuple[dict[tuple[str, str, int], list], dict[str, str]]:
        """({(shop, prefix, top_k): [(suggestion, count)]}, {shop: why it failed}) for checked rows."""
        answers: dict[tuple[str, str, int], list] = {}
        failed: dict[str, str] = {}
        for shop in sorted({shop for shop, _, _ in wanted}):
            try:
                store = self.store(shop)  # an unknown shop stops here: no search log is opened for it
                popular = self.popular.of(shop) if self.popular is not None else PopularQueries()
                with self.catalog_db(shop, store) as db:  # one snapshot for the shop's rows
                    for _, prefix, k in (r for r in wanted if r[0] == shop):
                        answers[(shop, prefix, k)] = mix(popular.complete(prefix, k), suggest(db, prefix, 2 * k), k)
            except UnknownShop as err:
                failed[shop] = f"NOT_FOUND: {err}"
            except Exception as err:  # noqa: BLE001 - a store down (Milvus unreachable) fails its shop's rows only
                failed[shop] = f"UNAVAILABLE: suggestions of shop {shop!r}: {type(err).__name__}: {err}"
        return answers, failed

    @contextmanager
    def catalog_db(self, shop: str, store):
        """What the shop's completions read: one read transaction of the embedded store, or on
        Milvus the shop's last words snapshot."""
        if self.words is not None:
            yield self.words.read(shop).db
            return
        with store.transaction(write=False) as db:
            yield db

    @staticmethod
    def respond(item, answers: dict, failed: dict):
        if isinstance(item, Exception):
            return invalid(str(item))
        problems = [failed[shop] for shop, _, _ in item if shop in failed]
        if problems:
            return unavailable(problems[0]) if problems[0].startswith("UNAVAILABLE") else invalid(problems[0])
        found = [answers[row] for row in item]
        width = max(1, max(len(f) for f in found))
        texts = np.full((len(found), width), b"", dtype=object)
        counts = np.zeros((len(found), width), dtype=np.int64)
        for i, row in enumerate(found):
            for j, (text, count) in enumerate(row):
                texts[i, j], counts[i, j] = text.encode(), count
        return response(SUGGESTIONS=texts, SUGGESTION_COUNTS=counts)

    def finalize(self) -> None:
        if self.popular is not None:
            self.popular.close()
        if self.words is not None:
            self.words.close()
        self.gate.close()
        for store in self.stores.values():
            store.close()
