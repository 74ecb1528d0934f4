"""Ranking a batch of parsed queries against a live index: the products that pass each query's
filters, the query vector (given, or made from seed products), one batched search for the
unfiltered rows, an exact (or filtered IVF) search for the filtered ones.

Filters are applied BEFORE ranking (never "top-k, then filter", which returns too few): a
filtered query is scored exactly against the products that pass - except on the IVF path when
more than `exact_filter_max` pass: then the IVF scan itself skips the others (approximate, like
every IVF query). Results are ordered by score, then by slot, so pages of one query fit together.
A row with relevance options (lexical text, boosts, a group cap, explain) or merchandising rules
gets deeper vector candidates and is re-ranked by catalog/ranking/relevance.py; facets are counted over
the row's filter. Callers hold `index.lock`.
"""
from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass, field, replace

import numpy as np

from productsearch.catalog.index.ann import top_rows
from productsearch.catalog.index.live import LiveIndex
from productsearch.catalog.ranking import negation, query_weight, spelling
from productsearch.catalog.ranking import synonyms as shop_synonyms
from productsearch.catalog.ranking.relevance import LEXICAL_DEPTH, Relevance, depth_for, facet_counts, lexical_arrays, rerank

RECENCY_DECAY = 0.8
NEGATED_DEPTH = 10_000  # a negated word no closed value matches: its best lexical matches excluded
EXACT_FILTER_MAX = 50_000  # IVF path: more products than this pass a filter -> filtered IVF scan
NO_ROWS = np.zeros(0, dtype=np.int64)


class QueryError(ValueError):
    """The query names something this catalog does not have (a product id, a category)."""


@dataclass
class RowQuery:
    """One query row, parsed: what to rank and which products may appear."""

    query: np.ndarray | None  # fused query embedding; None: made from the seeds
    k: int
    offset: int = 0
    shop: str = "default"
    min_sequence: int = 0
    seed_ids: list[str] = field(default_factory=list)
    seed_weights: np.ndarray | None = None  # one per seed id; None: recency weights
    categories: list[str] | None = None  # any of
    price_min: float | None = None
    price_max: float | None = None
    exclude_ids: list[str] = field(default_factory=list)
    in_stock: bool | None = None  # True: products with stock > 0 only
    relevance: Relevance = field(default_factory=Relevance)
    excluded_values: dict = field(default_factory=dict)  # field -> closed values negated in the text
    kind: str = "embedding"  # text, image, text+image, embedding (fused by the caller) or recommend (metrics)
    user: str = ""  # the opaque shopper id sent as USER (the search log, experiment arms)

    @property
    def filtered(self) -> bool:
        return (self.categories is not None or self.price_min is not None or self.price_max is not None
                or bool(self.in_stock) or bool(self.excluded_values))


@dataclass
class Ranked:
    """One row's answer: slots and scores, best first; per-result explanations; facet counts."""

    slots: np.ndarray
    scores: np.ndarray
    explanations: list[str] = field(default_factory=list)
    facets: dict | None = None
    corrected: str = ""  # CORRECTED_QUERY: the query with its misspelt words corrected ("" when none)

    def __iter__(self):  # slots, scores = ranked
        return iter((self.slots, self.scores))


def empty() -> Ranked:
    return Ranked(NO_ROWS, np.zeros(0, np.float32))


def slots_of(index: LiveIndex, ids: list[str]) -> tuple[np.ndarray, list[str]]:
    """(slots of the known ids, in order; the unknown ids)."""
    known = [index.slot_of[i] for i in ids if i in index.slot_of]
    return np.array(known, dtype=np.int64), [i for i in ids if i not in index.slot_of]


def seed_query(index: LiveIndex, row: RowQuery, generation: int) -> tuple[np.ndarray, np.ndarray]:
    """(the normalized weighted sum of the seeds' own vectors, the seeds' slots)."""
    slots, unknown = slots_of(index, row.seed_ids)
    if unknown:
        shown = ", ".join(repr(u) for u in unknown[:10])
        raise QueryError(f"unknown product id(s) {shown}{' ...' if len(unknown) > 10 else ''} "
                         f"(not in the catalog of shop {row.shop!r}, generation {generation})")
    weights = RECENCY_DECAY ** np.arange(len(slots), dtype=np.float32) if row.seed_weights is None else row.seed_weights
    mean = (index.matrix[slots] * weights[:, None]).sum(axis=0)
    return mean / max(float(np.linalg.norm(mean)), 1e-12), slots


def category_codes(index: LiveIndex, names: list[str]) -> np.ndarray:
    codes, unknown = index.codes("category", names)
    if unknown:
        known = sorted(index.terms["category"].names)
        raise QueryError(f"unknown category {', '.join(map(repr, unknown))}; this catalog has: "
                         f"{', '.join(known[:50])}{' ...' if len(known) > 50 else ''}")
    return codes


