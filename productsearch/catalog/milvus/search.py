"""Searching a shop's catalog in Milvus, in place: the scorer's counterpart of follower.ShopFollower
for the Milvus store. No replica holds the catalog; each batch of queries asks Milvus for its
candidates and ranks them with the same code as the embedded path (catalog/ranking/batch.py,
catalog/ranking/relevance.py), so both stores give the same answers where Milvus searches exactly (FLAT).

Per batch: the seeds of "more like this" rows are fetched by id; each row's filter (shop,
categories, price, stock, exclusions) becomes a Milvus boolean expression, so filtering happens
before ranking inside Milvus (rows with one filter and depth share one search call); rows with
relevance options also get the shop's lexical top LEXICAL_DEPTH (BM25 in Milvus) and pinned
products. These candidates - at most a few hundred rows per query, with their vectors and
fields - become a small LiveIndex, and `rank` orders them exactly. Facet counts cannot come from
candidates: they are counted over everything that passes the row's filter (a Milvus query).
On an IVF index, nprobe is scaled by 1 / (the filter's share of the shop), as the embedded IVF
path widens its scan, so a selective filter still finds its k products.
"Did you mean" and the hybrid weight per query read the shop's words from a snapshot rebuilt
every `words_refresh_s` (catalog/milvus/words.py): the candidates hold no term statistics of the
shop's whole catalog, the snapshot does (a word only a product written since holds is known,
never corrected, and weighs as the snapshot's words do once the next snapshot holds it).
"""
from __future__ import annotations

import json
import math
import time
from contextlib import contextmanager

import numpy as np

from productsearch.catalog.index.follower import Lagging
from productsearch.catalog.index.live import LiveIndex
from productsearch.catalog.ranking.merchandising import applicable, normalized_query
from productsearch.catalog.ranking.synonyms import lexical_query
from productsearch.catalog.milvus.schema import OUTPUT_FIELDS, number_column, term_column
from productsearch.catalog.milvus.store import MilvusCatalog, stamp
from productsearch.catalog.milvus.words import REFRESH_S, CatalogWords, read_words, words_profile
from productsearch.catalog.ranking.event_popularity import event_popularity
from productsearch.catalog.ranking.batch import QueryError, RowQuery, did_you_mean, rank, seed_query
from productsearch.catalog.refreshed import Refreshed
from productsearch.catalog.records import TERM_FIELDS
from productsearch.catalog.ranking.relevance import LEXICAL_DEPTH, PRICE_EDGES, depth_for
from productsearch.catalog.rows import ChangeSet, ProductRow

MAX_MILVUS_LIMIT = 16_384  # Milvus's topk limit
BASE_NPROBE = 16


def literal(value) -> str:
    return json.dumps(value, ensure_ascii=False)


def row_of(entity: dict) -> ProductRow:
    """A candidate as the live index takes it: its fused vector stands in for the text vector."""
    return ProductRow(entity["id"], entity["title"], entity["fields"], np.asarray(entity["vector"], np.float32), None,
                      float(entity["updated_at"]))


def searched_correction(text: str, profile, vocabulary, synonyms: list[dict] | None) -> str:
    """The correction rank() will search in place of `text` (none of its words known), or "": its
    lexical hits are fetched with the others (read before negations: a negated query's correction
    gets the vectors' candidates only)."""
    notes: dict = {}
    fixed = did_you_mean(text, text, profile, vocabulary, synonyms or [], notes)[1] if text.strip() else ""
    return fixed if notes.get("corrected", {}).get("searched") else ""


