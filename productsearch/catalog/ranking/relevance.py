"""What a shop adds to plain vector ranking, applied to one query row's candidates: hybrid lexical +
vector fusion, business boosts, merchandising rules, a cap per brand or variant group, facet
counts and an explanation of every result.

The score of a candidate (documented in the README, "Relevance"):
0. a query that is a product code (its letters and digits equal a product's SKU's, e.g.
   "sku-0042 rd" for "SKU-0042-RD") puts that product first (what a shopper typing a code means);
1. relevance: with text and LEXICAL_WEIGHT w > 0 (default: per query, ranking/query_weight.py), `weighted` (default):
   (1-w)*cos + w*bm25/max_bm25, or `rrf`: (1-w)/(60+r_vec) + w/(60+r_lex) (ranks from 1; a list
   the product is not in adds 0); otherwise the cosine alone;
2. boosts (BOOSTS, all 0 by default, so neutral): relevance * (1 + rating*rating/5
   + popularity*popularity/max_popularity + recency*exp(-age_days/30)) + in_stock*[stock > 0]; a shop
   whose `popularity` setting says "events" has shoppers' decayed events as popularity (ranking/event_popularity.py);
3. merchandising rules for the query (catalog/ranking/merchandising.py): hide, brand boost (a factor on 2),
   then pins at fixed positions;
4. MAX_PER_GROUP: at most N results per value of GROUP_BY (brand by default), in score order.
Candidates are the vector top `depth` among the products that pass the filters, plus those of the
catalog's lexical top LEXICAL_DEPTH that pass them; so these bound how far a boost or the lexical
list can lift a product. In the weighted mode a product's score does not depend on the filter or
the page, so a filtered ranking is the unfiltered one restricted to the filter (RRF is rank-based:
a filter changes the ranks it fuses).
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field

import numpy as np

from productsearch.catalog.ranking.lexical import compact
from productsearch.catalog.index.live import LiveIndex, TermColumn
from productsearch.catalog.ranking.merchandising import applicable, normalized_query
from productsearch.catalog.records import TERM_FIELDS

DEFAULT_LEXICAL_WEIGHT = 0.1  # chosen by loadtest/relevance_bench.py on training queries (BENCHMARKS.md); the
# per-query rule's base (ranking/query_weight.py)
DEFAULT_FUSION = "weighted"
RRF_K = 60
FUSION_MODES = ("rrf", "weighted")
BOOST_NAMES = ("rating", "popularity", "recency", "in_stock")
GROUP_FIELDS = ("brand", "group", "category", "color", "pattern")
PRICE_EDGES = (0.0, 25.0, 50.0, 100.0, 200.0)
FACET_NAMES = (*TERM_FIELDS, "price", "in_stock")
RECENCY_DAYS = 30.0
MIN_DEPTH = 100
# The lexical candidates: the best LEXICAL_DEPTH matches over the whole catalog, whatever the
# page or the filter, so a product's hybrid score depends on the product and the query only.
LEXICAL_DEPTH = 200


@dataclass
class Relevance:
    """A query row's relevance options (all neutral by default)."""

    text: str = ""
    lexical_weight: float | None = None  # None: the per-query rule decides (ranking/query_weight.py)
    fusion: str = DEFAULT_FUSION
    boosts: dict = field(default_factory=dict)
    max_per_group: int | None = None
    group_by: str = "brand"
    facets: list[str] | None = None
    explain: bool = False
    notes: dict = field(default_factory=dict)  # how the query was read (weight, negation): in EXPLANATIONS
    searched: str = ""  # the lexical query when the shop's synonyms add to `text` ("": `text` itself)
    corrected: str = ""  # the typed query with its misspelt words corrected (CORRECTED_QUERY; "": none)

    @property
    def lexical_text(self) -> str:
        return self.searched or self.text

    @property
    def lexical(self) -> bool:
        return bool(self.text.strip()) and (self.lexical_weight is None or self.lexical_weight > 0)

    def active(self, has_rules: bool) -> bool:
        return self.lexical or any(self.boosts.values()) or self.max_per_group is not None or self.explain or has_rules