def passing(index: LiveIndex, row: RowQuery, excluded: np.ndarray) -> np.ndarray:
    """A mask over the slots: the live products that pass the row's filters and are not excluded."""
    n = index.high_water
    mask = index.valid[:n].copy()
    if row.categories is not None:
        mask &= np.isin(index.terms["category"].codes[:n], category_codes(index, row.categories))
    price = index.numbers["price"][:n]
    if row.price_min is not None:
        mask &= price >= row.price_min  # NaN (no price) passes no price filter
    if row.price_max is not None:
        mask &= price <= row.price_max
    if row.in_stock:
        mask &= index.numbers["stock"][:n] > 0  # a product without a stock field is not in stock
    for name, values in row.excluded_values.items():
        mask &= ~np.isin(index.terms[name].codes[:n], index.codes(name, values)[0])
    mask[excluded] = False
    return mask


def read_query(index: LiveIndex, row: RowQuery, lexical, profile, synonyms: list[dict] | None = None,
               vocabulary=None, catalog_size: int | None = None) -> tuple[RowQuery, np.ndarray]:
    """The row with its text read (negations as exclusions, a spelling correction, the shop's
    synonyms on the lexical side, the hybrid weight for the query) and the slots its negated
    unknown words exclude. `catalog_size`: the shop's products, where `index` holds only candidates."""
    options = row.relevance
    text = options.text
    if not text.strip():
        return row, NO_ROWS
    synonyms = synonyms or []
    notes: dict = {}
    negated = negation.resolve(text, {f: index.terms[f].names for f in negation.NEGATABLE_FIELDS})
    lexically = NO_ROWS
    if negated.negated:
        notes["negation"] = negated.note()
        row = replace(row, excluded_values=negated.excluded)
        text = negated.positive
        if lexical and negated.lexical:
            words_hit = [pid for word in negated.lexical for pid, _ in lexical(word, NEGATED_DEPTH)]
            lexically = slots_of(index, words_hit)[0]
    corrected, fixed = "", ""
    if profile and vocabulary and text.strip():
        corrected, fixed = did_you_mean(options.text, text, profile, vocabulary, synonyms, notes)
        if notes.get("corrected", {}).get("searched"):
            text = fixed
    added = shop_synonyms.expansion(synonyms, text)
    searched = shop_synonyms.lexical_query(synonyms, text) if added else ""
    if added:
        notes["synonyms"] = {"added": added, "lexical_query": searched}
    weight = options.lexical_weight
    if weight is not None:
        notes["lexical_weight"], notes["weight_reason"] = weight, "LEXICAL_WEIGHT sent"
    elif options.lexical and text.strip():
        choices = [(query_weight.choose(profile(reading) if profile else None, catalog_size or len(index),
                                        query_weight.names_brand(index.terms["brand"], reading)), reading)
                   for reading in [text] + shop_synonyms.readings(synonyms, text) + ([fixed] if fixed != text else [])]
        (weight, why), reading = max(choices, key=lambda c: c[0][0])  # the most navigational reading
        notes["weight_reason"] = (why if reading == text else f"{why} (read as its correction {reading!r})"
                                  if reading == fixed else f"{why} (read through a synonym as {reading!r})")
        notes["lexical_weight"] = weight
    return replace(row, relevance=replace(options, text=text, lexical_weight=weight, notes=notes, searched=searched,
                                          corrected=corrected)), lexically


def did_you_mean(typed: str, text: str, profile, vocabulary, synonyms: list[dict], notes: dict) -> tuple[str, str]:
    """(CORRECTED_QUERY: the typed text with its unknown words corrected, or ""; the text corrected,
    or ""), offered only when some product holds every word of the correction (so "short-sleeved"
    is not "shirt-sleeve"). notes["corrected"]["searched"]: the correction is searched, as none of
    the text's words is in the catalog (else the text is searched as typed, its correction only
    weighs the hybrid)."""
    stats = profile(text)
    unknown = [w for w in stats["words"] if w not in stats["documents"]]
    if not unknown:
        return "", ""
    fixed, fixes = spelling.corrected(text, unknown, vocabulary(), shop_synonyms.covered_words(synonyms, text))
    if not fixes or not profile(fixed)["joint"]:  # offered only when some product holds every corrected word
        return "", ""
    searched = not stats["documents"] and not stats["chinese"]  # nothing found lexically: search the correction
    notes["corrected"] = {"query": spelling.replaced(typed, fixes), "words": fixes, "searched": searched}
    return notes["corrected"]["query"], fixed


