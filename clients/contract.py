"""The public gRPC contract, written once: model and tensor names, how values are packed into
tensors, the optional filters, and how an answer is read back.

Every caller in the repository (search and catalog clients, the indexer, evaluation, Locust,
benchmarks) builds its requests here, so a tensor name or shape changes in one place. Every
model takes a batch dimension: one query (or product) is a row of shape [1, ...].
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tritonclient.grpc as grpcclient

SEARCH, RECOMMEND, ENCODE_PRODUCT = "search", "recommend", "encode_product"
UPSERT, UPDATE_FIELDS, DELETE, CATALOG_ADMIN = "upsert_products", "update_fields", "delete_products", "catalog_admin"
RECORD_EVENTS = "record_events"
RANKED_OUTPUTS = ("PRODUCT_IDS", "SCORES", "TITLES", "GENERATION", "CATALOG_SEQUENCE", "FACET_COUNTS", "EXPLANATIONS",
                  "QUERY_ID", "ARM")
SEARCH_OUTPUTS = RANKED_OUTPUTS + ("CORRECTED_QUERY",)  # search alone says "did you mean"
EVENT_KINDS = ("click", "add_to_cart", "purchase")
API_KEY_HEADER = "authorization"  # every API key travels in it: "Bearer <key>" (or x-api-key: <key>)
WRITE_KEY_HEADER = "catalog-write-key"  # the old write-key header: an alias for one release


def key_headers(key: str | None) -> dict[str, str]:
    """gRPC headers that carry an API key (none without a key: searches of public shops)."""
    return {API_KEY_HEADER: f"Bearer {key}"} if key else {}


def bytes_tensor(name: str, value: bytes | str) -> grpcclient.InferInput:
    """One BYTES element, shape [1, 1] (a query's text or image, a product's title)."""
    return bytes_rows(name, [value])


def bytes_rows(name: str, values: list[bytes | str]) -> grpcclient.InferInput:
    """One BYTES element per row, shape [n, 1] (a batch of queries or products)."""
    data = [v.encode("utf-8") if isinstance(v, str) else bytes(v) for v in values]
    tensor = grpcclient.InferInput(name, [len(data), 1], "BYTES")
    tensor.set_data_from_numpy(np.array([[v] for v in data], dtype=object).reshape(len(data), 1))
    return tensor


def int64_rows(name: str, values: list[int]) -> grpcclient.InferInput:
    """One INT64 per row, shape [n, 1]."""
    tensor = grpcclient.InferInput(name, [len(values), 1], "INT64")
    tensor.set_data_from_numpy(np.array(values, dtype=np.int64).reshape(-1, 1))
    return tensor


def bool_tensor(name: str, value: bool) -> grpcclient.InferInput:
    tensor = grpcclient.InferInput(name, [1, 1], "BOOL")
    tensor.set_data_from_numpy(np.array([[value]], dtype=bool))
    return tensor


def list_tensor(name: str, values: list[str]) -> grpcclient.InferInput:
    """A list of strings for one row, shape [1, n] (ids, categories)."""
    tensor = grpcclient.InferInput(name, [1, len(values)], "BYTES")
    tensor.set_data_from_numpy(np.array([[str(v).encode("utf-8") for v in values]], dtype=object))
    return tensor


def number_tensor(name: str, value: float | int, datatype: str = "FP32") -> grpcclient.InferInput:
    """One number, shape [1, 1]: FP32, INT32 or INT64."""
    dtypes = {"FP32": np.float32, "INT32": np.int32, "INT64": np.int64}
    tensor = grpcclient.InferInput(name, [1, 1], datatype)
    tensor.set_data_from_numpy(np.array([[value]], dtype=dtypes[datatype]))
    return tensor


def floats_tensor(name: str, values: list[float]) -> grpcclient.InferInput:
    """A list of FP32 values for one row, shape [1, n] (recommendation weights)."""
    tensor = grpcclient.InferInput(name, [1, len(values)], "FP32")
    tensor.set_data_from_numpy(np.array([values], dtype=np.float32))
    return tensor


def read_image(image: bytes | str | Path | None) -> bytes:
    """Encoded image bytes from bytes or a file path; b"" (no image) for None."""
    if image is None:
        return b""
    if isinstance(image, (bytes, bytearray)):
        return bytes(image)
    return Path(image).read_bytes()


@dataclass
class Filters:
    """Which products may appear, applied before ranking. Empty fields filter nothing.
    categories: any of these; price_min/price_max: inclusive (products without a price pass
    no price filter); exclude_ids: never returned (ids not in the catalog are ignored);
    in_stock: only products with stock > 0."""

    categories: list[str] | None = None
    price_min: float | None = None
    price_max: float | None = None
    exclude_ids: list[str] | None = None
    in_stock: bool = False

    def inputs(self) -> list[grpcclient.InferInput]:
        inputs = [bool_tensor("IN_STOCK", True)] if self.in_stock else []
        if self.categories:
            inputs.append(list_tensor("CATEGORIES", self.categories))
        if self.price_min is not None:
            inputs.append(number_tensor("PRICE_MIN", self.price_min))
        if self.price_max is not None:
            inputs.append(number_tensor("PRICE_MAX", self.price_max))
        if self.exclude_ids:
            inputs.append(list_tensor("EXCLUDE_IDS", self.exclude_ids))
        return inputs


@dataclass
class Relevance:
    """How results are ranked beyond the vectors (README "Relevance"); the defaults are neutral
    except the server's default lexical weight. lexical_weight: 0..1 (None: the server's default,
    0.1; 0 = vectors only); hybrid_mode: "weighted" (the default) or "rrf"; boosts: {"rating", "popularity", "recency",
    "in_stock": weight}; max_per_group: at most this many results per `group_by` value (brand);
    facets: fields to count over every product that passes the filters (category, color,
    pattern, brand, sku, group, price, in_stock); explain: per-result scores and rules."""

    lexical_weight: float | None = None
    hybrid_mode: str | None = None
    boosts: dict | None = None
    max_per_group: int | None = None
    group_by: str | None = None
    facets: list[str] | None = None
    explain: bool = False

    def inputs(self, lexical: bool = True) -> list[grpcclient.InferInput]:
        inputs = []
        if lexical and self.lexical_weight is not None:
            inputs.append(number_tensor("LEXICAL_WEIGHT", self.lexical_weight))
        if lexical and self.hybrid_mode:
            inputs.append(bytes_tensor("HYBRID_MODE", self.hybrid_mode))
        if self.boosts:
            inputs.append(bytes_tensor("BOOSTS", json.dumps(self.boosts)))
        if self.max_per_group:
            inputs.append(number_tensor("MAX_PER_GROUP", self.max_per_group, "INT32"))
        if self.group_by:
            inputs.append(bytes_tensor("GROUP_BY", self.group_by))
        if self.facets:
            inputs.append(list_tensor("FACETS", self.facets))
        if self.explain:
            inputs.append(bool_tensor("EXPLAIN", True))
        return inputs


@dataclass
class ReadOptions:
    """Which catalog a read looks at: `shop` (None: the default shop), and `min_sequence`, the
    SEQUENCE of a write the answer must already reflect (read-your-writes; 0: no wait)."""

    shop: str | None = None
    min_sequence: int = 0

    def inputs(self) -> list[grpcclient.InferInput]:
        inputs = [bytes_tensor("SHOP", self.shop)] if self.shop else []
        return inputs + ([number_tensor("MIN_SEQUENCE", self.min_sequence, "INT64")] if self.min_sequence else [])


def search_inputs(text: str | None = None, image: bytes | str | Path | None = None, top_k: int = 10,
                  offset: int = 0, text_weight: float | None = None, filters: Filters | None = None,
                  read: ReadOptions | None = None, relevance: Relevance | None = None,
                  user: str | None = None) -> list[grpcclient.InferInput]:
    """The inputs of one `search` query (an absent modality is an empty element); user: USER, an
    opaque shopper or session id (never required)."""
    inputs = [bytes_tensor("QUERY_TEXT", text or ""), bytes_tensor("QUERY_IMAGE", read_image(image)),
              number_tensor("TOP_K", top_k, "INT32")]
    if text_weight is not None:
        inputs.append(number_tensor("TEXT_WEIGHT", text_weight))
    return inputs + ranking_options(offset, filters, read, user) + (relevance or Relevance()).inputs()


def recommend_inputs(item_ids: list[str], top_k: int = 10, weights: list[float] | None = None, offset: int = 0,
                     filters: Filters | None = None, read: ReadOptions | None = None,
                     relevance: Relevance | None = None, user: str | None = None) -> list[grpcclient.InferInput]:
    """The inputs of one `recommend` call: seed product ids (most recent first), optional weights."""
    inputs = [list_tensor("ITEM_IDS", list(item_ids)), number_tensor("TOP_K", top_k, "INT32")]
    if weights is not None:
        inputs.append(floats_tensor("ITEM_WEIGHTS", list(weights)))
    return inputs + ranking_options(offset, filters, read, user) + (relevance or Relevance()).inputs(lexical=False)


def ranking_options(offset: int, filters: Filters | None, read: ReadOptions | None = None,
                    user: str | None = None) -> list[grpcclient.InferInput]:
    """OFFSET, the filters, the read options and USER, shared by `search` and `recommend`."""
    return (([number_tensor("OFFSET", offset, "INT32")] if offset else []) + (filters or Filters()).inputs()
            + (read or ReadOptions()).inputs() + ([bytes_tensor("USER", user)] if user else []))


@dataclass
class Product:
    """A product to upsert. title "" keeps an existing product's title; image None (or b"") keeps
    its image (a new product without one is text-only); fields: a JSON object of scalars."""

    id: str
    title: str = ""
    image: bytes | str | Path | None = None
    fields: dict | None = None


def upsert_inputs(products: list[Product], shop: str | None = None) -> list[grpcclient.InferInput]:
    """One `upsert_products` request: one row per product (a request is atomic)."""
    import json

    inputs = [bytes_rows("ID", [p.id for p in products]), bytes_rows("TITLE", [p.title or "" for p in products]),
              bytes_rows("IMAGE", [read_image(p.image) for p in products]),
              bytes_rows("FIELDS", [json.dumps(p.fields or {}, ensure_ascii=False) for p in products])]
    return inputs + ([bytes_rows("SHOP", [shop] * len(products))] if shop else [])


def update_inputs(changes: dict[str, dict], shop: str | None = None) -> list[grpcclient.InferInput]:
    """One `update_fields` request: product id -> the fields to set (null removes one)."""
    import json

    ids = list(changes)
    inputs = [bytes_rows("ID", ids), bytes_rows("FIELDS", [json.dumps(changes[i], ensure_ascii=False) for i in ids])]
    return inputs + ([bytes_rows("SHOP", [shop] * len(ids))] if shop else [])


def delete_inputs(ids: list[str], shop: str | None = None) -> list[grpcclient.InferInput]:
    return [bytes_rows("ID", list(ids))] + ([bytes_rows("SHOP", [shop] * len(ids))] if shop else [])


def encode_inputs(title: str, image: bytes) -> list[grpcclient.InferInput]:
    """The inputs of one `encode_product` call (title and encoded image bytes)."""
    return [bytes_tensor("TITLE", title), bytes_tensor("IMAGE", image)]


@dataclass
class SearchResult:
    ids: list[str]
    scores: list[float]
    titles: list[str]
    generation: int
    catalog_sequence: int = 0  # the catalog sequence this answer reflects
    facets: dict = field(default_factory=dict)  # field -> value -> count (when facets were asked for)
    explanations: list[dict] = field(default_factory=list)  # one per result (when explain was asked for)
    query_id: str = ""  # QUERY_ID: what events about this answer refer to (record_events)
    arm: str = ""  # ARM: the experiment arm that answered ("control" outside experiments)
    corrected_query: str = ""  # CORRECTED_QUERY (search): "did you mean", "" when no word was corrected

    def rows(self) -> list[tuple[str, float, str]]:
        return list(zip(self.ids, self.scores, self.titles))

    @classmethod
    def from_response(cls, result) -> "SearchResult":
        """Read a `search` / `recommend` answer of one row (padding, empty ids, dropped)."""
        ids = [v.decode() for v in result.as_numpy("PRODUCT_IDS").reshape(-1)]
        scores = [float(v) for v in result.as_numpy("SCORES").reshape(-1)]
        titles = [v.decode() for v in result.as_numpy("TITLES").reshape(-1)]
        keep = [i for i, pid in enumerate(ids) if pid]
        sequence = result.as_numpy("CATALOG_SEQUENCE")
        facets, notes = result.as_numpy("FACET_COUNTS"), result.as_numpy("EXPLANATIONS")
        query_id, arm = result.as_numpy("QUERY_ID"), result.as_numpy("ARM")
        corrected = result.as_numpy("CORRECTED_QUERY")
        notes = [] if notes is None else [v.decode() for v in notes.reshape(-1)]
        return cls(ids=[ids[i] for i in keep], scores=[scores[i] for i in keep], titles=[titles[i] for i in keep],
                   generation=int(result.as_numpy("GENERATION").reshape(-1)[0]),
                   catalog_sequence=0 if sequence is None else int(sequence.reshape(-1)[0]),
                   facets={} if facets is None else json.loads(facets.reshape(-1)[0].decode() or "{}"),
                   explanations=[json.loads(notes[i]) for i in keep if i < len(notes) and notes[i]],
                   query_id="" if query_id is None else query_id.reshape(-1)[0].decode(),
                   arm="" if arm is None else arm.reshape(-1)[0].decode(),
                   corrected_query="" if corrected is None else corrected.reshape(-1)[0].decode())


@dataclass
class Event:
    """What a shopper did with a search's answer: `event` is click, add_to_cart or purchase of
    `product_id` (one of that answer's products); position: its 1-based place as shown (None: its
    rank in the answer); value: the order value (purchases); user: the shopper's opaque id."""

    query_id: str
    event: str
    product_id: str
    position: int | None = None
    value: float = 0.0
    user: str = ""
    shop: str | None = None


def event_inputs(events: list[Event]) -> list[grpcclient.InferInput]:
    """One `record_events` request: one row per event (each row is checked and answered alone)."""
    positions = [0 if e.position is None else int(e.position) for e in events]
    value = grpcclient.InferInput("VALUE", [len(events), 1], "FP32")
    value.set_data_from_numpy(np.array([[e.value] for e in events], dtype=np.float32).reshape(-1, 1))
    position = grpcclient.InferInput("POSITION", [len(events), 1], "INT32")
    position.set_data_from_numpy(np.array(positions, dtype=np.int32).reshape(-1, 1))
    return [bytes_rows("QUERY_ID", [e.query_id for e in events]), bytes_rows("EVENT", [e.event for e in events]),
            bytes_rows("PRODUCT_ID", [e.product_id for e in events]), position, value,
            bytes_rows("USER", [e.user or "" for e in events]), bytes_rows("SHOP", [e.shop or "" for e in events])]