def depth_for(offset: int, k: int) -> int:
    return max(MIN_DEPTH, 3 * (offset + k))


def lexical_arrays(index: LiveIndex, hits: list[tuple[str, float]]) -> tuple[np.ndarray, np.ndarray]:
    """(slots, BM25 scores) of the lexical hits the index has, best first."""
    slots = np.array([index.slot_of.get(pid, -1) for pid, _ in hits], dtype=np.int64)
    scores = np.array([score for _, score in hits], dtype=np.float64)
    known = slots >= 0
    return slots[known], scores[known]


def rerank(index: LiveIndex, options: Relevance, query: np.ndarray, vector: tuple[np.ndarray, np.ndarray],
           lexical: tuple[np.ndarray, np.ndarray], mask: np.ndarray, rules: list[dict], offset: int, k: int,
           popularity: tuple[dict, float] | None = None):
    """(slots, scores, explanations) of the window [offset, offset + k) after steps 1-4; `lexical`:
    the row's lexical hits as `lexical_arrays` gives them; `popularity`: (scores by id, highest) of
    a shop whose popularity comes from events (None: the catalog's field)."""
    vec_slots, _ = vector
    # Lexical ranks and the BM25 maximum are taken over every hit, before the filter, so that a
    # product's score does not depend on the filter (a filtered ranking is the unfiltered one
    # restricted to the filter, as for vector-only queries).
    lex_slots, lex_scores = lexical
    inside = lex_slots[lex_slots < len(mask)]
    passed = inside[mask[inside]]
    # the vector candidates (distinct, best first), then the lexical ones that pass and are not among
    # them; so the vector rank of a candidate is its position + 1 among the first len(vec_slots)
    in_vector = np.zeros(index.high_water, bool)
    in_vector[vec_slots] = True
    slots = np.concatenate([vec_slots.astype(np.int64), passed[~in_vector[passed]]])
    if len(slots) == 0:
        return slots, np.zeros(0, np.float32), []
    lex_position = np.full(index.high_water, -1, np.int64)  # per slot: its index among the lexical hits
    lex_position[lex_slots] = np.arange(len(lex_slots))
    lex_at = lex_position[slots]
    in_lex = lex_at >= 0
    w = (DEFAULT_LEXICAL_WEIGHT if options.lexical_weight is None else options.lexical_weight) if options.lexical else 0.0
    if w == 0:
        base = (index.matrix[slots] @ query).astype(np.float64)
    elif options.fusion == "rrf":
        ranks = np.arange(1, len(slots) + 1)
        base = np.where(ranks <= len(vec_slots), (1 - w) / (RRF_K + ranks), 0.0) + \
            np.where(in_lex, w / (RRF_K + lex_at + 1), 0.0)
    else:
        top = (float(lex_scores.max()) if len(lex_scores) else 0.0) or 1.0
        bm25 = np.zeros(len(slots))
        bm25[in_lex] = lex_scores[lex_at[in_lex]]
        base = (1 - w) * (index.matrix[slots] @ query) + w * (bm25 / top)
    factor, bonus = boost_terms(index, slots, options.boosts, popularity)
    hidden, pins, brand_factors = applicable(rules, normalized_query(options.text))
    brands = index.terms["brand"]
    rule_notes: dict[int, list[str]] = {}
    for brand, extra in brand_factors:
        code = brands.code_of.get(brand)
        if code is not None:
            hit = brands.codes[slots] == code
            factor = np.where(hit, factor * (1 + extra), factor)
            for s in slots[hit].tolist():
                rule_notes.setdefault(s, []).append(f"boost brand {brand!r} x{1 + extra:g}")
    score = base * factor + bonus
    for s in code_matches(index, options.text, slots):
        score[slots == s] = score.max() + 1.0
        rule_notes.setdefault(int(s), []).append("exact product code")
    keep = np.array([index.ids[s].decode() not in hidden for s in slots.tolist()], dtype=bool) if hidden else \
        np.ones(len(slots), bool)
    order = np.lexsort((slots[keep], -score[keep]))
    best_slots, best_scores = slots[keep][order], score[keep][order]
    if pins or options.max_per_group is not None:  # reorders the whole list: as Python pairs
        ranked = list(zip(best_slots.tolist(), best_scores.tolist()))
        if pins:
            ranked = pin(index, ranked, pins, mask, query, score_of=dict(zip(slots.tolist(), score.tolist())),
                         notes=rule_notes)
        if options.max_per_group is not None:
            ranked = capped(index, ranked, options.group_by, options.max_per_group)
        window = ranked[offset: offset + k]
        out_slots = np.array([s for s, _ in window], dtype=np.int64)
        out_scores = np.array([v for _, v in window], dtype=np.float32)
    else:
        out_slots, out_scores = best_slots[offset: offset + k], best_scores[offset: offset + k].astype(np.float32)
        window = list(zip(out_slots.tolist(), best_scores[offset: offset + k].tolist())) if options.explain else []
    explanations = []
    if options.explain:
        position = {s: i for i, s in enumerate(slots.tolist())}
        vec_rank = {s: r + 1 for r, s in enumerate(vec_slots.tolist())}
        lex_rank = {s: r + 1 for r, s in enumerate(lex_slots.tolist())}
        lex_score = dict(zip(lex_slots.tolist(), lex_scores.tolist()))
        for s, final in window:
            i = position.get(s)
            explanations.append(json.dumps({
                "vector": round(float(index.matrix[s] @ query), 6), "vector_rank": vec_rank.get(s),
                "lexical": None if s not in lex_rank else round(lex_score[s], 6), "lexical_rank": lex_rank.get(s),
                "relevance": None if i is None else round(float(base[i]), 6),
                "boost_factor": None if i is None else round(float(factor[i]), 6),
                "in_stock_bonus": None if i is None else round(float(bonus[i]), 6),
                "rules": rule_notes.get(s, []), "score": round(final, 6), "query": options.notes}, ensure_ascii=False))
    return out_slots, out_scores, explanations


