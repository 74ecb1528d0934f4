"""The catalog's write models: catalog_gate (first step of `upsert_products`), catalog_writer
(its last step, per generation), update_fields, delete_products and catalog_admin.

Every write needs the admin key, sent as the gRPC header `catalog-write-key` (tritonserver runs
with --grpc-header-forward-pattern for it, which hands it to the model as a request parameter,
ensemble steps included) or as the request parameter of that name; keys are compared in constant
time (hmac.compare_digest of their sha256). Triton 2.51's python backend has no PERMISSION_DENIED
or UNAUTHENTICATED code, so a refused write is INVALID_ARGUMENT whose message starts with the
right status name; clients.catalog raises it as that status.

A request is atomic: all its rows or none (a savepoint inside the batch's one transaction); the
batch is committed (synchronous, fsync) before any SEQUENCE is returned, so an acknowledged write
is durable. A bad request fails alone: INVALID_ARGUMENT naming the product id and the field,
NOT_FOUND for an unknown id, UNAVAILABLE when a generation swap fenced the writer (send again).
"""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import time
from pathlib import Path

import numpy as np

from productsearch.catalog.ranking.merchandising import RuleError, check_rules
from productsearch.catalog.records import ClosedValue, RecordError, parse_fields, product_id
from productsearch.catalog.rows import DEFAULT_SHOP, FencedWrite, ProductWrite, UnknownProduct, check_shop
from productsearch.catalog.store import catalog_url, list_shops, open_store, register_generation
from productsearch.runtime.generation_settings import generation_text_weight
from productsearch.runtime.image_input import InvalidImage, decode_image
from productsearch.runtime.metrics import Metrics
from productsearch.core.limits import MAX_IMAGE_BYTES
from productsearch.runtime.model_io import (ModelContext, RequestError, input_array, internal, invalid, not_found, response,
                                            unavailable)
from productsearch.runtime.text_input import decode_texts

WRITE_KEY = "catalog-write-key"
ADMIN_KEY_ENV = "PRODUCTSEARCH_ADMIN_KEY"


class Refused(RequestError):
    """A write without the right key."""


class WriteKey:
    """The admin key's digest, from the server's environment (the launcher sets it)."""

    def __init__(self):
        key = os.environ.get(ADMIN_KEY_ENV, "")
        self.digest = hashlib.sha256(key.encode()).digest() if key else None

    def check(self, request) -> None:
        try:
            offered = json.loads(request.parameters() or "{}").get(WRITE_KEY)
        except ValueError:
            offered = None
        if self.digest is None:
            raise Refused("PERMISSION_DENIED: this server has no admin key configured, so it takes no catalog writes")
        if not offered:
            raise Refused(f"UNAUTHENTICATED: catalog writes need the admin key in the gRPC header '{WRITE_KEY}' "
                          "(or a request parameter of that name); this request has none")
        if not hmac.compare_digest(hashlib.sha256(str(offered).encode()).digest(), self.digest):
            raise Refused(f"PERMISSION_DENIED: the {WRITE_KEY} sent is not this server's admin key")


def column(request, name: str, required: bool = True) -> list[bytes] | None:
    """A BYTES input's elements, one per row."""
    values = input_array(request, name)
    if values is None:
        if required:
            raise RequestError(f"missing input {name}")
        return None
    return [v if isinstance(v, bytes) else bytes(v) for v in values.reshape(-1)]


def shop_of(request, rows: int) -> str:
    names = column(request, "SHOP", required=False)
    if not names:
        return DEFAULT_SHOP
    chosen = {n.decode("utf-8", errors="replace") or DEFAULT_SHOP for n in names}
    if len(chosen) != 1:
        raise RequestError("one request writes to one SHOP (send the rows of other shops separately)")
    try:
        return check_shop(chosen.pop())
    except RecordError as err:
        raise RequestError(str(err)) from None


def checked(fn, *args):
    """RecordError -> RequestError (the message already names the id and the field)."""
    try:
        return fn(*args)
    except RecordError as err:
        raise RequestError(str(err)) from None


def refusal_reason(err: Exception) -> str:
    """The `reason` label of a refused write."""
    if isinstance(err, Refused):
        return "key"
    if isinstance(err, UnknownProduct):
        return "unknown_id"
    if isinstance(err, ClosedValue):
        return "closed_value"
    if isinstance(err, FencedWrite):
        return "fenced"
    return "bad_input" if isinstance(err, (RequestError, RecordError)) else "internal"


def error_response(err: Exception):
    if isinstance(err, UnknownProduct):
        return not_found(str(err))
    if isinstance(err, (RequestError, RecordError)):
        return invalid(str(err))
    if isinstance(err, FencedWrite):
        return unavailable(str(err))
    return internal(f"{type(err).__name__}: {err}")


