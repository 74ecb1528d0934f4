"""record_events: what shoppers did with the answers of `search` / `recommend` - click,
add_to_cart, purchase - recorded in each shop's `events` table (catalog/events.py).

Rows: QUERY_ID, EVENT, PRODUCT_ID (BYTES); optional POSITION (INT32, 1-based as shown; 0 or
absent: the product's rank in that answer), VALUE (FP32, the order value; >= 0), USER, SHOP
(default "default"). Every row is checked, authorised and answered on its own: STATUS per row is
"recorded", "duplicate" (that (query id, event, product) was recorded before: sending again is
safe) or an error starting with the status it means (INVALID_ARGUMENT, NOT_FOUND,
PERMISSION_DENIED, UNAUTHENTICATED); a bad row never loses the others. Scope: a key of scope
`search` (or above) for the row's shop - the key a shop's backend already searches with; unlike
searches, a public shop's events need a key too (anyone could write its analytics otherwise).
A request without a usable key, or of the wrong types (Triton checks them against the config),
fails whole, with nothing recorded.
The rows of one execute() are written in one transaction per shop, committed with fsync before
any STATUS is returned, so an acknowledged event survives kill -9. A query id whose search row the
scorer has not flushed yet (runtime/search_log.py) is waited for, at most FLUSH_GRACE_S.
"""
from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np

from productsearch.catalog.events import EVENT_KINDS, EventRow, EventStore, events_path
from productsearch.catalog.query_ids import parse_query_id
from productsearch.catalog.records import RecordError
from productsearch.catalog.rows import DEFAULT_SHOP, UnknownShop, check_shop
from productsearch.catalog.store import catalog_url, open_store
from productsearch.core.limits import MAX_USER_BYTES, MAX_VALUE_BYTES
from productsearch.runtime.authorize import Gatekeeper, Refused
from productsearch.runtime.model_io import ModelContext, RequestError, input_array, invalid, response
from productsearch.runtime.search_log import FLUSH_GRACE_S

POLL_S = 0.05


def texts(request, name: str, rows: int | None, required: bool) -> list[bytes] | None:
    values = input_array(request, name)
    if values is None:
        if required:
            raise RequestError(f"missing input {name}")
        return None
    items = [v if isinstance(v, bytes) else bytes(v) for v in values.reshape(-1)]
    if rows is not None and len(items) != rows:
        raise RequestError(f"{name} needs one value per row ({rows}), got {len(items)}")
    return items


def numbers(request, name: str, rows: int) -> list | None:
    values = input_array(request, name)
    if values is None:
        return None
    items = values.reshape(-1).tolist()
    if len(items) != rows:
        raise RequestError(f"{name} needs one value per row ({rows}), got {len(items)}")
    return items


def decoded(raw: bytes, name: str, limit: int, required: bool) -> str:
    if len(raw) > limit:
        raise RequestError(f"{name} is at most {limit} bytes, got {len(raw)}")
    try:
        text = raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise RequestError(f"{name} must be UTF-8 text") from None
    if required and not text:
        raise RequestError(f"{name} is empty")
    return text