def code_lookup(column: TermColumn) -> dict[str, list[int]]:
    """compact code -> term codes of a code column (cached on the column; names only grow)."""
    cached = getattr(column, "_compact", None)
    if cached is None or cached[0] != len(column.names):
        table: dict[str, list[int]] = {}
        for code, name in enumerate(column.names):
            table.setdefault(compact(name), []).append(code)
        cached = column._compact = (len(column.names), table)
    return cached[1]


def code_matches(index: LiveIndex, text: str, slots: np.ndarray) -> list[int]:
    """The candidate slots whose SKU is the query, as a product code (4+ letters and digits)."""
    code = compact(text)
    if len(code) < 4 or not any(c.isdigit() for c in code):
        return []
    column = index.terms["sku"]
    wanted = code_lookup(column).get(code)
    if not wanted:
        return []
    return [int(s) for s in slots[np.isin(column.codes[slots], wanted)]]


def popularity_of(index: LiveIndex, slots: np.ndarray, popularity: tuple[dict, float] | None) -> np.ndarray:
    """Each slot's popularity in [0, 1]: the catalog's field over its highest, or (popularity given)
    the shop's event score over the highest."""
    if popularity is None:
        values = index.numbers["popularity"]
        top = np.nanmax(values[: index.high_water], initial=0.0) or 1.0
        return np.nan_to_num(values[slots] / top)
    scores, top = popularity
    return np.array([scores.get(index.ids[s], 0.0) for s in slots.tolist()], dtype=np.float64) / (top or 1.0)