class CatalogModel:
    """What the write models share: the store URL, the key, per-request parsing and one
    transaction per shop and batch with a savepoint per request."""

    write_kind = "upsert"  # the `kind` label of its acknowledged rows

    def initialize(self, args: dict) -> None:
        self.ctx = ModelContext.from_args(args)
        self.metrics = Metrics.of_model(self.ctx)
        self.key = WriteKey()
        self.url = catalog_url(Path(self.ctx.version_dir).parent.parent, self.ctx.parameter("catalog", "") or None)
        self.stores: dict[str, object] = {}

    def store(self, shop: str):
        if shop not in self.stores:
            self.stores[shop] = open_store(self.url, shop)
        return self.stores[shop]

    def parse(self, request) -> tuple[str, list]:
        """(shop, rows) of one request; raises RequestError."""
        raise NotImplementedError

    def write(self, store, db, row, now: float) -> int:
        """Apply one row inside the transaction; its sequence."""
        raise NotImplementedError

    def prepare(self, store, db, rows: list) -> None:
        """Before the batch's writes (the writer reads its products' stored rows in one call)."""

    def execute(self, requests):
        parsed: list = []
        for request in requests:
            try:
                self.key.check(request)
                parsed.append(self.parse(request))
            except Exception as err:  # noqa: BLE001 - a bad request fails alone
                parsed.append(err)
        results: list = list(parsed)
        for shop in sorted({p[0] for p in parsed if not isinstance(p, Exception)}):
            members = [i for i, p in enumerate(parsed) if not isinstance(p, Exception) and p[0] == shop]
            try:
                store = self.store(shop)
                now = time.time()
                with store.transaction() as db:
                    self.prepare(store, db, [row for i in members for row in parsed[i][1]])
                    for i in members:
                        try:
                            with store.savepoint(db):
                                results[i] = [self.write(store, db, row, now) for row in parsed[i][1]]
                        except (RecordError, FencedWrite, RequestError) as err:
                            results[i] = err
                for i in members:
                    if not isinstance(results[i], Exception):
                        results[i] = store.committed(db, results[i])
            except Exception as err:  # noqa: BLE001 - the commit failed: none of these is acknowledged
                for i in members:
                    results[i] = results[i] if isinstance(results[i], Exception) else \
                        err if isinstance(err, FencedWrite) else RuntimeError(f"catalog write failed: {err}")
        self.count(parsed, results)
        return [error_response(r) if isinstance(r, Exception) else
                response(SEQUENCE=np.array(r, dtype=np.int64).reshape(-1, 1)) for r in results]

    def count(self, parsed: list, results: list) -> None:
        """Rows written by kind and requests refused by reason, per shop (metrics)."""
        for p, r in zip(parsed, results):
            shop = self.metrics.shop(p[0]) if not isinstance(p, Exception) else "unknown"
            if isinstance(r, Exception):
                self.metrics.add("productsearch_refused_writes_total", 1, shop=shop, reason=refusal_reason(r))
            else:
                self.metrics.add("productsearch_catalog_writes_total", len(r), shop=shop, kind=self.write_kind)

    def finalize(self) -> None:
        self.metrics.close()


class CatalogGateModel(CatalogModel):
    """catalog_gate: the key, the id, FIELDS, the title and the image of every row checked (the
    image is decoded here, so a corrupt one is refused naming its product), then passed on."""

    def parse(self, request) -> tuple[str, list]:
        ids, titles, images = column(request, "ID"), column(request, "TITLE"), column(request, "IMAGE")
        fields = column(request, "FIELDS")
        shop = shop_of(request, len(ids))
        rows = []
        for raw_id, raw_title, image, raw_fields in zip(ids, titles, images, fields):
            pid = checked(product_id, raw_id)
            try:
                title = decode_texts(np.array([raw_title], dtype=object))[0]
            except RequestError as err:
                raise RequestError(f"product {pid!r}: TITLE: {err}") from None
            normalized = checked(parse_fields, pid, raw_fields)
            if image:
                if len(image) > MAX_IMAGE_BYTES:
                    raise RequestError(f"product {pid!r}: IMAGE is too large: {len(image)} bytes > limit {MAX_IMAGE_BYTES}")
                try:
                    decode_image(image)
                except InvalidImage as err:
                    raise RequestError(f"product {pid!r}: IMAGE: {err}") from None
            rows.append((pid.encode(), title.encode(), image, json.dumps(normalized, ensure_ascii=False).encode()))
        return shop, rows

    def execute(self, requests):
        out = []
        for request in requests:
            try:
                self.key.check(request)
                shop, rows = self.parse(request)
            except Exception as err:  # noqa: BLE001
                out.append(error_response(err))
                self.metrics.add("productsearch_refused_writes_total", 1, shop="unknown", reason=refusal_reason(err))
                continue
            cols = list(zip(*rows))
            out.append(response(**{name: np.array([[v] for v in values], dtype=object) for name, values in
                                   zip(("ID_OUT", "TITLE_OUT", "IMAGE_OUT", "FIELDS_OUT"), cols)},
                                SHOP_OUT=np.array([[shop.encode()]] * len(rows), dtype=object)))
        return out