class RecordEventsModel:
    def initialize(self, args: dict) -> None:
        self.ctx = ModelContext.from_args(args)
        self.repository = Path(self.ctx.version_dir).parent.parent
        self.url = catalog_url(self.repository, self.ctx.parameter("catalog", "") or None)
        self.gate = Gatekeeper(self.url, self.repository)
        self.grace_s = float(self.ctx.parameter("flush_grace_s", str(FLUSH_GRACE_S)))
        self.stores: dict[str, EventStore] = {}

    def store(self, shop: str) -> EventStore:
        """The shop's event store; UnknownShop for a shop the catalog does not have."""
        if shop not in self.stores:
            open_store(self.url, shop, create=shop == DEFAULT_SHOP).close()
            self.stores[shop] = EventStore(events_path(self.url, shop, self.repository), durable=True)
        return self.stores[shop]

    def parse(self, request) -> list[tuple[str, EventRow]]:
        """(shop, row) per row; a row that fails its checks carries its error as `status`."""
        principal = self.gate.principal(request)
        qids = texts(request, "QUERY_ID", None, True)
        rows = len(qids)
        kinds, products = texts(request, "EVENT", rows, True), texts(request, "PRODUCT_ID", rows, True)
        users, shops = texts(request, "USER", rows, False), texts(request, "SHOP", rows, False)
        positions, values = numbers(request, "POSITION", rows), numbers(request, "VALUE", rows)
        now, parsed = time.time(), []
        for i in range(rows):
            row, shop = EventRow("", "", "", at=now), DEFAULT_SHOP
            try:
                shop = check_shop(decoded(shops[i], "SHOP", MAX_VALUE_BYTES, False) or DEFAULT_SHOP) if shops else shop
                row.query_id = decoded(qids[i], "QUERY_ID", MAX_VALUE_BYTES, True)
                row.event = decoded(kinds[i], "EVENT", MAX_VALUE_BYTES, True)
                row.product_id = decoded(products[i], "PRODUCT_ID", MAX_VALUE_BYTES, True)
                row.user = decoded(users[i], "USER", MAX_USER_BYTES, False) if users else ""
                if row.event not in EVENT_KINDS:
                    raise RequestError(f"EVENT {row.event!r} is not one of {', '.join(EVENT_KINDS)}")
                if positions is not None and positions[i]:
                    if positions[i] < 0:
                        raise RequestError(f"POSITION must be >= 1 (0: its rank in the answer), got {positions[i]}")
                    row.position = int(positions[i])
                if values is not None:
                    value = float(values[i])
                    if not math.isfinite(value) or value < 0:
                        raise RequestError(f"VALUE must be a finite amount >= 0, got {value}")
                    row.value = value
                qid = parse_query_id(row.query_id)
                if qid is None:
                    raise RequestError(f"QUERY_ID {row.query_id[:80]!r} is not a query id this service issued")
                if principal is None:
                    raise Refused("UNAUTHENTICATED", "no_key", f"no key: events of shop {shop!r} need a search key "
                                  "of the shop in the header 'authorization: Bearer <key>'")
                self.gate.allow(principal, shop, "search")
                if not qid.of_shop(shop):
                    raise Refused("PERMISSION_DENIED", "wrong_shop",
                                  f"QUERY_ID {row.query_id} was not issued by a search of shop {shop!r}")
            except Refused as err:
                row.status = str(err)
            except (RequestError, RecordError) as err:
                row.status = f"INVALID_ARGUMENT: {err}"
            parsed.append((shop, row))
        return parsed

    def execute(self, requests):
        parsed: list = []
        for request in requests:
            try:
                parsed.append(self.parse(request))
            except RequestError as err:
                parsed.append(err)
            except Exception as err:  # noqa: BLE001 - isolate a bug to its own request
                parsed.append(RequestError(f"could not read the request: {type(err).__name__}: {err}"))
        by_shop: dict[str, list[EventRow]] = {}
        for item in parsed:
            if not isinstance(item, Exception):
                for shop, row in item:
                    if not row.status:
                        by_shop.setdefault(shop, []).append(row)
        for shop, rows in by_shop.items():
            self.record(shop, rows)
        return [invalid(str(item)) if isinstance(item, Exception) else
                response(STATUS=np.array([[row.status.encode()] for _, row in item], dtype=object))
                for item in parsed]

    def record(self, shop: str, rows: list[EventRow]) -> None:
        """Check each row against its search (waiting for young ones), then write the good ones."""
        try:
            store = self.store(shop)
        except UnknownShop as err:
            for row in rows:
                row.status = f"NOT_FOUND: {err}"
            return
        try:
            results = store.results_of([r.query_id for r in rows])
            deadline = time.monotonic() + self.grace_s
            while time.monotonic() < deadline:
                young = [r.query_id for r in rows if r.query_id not in results
                         and time.time() - parse_query_id(r.query_id).issued < self.grace_s + 1.0]
                if not young:
                    break
                time.sleep(POLL_S)
                results.update(store.results_of(young))
            for row in rows:
                shown = results.get(row.query_id)
                if shown is None:
                    row.status = (f"NOT_FOUND: unknown query id {row.query_id} in shop {shop!r} (never issued, "
                                  "not logged, or older than the retention)")
                elif row.product_id not in shown:
                    row.status = (f"INVALID_ARGUMENT: product {row.product_id!r} is not in the results of query "
                                  f"{row.query_id} ({len(shown)} results)")
                elif row.position is None:
                    row.position = shown.index(row.product_id) + 1
            store.add_events(rows)
        except Exception as err:  # noqa: BLE001 - the store failed: these rows fail, nothing is claimed
            for row in rows:
                if not row.status:
                    row.status = f"UNAVAILABLE: the event store did not answer ({type(err).__name__}: {err}); send again"

    def finalize(self) -> None:
        self.gate.close()
        for store in self.stores.values():
            store.close()