class MilvusShopSearch:
    """One shop x one generation, searched in Milvus."""

    in_place = True

    def __init__(self, store: MilvusCatalog, generation: int, text_weight: float, log=print, poll_s: float = 0.01,
                 popularity=None, words_refresh_s: float = REFRESH_S):
        self.store, self.generation, self.text_weight, self.log, self.poll_s = store, generation, text_weight, log, poll_s
        self.popularity = popularity  # the shop's ShopPopularity, as ShopFollower's
        self.collection = store.url.collection(generation)
        # "did you mean" reads the shop's words from a snapshot (catalog/milvus/words.py)
        self.words: Refreshed[CatalogWords | None] = Refreshed(lambda: read_words(store, self.collection), words_refresh_s,
                                                               None, f"words of shop {store.shop!r}", log)
        self.ivf = store.url.index.startswith("IVF")
        self._dim: int | None = None

    @property
    def dim(self) -> int | None:
        if self._dim is None:
            self._dim = self.store.dim(self.generation)
        return self._dim

    def wait_for(self, sequence: int, timeout_s: float) -> int:
        """The catalog sequence of an answer started now, once it is at least `sequence`."""
        deadline = time.monotonic() + timeout_s
        now = stamp()
        while now < sequence:
            if time.monotonic() >= deadline:
                raise Lagging(f"the catalog of shop {self.store.shop!r} is at sequence {now}, the request asked for "
                              f"MIN_SEQUENCE {sequence} (from a clock {(sequence - now) / 1e6:.3f} s ahead); retry")
            time.sleep(min(self.poll_s, (sequence - now) / 1e6))
            now = stamp()
        return now

    def beyond(self, sequence: int, wait_s: float) -> str | None:
        """Why `sequence` cannot be reached within `wait_s` (Milvus sequences are write times in
        microseconds: one further ahead than the wait came from no write), or None."""
        now = stamp()
        if sequence <= now + wait_s * 1e6:
            return None
        return (f"MIN_SEQUENCE {sequence} is beyond the catalog of shop {self.store.shop!r} (its sequences are write "
                f"times in microseconds, now {now}): send a SEQUENCE a write returned")

    # ------------------------------------------------------------------ candidates

    def expression(self, row: RowQuery, excluded: list[str]) -> str:
        parts = [f"shop == {literal(self.store.shop)}"]
        if row.categories is not None:
            parts.append(f"{term_column('category')} in {literal(row.categories)}")
        if row.price_min is not None:
            parts.append(f"{number_column('price')} >= {row.price_min!r}")
        if row.price_max is not None:
            parts.append(f"{number_column('price')} <= {row.price_max!r}")
        if row.in_stock:
            parts.append(f"{number_column('stock')} > 0")
        if excluded:
            parts.append(f"id not in {literal(sorted(set(excluded)))}")
        return " and ".join(parts)

    def fetch(self, ids: list[str], have: dict[str, ProductRow]) -> None:
        wanted = [pid for pid in dict.fromkeys(ids) if pid not in have]
        for start in range(0, len(wanted), 500):
            chunk = [f"{self.store.shop}/{pid}" for pid in wanted[start:start + 500]]
            for entity in self.store.client.get(self.collection, ids=chunk, output_fields=OUTPUT_FIELDS):
                have[entity["id"]] = row_of(entity)

    def count(self, expression: str) -> int:
        rows = self.store.client.query(self.collection, filter=expression, output_fields=["count(*)"])
        return int(rows[0]["count(*)"])

    def search_params(self, expression: str, filtered: bool, total: int, limit: int) -> dict:
        """The index's search breadth: nprobe (IVF, scaled by the filter's share), ef (HNSW),
        search_list (DISKANN), each at least the depth asked for."""
        kind = self.store.url.index
        if kind == "HNSW":
            return {"params": {"ef": max(64, limit)}}
        if kind == "DISKANN":
            return {"params": {"search_list": max(100, limit)}}
        if not self.ivf:
            return {}
        nprobe = BASE_NPROBE
        if filtered and total:
            share = max(self.count(expression), 1) / total
            nprobe = int(min(self.store.url.nlist, math.ceil(BASE_NPROBE / share)))
        return {"params": {"nprobe": nprobe}}

    def dense(self, groups: dict[tuple[str, int, bool], list[np.ndarray]], have: dict[str, ProductRow]) -> None:
        total = self.count(f"shop == {literal(self.store.shop)}") if self.ivf else 0
        for (expression, limit, filtered), vectors in groups.items():
            hits = self.store.client.search(self.collection, [v.tolist() for v in vectors], limit=limit, filter=expression,
                                            output_fields=OUTPUT_FIELDS, search_params=self.search_params(expression, filtered, total, limit))
            for per_query in hits:
                for hit in per_query:
                    if hit["entity"]["id"] not in have:
                        have[hit["entity"]["id"]] = row_of(hit["entity"])

    def known_categories(self, names: list[str]) -> list[str]:
        return [n for n in names if self.store.client.query(self.collection, limit=1, output_fields=["id"],
                filter=f"shop == {literal(self.store.shop)} and {term_column('category')} == {literal(n)}")]

    # ------------------------------------------------------------------ ranking

    @contextmanager
    def searching(self, rows: list[RowQuery], min_sequence: int, wait_s: float, exact_filter_max: int, clock=None):
        """(the candidates' LiveIndex, a Ranked or QueryError per row), as ShopFollower.searching
        (`clock` is not used: Milvus does the filtering and the vector search)."""
        sequence = self.wait_for(min_sequence, wait_s)
        yield self.search(rows, sequence, exact_filter_max, self.store.rules(), self.store.synonyms())

    def search(self, rows: list[RowQuery], sequence: int, exact_filter_max: int, rules: list[dict],
               synonyms: list[dict] | None = None):
        index = LiveIndex(text_weight=self.text_weight, prefused=True)
        index.applied = sequence
        if self.dim is None:  # nothing written for this generation yet
            return index, rank(index, rows, self.generation)
        have: dict[str, ProductRow] = {}
        self.fetch([pid for row in rows for pid in row.seed_ids], have)
        seeds = LiveIndex(text_weight=self.text_weight, prefused=True)
        seeds.apply(ChangeSet(sequence, list(have.values())))
        groups: dict[tuple[str, int, bool], list[np.ndarray]] = {}
        lexical_hits: dict[str, list[tuple[str, float]]] = {}
        words = self.words.read() if any(row.relevance.text.strip() for row in rows) else None
        profile = words_profile(words, self.store, self.collection) if words is not None else None
        vocabulary = (lambda: words.vocabulary) if words is not None else None
        wanted: list[str] = []
        categories: set[str] = set()
        for row in rows:
            try:
                query = row.query if row.query is not None else seed_query(seeds, row, self.generation)[0]
            except QueryError:
                continue  # rank() reports it
            reranked = row.relevance.active(bool(rules))
            limit = min(depth_for(row.offset, row.k) if reranked else row.offset + row.k, MAX_MILVUS_LIMIT)
            key = (self.expression(row, row.exclude_ids + row.seed_ids), limit, row.filtered)
            groups.setdefault(key, []).append(np.asarray(query, np.float32))
            texts = [lexical_query(synonyms, row.relevance.text)]  # as rank() reads it (without negations)
            fixed = searched_correction(row.relevance.text, profile, vocabulary, synonyms) if profile else ""
            texts += [lexical_query(synonyms, fixed)] if fixed else []  # what rank() searches instead
            for text in texts:
                if reranked and row.relevance.lexical and text not in lexical_hits:
                    lexical_hits[text] = self.store.lexical(text, LEXICAL_DEPTH, self.generation)
                    wanted += [pid for pid, _ in lexical_hits[text]]
            if reranked and rules:
                wanted += [pid for pid, _ in applicable(rules, normalized_query(row.relevance.text))[1]]
            categories.update(row.categories or [])
        self.dense(groups, have)
        self.fetch(wanted, have)
        # slots in id order: ties are broken by id, as on the embedded path (loaded in id order)
        index.apply(ChangeSet(sequence, sorted(have.values(), key=lambda r: r.id)))
        column = index.terms["category"]
        asked = sorted(c for c in categories if c not in column.code_of)
        known = self.known_categories(asked)
        if len(known) < len(asked):  # an unknown category: rank() names the shop's categories in its error
            known = sorted({e[term_column("category")] for e in self.store._scan(self.collection, [term_column("category")])
                            if e[term_column("category")] is not None})
        for name in known:
            if name not in column.code_of:  # exists in the shop, just not among the candidates
                column.code_of[name] = len(column.names)
                column.names.append(name)
        results = rank(index, rows, self.generation, exact_filter_max,
                       lambda text, limit: lexical_hits.get(text, [])[:limit], rules, synonyms=synonyms,
                       popularity=event_popularity(self.popularity, self.store, rows), vocabulary=vocabulary,
                       profile=profile, catalog_size=words.products if words is not None else None)
        for row, result in zip(rows, results):
            if not isinstance(result, QueryError) and row.relevance.facets:
                result.facets = self.facets(self.expression(row, row.exclude_ids + row.seed_ids), row.relevance.facets)
        return index, results

    def close(self) -> None:
        """No thread follows Milvus; a words snapshot being rebuilt is waited for."""
        self.words.close()

    def facets(self, expression: str, names: list[str]) -> dict:
        """Exact counts per value over every product that passes the filter (as relevance.facet_counts)."""
        columns = {name: term_column(name) for name in names if name in TERM_FIELDS}
        if "price" in names:
            columns["price"] = number_column("price")
        if "in_stock" in names:
            columns["in_stock"] = number_column("stock")
        counts: dict[str, dict] = {name: {} for name in names}
        for entity in self.store._scan(self.collection, list(columns.values()), where=expression):
            for name, column in columns.items():
                value = entity.get(column)
                if name == "price":
                    if value is not None:
                        bucket = next((f"{lo:g}-{hi:g}" for lo, hi in zip(PRICE_EDGES, PRICE_EDGES[1:]) if lo <= value < hi),
                                      f"{PRICE_EDGES[-1]:g}+")
                        counts[name][bucket] = counts[name].get(bucket, 0) + 1
                elif name == "in_stock":
                    key = "unknown" if value is None else "in_stock" if value > 0 else "out_of_stock"
                    counts[name][key] = counts[name].get(key, 0) + 1
                elif value is not None:
                    counts[name][value] = counts[name].get(value, 0) + 1
        if "price" in counts:
            edges = list(PRICE_EDGES) + [math.inf]
            counts["price"] = {(f"{lo:g}-{hi:g}" if hi != math.inf else f"{lo:g}+"): counts["price"].get(
                f"{lo:g}-{hi:g}" if hi != math.inf else f"{lo:g}+", 0) for lo, hi in zip(edges[:-1], edges[1:])}
        if "in_stock" in counts:
            counts["in_stock"] = {k: counts["in_stock"].get(k, 0) for k in ("in_stock", "out_of_stock", "unknown")}
        return counts