def boost_terms(index: LiveIndex, slots: np.ndarray, boosts: dict,
                popularity: tuple[dict, float] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(multiplicative factor, additive in-stock bonus) per slot."""
    factor = np.ones(len(slots))
    numbers = index.numbers
    if boosts.get("rating"):
        factor += boosts["rating"] * np.nan_to_num(numbers["rating"][slots] / 5.0)
    if boosts.get("popularity"):
        factor += boosts["popularity"] * popularity_of(index, slots, popularity)
    if boosts.get("recency"):
        age_days = np.maximum(0.0, time.time() - numbers["updated_at"][slots]) / 86400.0
        factor += boosts["recency"] * np.nan_to_num(np.exp(-age_days / RECENCY_DAYS))
    bonus = np.zeros(len(slots))
    if boosts.get("in_stock"):
        bonus = boosts["in_stock"] * (np.nan_to_num(numbers["stock"][slots], nan=0.0) > 0)
    return factor, bonus


def pin(index: LiveIndex, ranked: list[tuple[int, float]], pins: list[tuple[str, int]], mask: np.ndarray,
        query: np.ndarray, score_of: dict, notes: dict) -> list[tuple[int, float]]:
    """Move (or bring in) each pinned product that passes the filters to its 1-based position; it
    keeps its own score (its cosine if it was not a candidate)."""
    for pid, position in pins:
        slot = index.slot_of.get(pid)
        if slot is None or slot >= len(mask) or not mask[slot]:
            continue
        ranked = [item for item in ranked if item[0] != slot]
        ranked.insert(min(position - 1, len(ranked)), (slot, score_of.get(slot, float(index.matrix[slot] @ query))))
        notes.setdefault(slot, []).append(f"pinned at {position}")
    return ranked


def capped(index: LiveIndex, ranked: list[tuple[int, float]], group_by: str, limit: int) -> list[tuple[int, float]]:
    """At most `limit` per value of the field; products without one count as their own group."""
    codes, seen, out = index.terms[group_by].codes, {}, []
    for slot, score in ranked:
        code = int(codes[slot])
        if code >= 0:
            if seen.get(code, 0) >= limit:
                continue
            seen[code] = seen.get(code, 0) + 1
        out.append((slot, score))
    return out


def facet_counts(index: LiveIndex, mask: np.ndarray, names: list[str]) -> dict:
    """Exact counts per value over every product that passes the query's filters."""
    n = len(mask)
    result: dict[str, dict] = {}
    for name in names:
        if name in TERM_FIELDS:
            column = index.terms[name]
            codes = column.codes[:n][mask]
            counts = np.bincount(codes[codes >= 0], minlength=len(column.names))
            result[name] = {column.names[c]: int(counts[c]) for c in np.flatnonzero(counts)}
        elif name == "price":
            price = index.numbers["price"][:n][mask]
            price = price[~np.isnan(price)]
            edges = list(PRICE_EDGES) + [math.inf]
            result[name] = {(f"{lo:g}-{hi:g}" if hi != math.inf else f"{lo:g}+"): int(((price >= lo) & (price < hi)).sum())
                            for lo, hi in zip(edges[:-1], edges[1:])}
        elif name == "in_stock":
            stock = index.numbers["stock"][:n][mask]
            result[name] = {"in_stock": int((stock > 0).sum()), "out_of_stock": int((stock == 0).sum()),
                            "unknown": int(np.isnan(stock).sum())}
    return result


def top_facet_values(facets: dict | None, limit: int) -> dict | None:
    """At most `limit` values per facet field: the most frequent (ties by name), so a field with a
    value per product (FACETS=["sku"]) cannot return the whole catalog."""
    if not facets:
        return facets
    return {name: dict(sorted(counts.items(), key=lambda kv: (-kv[1], str(kv[0])))[:limit]) if len(counts) > limit
            else counts for name, counts in facets.items()}
