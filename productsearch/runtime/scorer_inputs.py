"""The scorer's query rows read from one request: every input checked before the catalog is read.

Limits (core/limits.py) are checked on counts and sizes before any element is decoded, so a row
sent straight to `scorer` (no gate in front) costs no more than its limits allow.
"""
from __future__ import annotations

import numpy as np

from productsearch.catalog.ranking.batch import RowQuery
from productsearch.catalog.records import RecordError
from productsearch.catalog.rows import DEFAULT_SHOP, check_shop
from productsearch.core.limits import MAX_DEPTH, MAX_USER_BYTES, MAX_EMBEDDING_DIM, MAX_LIST, MAX_TOP_K, MAX_VALUE_BYTES
from productsearch.core.vectors import DEFAULT_TEXT_WEIGHT, fuse
from productsearch.runtime.fusion import query_rows
from productsearch.runtime.model_io import RequestError, input_array
from productsearch.runtime.relevance_inputs import parse_relevance


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


def check_list(values: np.ndarray, name: str) -> list:
    """A BYTES row's elements, counted and sized before any is decoded (a request's rows are
    padded to one width, so the width itself is bounded by MAX_LIST)."""
    if values.size > MAX_LIST:
        raise RequestError(f"{name} takes at most {MAX_LIST} values, got {values.size}")
    items = values.tolist()
    longest = max((len(v) for v in items), default=0)
    if longest > MAX_VALUE_BYTES:
        raise RequestError(f"{name} values are at most {MAX_VALUE_BYTES} bytes, got one of {longest}")
    return items


def strings(values: np.ndarray, name: str) -> list[str]:
    """Non-empty elements of a BYTES row (empty ones are padding), decoded."""
    return [bytes(v).decode("utf-8", errors="replace") for v in check_list(values, name) if len(v)]


def check_dim(array: np.ndarray | None, name: str) -> None:
    if array is not None and array.ndim > 1 and array[0].size > MAX_EMBEDDING_DIM:
        raise RequestError(f"{name} has {array[0].size} values per row, at most {MAX_EMBEDDING_DIM}")


def number(values: np.ndarray, name: str) -> float | None:
    value = float(values[0]) if len(values) else float("nan")
    if np.isinf(value):
        raise RequestError(f"{name} must be a finite number, got {value}")
    return None if np.isnan(value) else value


def seed_weights(ids: np.ndarray, weights: np.ndarray | None) -> tuple[list[str], np.ndarray | None]:
    present = [j for j, v in enumerate(check_list(ids, "SEED_IDS")) if len(v)]
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


def user_id(values: np.ndarray) -> str:
    """USER: an opaque shopper or session id, at most MAX_USER_BYTES (empty: none)."""
    items = check_list(values, "USER")
    if len(items) > 1:
        raise RequestError(f"USER takes one value per query, got {len(items)}")
    raw = bytes(items[0]) if items else b""
    if len(raw) > MAX_USER_BYTES:
        raise RequestError(f"USER is at most {MAX_USER_BYTES} bytes, got {len(raw)}")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise RequestError("USER must be UTF-8 text") from None


def query_kind(text: bool, image: bool) -> str:
    return "text+image" if text and image else "text" if text else "image"


def parse_rows(request, query_weight: float = DEFAULT_TEXT_WEIGHT) -> list[RowQuery]:
    """The query rows of one request, every input checked (the catalog itself is not read here).
    A query is QUERY_EMBEDDING (fused already), or the encoders' outputs fused here with TEXT_WEIGHT
    (default `query_weight`; the `search` ensemble's path), or SEED_IDS."""
    query = input_array(request, "QUERY_EMBEDDING")
    seeds = input_array(request, "SEED_IDS")
    for name in ("QUERY_EMBEDDING", "TEXT_EMBEDDING", "IMAGE_EMBEDDING"):
        check_dim(query if name == "QUERY_EMBEDDING" else input_array(request, name), name)
    kinds = None  # per row, for the metrics: what the shopper sent
    photo_only = None  # per row: TEXT_WEIGHT 0 beside a photo, so the words count nowhere
    if query is None and input_array(request, "TEXT_EMBEDDING") is not None:
        parts = query_rows(lambda name: input_array(request, name), query_weight)
        query = fuse(*parts)
        kinds = [query_kind(t, im) for t, im in zip(parts[2].tolist(), parts[3].tolist())]
        photo_only = ((parts[4] == 0) & parts[3]).tolist()
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
    users = per_row(input_array(request, "USER"), rows, "USER")
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
        if users is not None:
            row.user = user_id(users[i])
        if sequences is not None:
            row.min_sequence = int(sequences[i][0]) if len(sequences[i]) else 0
        if photo_only and photo_only[i] and row.relevance.lexical_weight is None:
            row.relevance.lexical_weight = 0.0  # nor on the lexical side (LEXICAL_WEIGHT sent still wins)
        parsed.append(row)
    return parsed
