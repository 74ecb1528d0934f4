"""The catalog's write models: catalog_gate (first step of `upsert_products`), catalog_writer
(its last step, per generation), update_fields and delete_products (catalog_admin: catalog_admin.py).

Every write needs a key of scope `write` (or `admin`) for the request's shop, in the header
`authorization: Bearer <key>` (runtime/authorize.py; the old `catalog-write-key` is an alias).
The gate (or update_fields / delete_products) takes the request's rate-limit token; the writer
records every acknowledged write in the audit trail (key id, shop, ids, sequence) before answering.

A request is atomic: all its rows or none (a savepoint inside the batch's one transaction); the
batch is committed (synchronous, fsync) before any SEQUENCE is returned, so an acknowledged write
is durable. A bad request fails alone: INVALID_ARGUMENT naming the product id and the field,
NOT_FOUND for an unknown id, UNAVAILABLE when a generation swap fenced the writer (send again).
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from productsearch.catalog.records import ClosedValue, RecordError, parse_fields, product_id
from productsearch.catalog.rows import DEFAULT_SHOP, FencedWrite, ProductWrite, UnknownProduct, UnknownShop, check_shop
from productsearch.catalog.store import catalog_url, open_store, register_generation
from productsearch.runtime.authorize import WRITE_KEY, Gatekeeper, Refused  # noqa: F401 - WRITE_KEY re-exported
from productsearch.runtime.generation_settings import generation_text_weight
from productsearch.runtime.image_input import InvalidImage, decode_image
from productsearch.runtime.metrics import Metrics
from productsearch.core.limits import MAX_IMAGE_BYTES
from productsearch.runtime.model_io import (ModelContext, RequestError, input_array, internal, invalid, not_found, response,
                                            unavailable)
from productsearch.runtime.text_input import decode_texts

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
    reasons = ((Refused, "key"), (UnknownProduct, "unknown_id"), (UnknownShop, "unknown_shop"),
               (ClosedValue, "closed_value"), (FencedWrite, "fenced"))
    return next((reason for kind, reason in reasons if isinstance(err, kind)),
                "bad_input" if isinstance(err, (RequestError, RecordError)) else "internal")


def error_response(err: Exception):
    if isinstance(err, (UnknownProduct, UnknownShop)):
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
    takes_rate = True  # the request's first python step takes its rate-limit token
    audits = True  # records its acknowledged writes in the audit trail

    def initialize(self, args: dict) -> None:
        self.ctx = ModelContext.from_args(args)
        self.metrics = Metrics.of_model(self.ctx)
        self.repository = repository = Path(self.ctx.version_dir).parent.parent
        self.url = catalog_url(repository, self.ctx.parameter("catalog", "") or None)
        self.gate = Gatekeeper(self.url, repository)
        self.stores: dict[str, object] = {}

    def store(self, shop: str, create: bool = False):
        """The shop's store; UnknownShop unless it exists or is the default (create_shop makes one)."""
        if shop not in self.stores:
            self.stores[shop] = open_store(self.url, shop, create=create or shop == DEFAULT_SHOP)
        return self.stores[shop]

    def parse(self, request) -> tuple[str, list]:
        """(shop, rows) of one request; raises RequestError."""
        raise NotImplementedError

    def write(self, store, db, row, now: float) -> int:
        """Apply one row inside the transaction; its sequence."""
        raise NotImplementedError

    def row_id(self, row) -> str:
        """The product id of one parsed row (the audit trail)."""
        return row[0]

    def authorised(self, request) -> tuple:
        """(shop, rows, principal) of one request whose key may write to its shop; raises."""
        principal = self.gate.principal(request, limit=self.takes_rate)
        shop, rows = self.parse(request)
        self.gate.allow(principal, shop, "write")
        return shop, rows, principal

    def prepare(self, store, db, rows: list) -> None:
        """Before the batch's writes (the writer reads its products' stored rows in one call)."""

    def execute(self, requests):
        parsed: list = []
        for request in requests:
            try:
                parsed.append(self.authorised(request))
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
                        err if isinstance(err, (FencedWrite, UnknownShop)) else RuntimeError(f"catalog write failed: {err}")
        self.count(parsed, results)
        self.record(parsed, results)
        return [error_response(r) if isinstance(r, Exception) else
                response(SEQUENCE=np.array(r, dtype=np.int64).reshape(-1, 1)) for r in results]

    def record(self, parsed: list, results: list) -> None:
        """The audit trail's entry for every acknowledged request (an audit that fails fails them)."""
        if not self.audits:
            return
        entries = [(p[2].key_id, self.write_kind, p[0], [self.row_id(row) for row in p[1]], max(r), None)
                   for p, r in zip(parsed, results) if not isinstance(p, Exception) and not isinstance(r, Exception) and r]
        try:
            self.gate.audit.record(entries)
        except Exception as err:  # noqa: BLE001 - written but not audited: say so, never silently
            for i, r in enumerate(results):
                if not isinstance(r, Exception):
                    results[i] = RuntimeError(f"the write is durable but its audit entry failed: {err}; send it again")

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
        self.gate.close()


class CatalogGateModel(CatalogModel):
    """catalog_gate: the key, the id, FIELDS, the title and the image of every row checked (the
    image is decoded here, so a corrupt one is refused naming its product), then passed on."""

    audits = False  # the writer records what it acknowledges

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
                shop, rows, _ = self.authorised(request)
                self.store(shop)  # an unknown shop is refused before the encoders run
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

    takes_rate = False  # the gate took it

    def row_id(self, row: ProductWrite) -> str:
        return row.id

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
                id=pid, title=decode_texts(np.array([titles[i]], dtype=object))[0], fields=checked(parse_fields, pid, fields[i]),
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

    def row_id(self, pid: str) -> str:
        return pid

    def parse(self, request) -> tuple[str, list]:
        ids = column(request, "ID")
        return shop_of(request, len(ids)), [checked(product_id, raw) for raw in ids]

    def write(self, store, db, pid: str, now: float) -> int:
        return store.delete_one(db, pid, now)
