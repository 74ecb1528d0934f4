"""The scorer's relevance inputs, read and checked per query row: QUERY_TEXT (the words, for the
lexical index and the merchandising rules), LEXICAL_WEIGHT, HYBRID_MODE, BOOSTS (JSON), IN_STOCK,
MAX_PER_GROUP, GROUP_BY, FACETS and EXPLAIN. Every mistake is a RequestError naming the input.
"""
from __future__ import annotations

import json
import math

import numpy as np

from productsearch.catalog.ranking.relevance import (BOOST_NAMES, DEFAULT_FUSION, FACET_NAMES,
                                             FUSION_MODES, GROUP_FIELDS, Relevance)
from productsearch.core.limits import MAX_JSON_BYTES, MAX_LIST, MAX_TEXT_BYTES, MAX_VALUE_BYTES
from productsearch.runtime.model_io import RequestError

MAX_BOOST = 100.0


def first(values, rows: int, name: str, i: int):
    """Row i's single value of an optional per-row input (None when absent or empty)."""
    if values is None:
        return None
    if len(values) != rows:
        raise RequestError(f"{name} needs one entry per query ({rows}), got {len(values)}")
    row = np.asarray(values[i]).reshape(-1)
    return row[0] if len(row) else None


def text(value, name: str = "", limit: int = MAX_VALUE_BYTES) -> str:
    """An element decoded, its size checked first (the scorer can be called without the gate)."""
    if value is None:
        return ""
    data = bytes(value)
    if len(data) > limit:
        raise RequestError(f"{name} is too long: {len(data)} bytes > limit {limit}")
    return data.decode("utf-8", errors="replace")


def boosts(raw: str) -> dict:
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except ValueError as err:
        raise RequestError(f"BOOSTS is not JSON ({err})") from None
    if not isinstance(value, dict):
        raise RequestError("BOOSTS must be a JSON object, e.g. {\"rating\": 0.5, \"in_stock\": 0.1}")
    unknown = sorted(set(value) - set(BOOST_NAMES))
    if unknown:
        raise RequestError(f"BOOSTS has unknown names {unknown}; known: {', '.join(BOOST_NAMES)}")
    for name, weight in value.items():
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight) \
                or not -MAX_BOOST <= weight <= MAX_BOOST:
            raise RequestError(f"BOOSTS {name} must be a finite number in [-{MAX_BOOST:g}, {MAX_BOOST:g}], got {weight!r}")
    return {name: float(weight) for name, weight in value.items()}


def parse_relevance(get, rows: int) -> list[tuple[Relevance, bool | None]]:
    """(Relevance, IN_STOCK: True = in-stock products only, None = no stock filter) per query row;
    `get(name)` returns an input's array or None."""
    arrays = {name: get(name) for name in
              ("QUERY_TEXT", "LEXICAL_WEIGHT", "HYBRID_MODE", "BOOSTS", "IN_STOCK", "MAX_PER_GROUP", "GROUP_BY",
               "FACETS", "EXPLAIN")}
    out = []
    for i in range(rows):
        options = Relevance(text=text(first(arrays["QUERY_TEXT"], rows, "QUERY_TEXT", i), "QUERY_TEXT", MAX_TEXT_BYTES))
        weight = first(arrays["LEXICAL_WEIGHT"], rows, "LEXICAL_WEIGHT", i)
        if weight is not None and not np.isnan(weight):
            if not 0.0 <= float(weight) <= 1.0:
                raise RequestError(f"LEXICAL_WEIGHT must be between 0 and 1, got {float(weight):g}")
            options.lexical_weight = float(weight)
        mode = text(first(arrays["HYBRID_MODE"], rows, "HYBRID_MODE", i), "HYBRID_MODE") or DEFAULT_FUSION
        if mode not in FUSION_MODES:
            raise RequestError(f"HYBRID_MODE must be one of {', '.join(FUSION_MODES)}, got {mode!r}")
        options.fusion = mode
        options.boosts = boosts(text(first(arrays["BOOSTS"], rows, "BOOSTS", i), "BOOSTS", MAX_JSON_BYTES))
        cap = first(arrays["MAX_PER_GROUP"], rows, "MAX_PER_GROUP", i)
        if cap is not None and int(cap) != 0:
            if int(cap) < 0 or int(cap) > 1000:
                raise RequestError(f"MAX_PER_GROUP must be 1..1000 (0: no cap), got {int(cap)}")
            options.max_per_group = int(cap)
        group = text(first(arrays["GROUP_BY"], rows, "GROUP_BY", i), "GROUP_BY") or "brand"
        if group not in GROUP_FIELDS:
            raise RequestError(f"GROUP_BY must be one of {', '.join(GROUP_FIELDS)}, got {group!r}")
        options.group_by = group
        if arrays["FACETS"] is not None:
            row = np.asarray(arrays["FACETS"][i]).reshape(-1)
            if row.size > MAX_LIST:
                raise RequestError(f"FACETS takes at most {MAX_LIST} values, got {row.size}")
            names = [text(v, "FACETS") for v in row.tolist() if len(v)]
            unknown = sorted(set(names) - set(FACET_NAMES))
            if unknown:
                raise RequestError(f"FACETS has unknown fields {unknown}; known: {', '.join(FACET_NAMES)}")
            options.facets = list(dict.fromkeys(names)) or None
        explain = first(arrays["EXPLAIN"], rows, "EXPLAIN", i)
        options.explain = bool(explain) if explain is not None else False
        in_stock = first(arrays["IN_STOCK"], rows, "IN_STOCK", i)
        out.append((options, True if in_stock is not None and bool(in_stock) else None))
    return out