class CatalogWriterModel(CatalogModel):
    """catalog_writer (version N = generation N): upserts with generation N's embeddings."""

    def initialize(self, args: dict) -> None:
        super().initialize(args)
        repository = Path(self.ctx.version_dir).parent.parent
        register_generation(self.url, self.ctx.version, generation_text_weight(repository, self.ctx.version))

    def parse(self, request) -> tuple[str, list]:
        ids, titles, images, fields = (column(request, n) for n in ("ID", "TITLE", "IMAGE", "FIELDS"))
        text = input_array(request, "TEXT_EMBEDDING")
        text_present = input_array(request, "TEXT_PRESENT").reshape(-1).astype(bool)
        image = input_array(request, "IMAGE_EMBEDDING")
        image_present = input_array(request, "IMAGE_PRESENT").reshape(-1).astype(bool)
        rows = []
        for i, raw_id in enumerate(ids):
            pid = checked(product_id, raw_id)
            rows.append(ProductWrite(
                id=pid, title=titles[i].decode("utf-8").strip(), fields=checked(parse_fields, pid, fields[i]),
                image=images[i] or None, text_vector=text[i] if text_present[i] else None,
                image_vector=image[i] if image_present[i] else None))
        return shop_of(request, len(ids)), rows

    def prepare(self, store, db, rows: list[ProductWrite]) -> None:
        store.prefetch(db, self.ctx.version, [row.id for row in rows])

    def write(self, store, db, row: ProductWrite, now: float) -> int:
        return store.upsert_one(db, self.ctx.version, row, now)


class UpdateFieldsModel(CatalogModel):
    """update_fields: merge FIELDS into existing products (price, stock, ...); no re-encoding."""

    write_kind = "update"

    def parse(self, request) -> tuple[str, list]:
        ids, fields = column(request, "ID"), column(request, "FIELDS")
        rows = []
        for raw_id, raw in zip(ids, fields):
            pid = checked(product_id, raw_id)
            values = checked(parse_fields, pid, raw)
            if not values:
                raise RequestError(f"product {pid!r}: FIELDS is empty: send the fields to change")
            rows.append((pid, values))
        return shop_of(request, len(ids)), rows

    def write(self, store, db, row, now: float) -> int:
        return store.update_one(db, row[0], row[1], now)


class DeleteProductsModel(CatalogModel):
    """delete_products: remove products (never returned again once applied)."""

    write_kind = "delete"

    def parse(self, request) -> tuple[str, list]:
        ids = column(request, "ID")
        return shop_of(request, len(ids)), [checked(product_id, raw) for raw in ids]

    def write(self, store, db, pid: str, now: float) -> int:
        return store.delete_one(db, pid, now)


class CatalogAdminModel(CatalogModel):
    """catalog_admin: ACTION (info | shops | set_closed_values | product | rules | set_rules) with a
    JSON PAYLOAD -> RESULT JSON. Admin key required."""

    def execute(self, requests):
        out = []
        for request in requests:
            try:
                self.key.check(request)
                action = column(request, "ACTION")[0].decode()
                payload = json.loads((column(request, "PAYLOAD", required=False) or [b"{}"])[0] or b"{}")
                if not isinstance(payload, dict):
                    raise RequestError("PAYLOAD must be a JSON object")
                shop = shop_of(request, 1)
                out.append(response(RESULT=np.array([[json.dumps(self.act(action, shop, payload)).encode()]], dtype=object)))
            except ValueError as err:
                out.append(error_response(err if isinstance(err, (RequestError, RecordError)) else RequestError(f"PAYLOAD: {err}")))
            except Exception as err:  # noqa: BLE001
                out.append(error_response(err))
        return out

    def act(self, action: str, shop: str, payload: dict) -> dict:
        if action == "shops":
            return {"shops": {name: open_store(self.url, name, create=False).info() for name in list_shops(self.url)}}
        if action == "info":
            return self.store(shop).info()
        if action == "product":
            return {"product": self.store(shop).product(checked(product_id, str(payload.get("id", ""))))}
        if action == "set_closed_values":
            values = payload.get("values")
            if not isinstance(values, dict) or not all(isinstance(v, list) and all(isinstance(x, str) for x in v)
                                                       for v in values.values()):
                raise RequestError('set_closed_values needs {"values": {"category": ["dress", ...], ...}}')
            self.store(shop).set_meta("closed_values", values)
            return self.store(shop).info()
        if action == "rules":
            return {"rules": self.store(shop).rules()}
        if action == "set_rules":
            try:
                rules = check_rules(payload.get("rules"))
            except RuleError as err:
                raise RequestError(f"set_rules: {err}") from None
            return {"sequence": self.store(shop).set_rules(rules), "rules": rules}
        raise RequestError(f"unknown ACTION {action!r}: info, shops, product, set_closed_values, rules or set_rules")