def rank(index: LiveIndex, rows: list[RowQuery], generation: int, exact_filter_max: int = EXACT_FILTER_MAX,
         lexical=None, rules: list[dict] | None = None, clock=None, profile=None, synonyms: list[dict] | None = None,
         vocabulary=None, popularity: tuple[dict, float] | None = None,
         catalog_size: int | None = None) -> list[Ranked | QueryError]:
    """A Ranked per row, the window [offset, offset + k); a QueryError in place of a row whose
    query names what the catalog lacks. `lexical(text, limit)` -> [(id, score)]: the store's
    lexical search; `rules`: the catalog's merchandising rules; `clock(stage)`: a context manager
    timing the stages filter, vector, lexical and rank (the scorer's metrics); `profile(text)`: the
    store's term profile of a text (lexical.term_profile), for the hybrid weight per query and the
    spelling correction; `synonyms`: the shop's (ranking/synonyms.py); `vocabulary()`: the catalog's
    words (ranking/spelling.py: Vocabulary), for "did you mean" (None: no correction); `catalog_size`:
    the shop's products where `index` holds only a search's candidates (Milvus, whose `profile` is
    its words snapshot's, catalog/milvus/words.py); `popularity`: (scores by id, highest) when the
    shop's popularity comes from events (ranking/event_popularity.py)."""
    rules = rules or []
    clock = clock or _untimed
    results: list = [None] * len(rows)
    queries, excluded = [None] * len(rows), [NO_ROWS] * len(rows)
    negated = [NO_ROWS] * len(rows)
    with clock("lexical"):  # the text read: negations, the hybrid weight
        rows = list(rows)
        for i, row in enumerate(rows):
            rows[i], negated[i] = read_query(index, row, lexical, profile, synonyms, vocabulary, catalog_size)
    with clock("filter"):  # seeds' query vectors, exclusions, category names
        for i, row in enumerate(rows):
            try:
                seeds = NO_ROWS
                if row.query is None:
                    queries[i], seeds = seed_query(index, row, generation)
                else:
                    queries[i] = row.query
                excluded[i] = np.union1d(np.union1d(slots_of(index, row.exclude_ids)[0], seeds), negated[i])
                if row.categories is not None:
                    category_codes(index, row.categories)
            except QueryError as err:
                results[i] = err
    live = [i for i in range(len(rows)) if results[i] is None]
    if not live or len(index) == 0:
        return [r if r is not None else empty() for r in results]
    reranked = {i for i in live if rows[i].relevance.active(bool(rules))}
    searched = {i: replace(rows[i], k=depth_for(rows[i].offset, rows[i].k), offset=0) if i in reranked else rows[i]
                for i in live}
    plain = [i for i in live if not rows[i].filtered]
    if plain:  # one batched search; exclusions dropped from a deeper list
        depth = min(max(searched[i].offset + searched[i].k + len(excluded[i]) for i in plain), len(index))
        with clock("vector"):
            found, scores = index.search(np.stack([queries[i] for i in plain]).astype(np.float32), depth)
        for j, i in enumerate(plain):
            keep = found[j] >= 0
            if len(excluded[i]):
                keep &= ~np.isin(found[j], excluded[i])
            window = slice(searched[i].offset, searched[i].offset + searched[i].k)
            results[i] = Ranked(found[j][keep][window], scores[j][keep][window])
    hits: dict = {}  # per query text: its lexical hits as slots, looked up once per batch
    for i in live:
        row = rows[i]
        with clock("filter"):
            mask = passing(index, row, excluded[i]) if (results[i] is None or i in reranked or row.relevance.facets) else None
        if results[i] is None:
            with clock("vector"):
                results[i] = Ranked(*filtered_search(index, searched[i], queries[i].astype(np.float32), mask,
                                                     exact_filter_max))
        if i in reranked:
            text = row.relevance.lexical_text if (lexical and row.relevance.lexical) else None
            if text not in hits:
                with clock("lexical"):
                    hits[text] = lexical_arrays(index, lexical(text, LEXICAL_DEPTH) if text is not None else [])
            with clock("rank"):
                slots, scores, notes = rerank(index, row.relevance, queries[i].astype(np.float32), tuple(results[i]),
                                              hits[text], mask, rules, row.offset, row.k, popularity)
            results[i] = Ranked(slots, scores, notes)
        if row.relevance.facets:
            with clock("rank"):
                results[i].facets = facet_counts(index, mask, row.relevance.facets)
    for i, row in enumerate(rows):
        if isinstance(results[i], Ranked):
            results[i].corrected = row.relevance.corrected
    return results


def _untimed(stage: str):
    return nullcontext()


def filtered_search(index: LiveIndex, row: RowQuery, query: np.ndarray, mask: np.ndarray,
                    exact_filter_max: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact over the products that pass (`mask`, from `passing`); on the IVF path, when more
    than `exact_filter_max` pass, the IVF scan restricted to them."""
    count = int(mask.sum())
    depth = min(row.offset + row.k, count)
    if depth == 0:
        return NO_ROWS, np.zeros(0, np.float32)
    if index.ivf is not None and count > exact_filter_max:
        allowed = np.zeros(index.capacity, bool)
        allowed[: len(mask)] = mask
        found, scores = index.ivf.search_within(query, depth, allowed)
        return found[row.offset:], scores[row.offset:]
    candidates = np.flatnonzero(mask)
    scores = index.matrix[candidates] @ query
    top = top_rows(scores, depth)[row.offset:]
    return candidates[top], scores[top]
