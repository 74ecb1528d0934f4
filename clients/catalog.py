"""Catalog writes and administration over gRPC: a client class and a CLI.

    python -m clients.catalog upsert products.jsonl            # bulk load (clients.index)
    python -m clients.catalog delete P001 P002
    python -m clients.catalog set P001 price=9.99 stock=0      # update_fields, no re-encoding
    python -m clients.catalog get P001 | info | shops
    python -m clients.catalog --shop north create-shop       # a shop exists only once an admin creates it
    python -m clients.catalog closed category=dress,hat,mug    # a closed list of categories
    python -m clients.catalog rules --set rules.json           # merchandising rules (pin, hide, boost a brand)
    python -m clients.catalog synonyms --set synonyms.json     # [["sneakers", "trainers"], {"from": "tee", "to": "t-shirt"}]

Every write needs the service's admin key: `key=` / --key, else PRODUCTSEARCH_ADMIN_KEY, else the
file --key-file (default run/admin_key, where the server writes it on its host). It travels in
the gRPC header `catalog-write-key`. A write returns its SEQUENCE once it is durable; pass it as
`min_sequence` to a search to read your own write. Refused writes raise ServiceError with status
PERMISSION_DENIED / UNAUTHENTICATED (no or wrong key), INVALID_ARGUMENT (a bad record: the
message names the product and the field), NOT_FOUND (an unknown id, or a shop nobody created).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from clients.connection import (DEFAULT_URL, Connection, ServiceError, TlsOptions, add_connection_arguments, admin_key,
                                tls_from_args)
from clients.contract import (CATALOG_ADMIN, DELETE, UPDATE_FIELDS, UPSERT, Product, bytes_tensor, key_headers,
                              delete_inputs, update_inputs, upsert_inputs)

DEFAULT_KEY_FILE = Path("run") / "admin_key"


class CatalogClient(Connection):
    """Writes to the catalog (`upsert`, `update_fields`, `delete`) and reads its administrative
    state (`info`, `shops`, `product`, `products`). Writes are idempotent by product id, so the retry policy's
    retries are safe (a retried delete that had already succeeded answers NOT_FOUND)."""

    def __init__(self, url: str | list[str] = DEFAULT_URL, timeout_s: float = 10.0, retries: int = 3, backoff_s: float = 0.1,
                 tls: TlsOptions | None = None, max_backoff_s: float = 1.0, key: str | None = None,
                 key_file: str | Path | None = DEFAULT_KEY_FILE):
        super().__init__(url, timeout_s, retries, backoff_s, tls, max_backoff_s)
        self.key = key or admin_key(key_file)

    @property
    def write_headers(self) -> dict[str, str]:
        return key_headers(self.key)

    def _sequences(self, model: str, inputs: list) -> list[int]:
        result = self.infer(model, inputs, ["SEQUENCE"], headers=self.write_headers)
        return [int(v) for v in result.as_numpy("SEQUENCE").reshape(-1)]

    def upsert(self, products: list[Product], shop: str | None = None) -> list[int]:
        """Add or replace products (one atomic request); their SEQUENCEs, once durable."""
        return self._sequences(UPSERT, upsert_inputs(list(products), shop))

    def update_fields(self, changes: dict[str, dict], shop: str | None = None) -> list[int]:
        """Set fields of existing products ({"P1": {"price": 9.99, "stock": 0}}; null removes a field)."""
        return self._sequences(UPDATE_FIELDS, update_inputs(changes, shop))

    def delete(self, ids: list[str], shop: str | None = None) -> list[int]:
        return self._sequences(DELETE, delete_inputs(list(ids), shop))

    def admin(self, action: str, payload: dict | None = None, shop: str | None = None) -> dict:
        inputs = [bytes_tensor("ACTION", action), bytes_tensor("PAYLOAD", json.dumps(payload or {}))]
        if shop:
            inputs.append(bytes_tensor("SHOP", shop))
        result = self.infer(CATALOG_ADMIN, inputs, ["RESULT"], headers=self.write_headers)
        return json.loads(result.as_numpy("RESULT").reshape(-1)[0])

    def create_shop(self, shop: str) -> dict:
        """Create the shop's (empty) catalog: writes to a shop that does not exist are refused.
        Idempotent: `created` says whether it is new."""
        return self.admin("create_shop", shop=shop)

    def info(self, shop: str | None = None) -> dict:
        """Products, sequence, vectors per generation, closed lists, bytes on disk of one shop."""
        return self.admin("info", shop=shop)

    def shops(self) -> dict:
        return self.admin("shops")["shops"]

    def product(self, product_id: str, shop: str | None = None) -> dict | None:
        return self.admin("product", {"id": product_id}, shop)["product"]

    def products(self, product_ids: list[str], shop: str | None = None) -> dict[str, dict]:
        """The records of up to 100 ids in one call, by id (unknown ids are left out)."""
        return self.admin("products", {"ids": list(product_ids)}, shop)["products"]

    def rules(self, shop: str | None = None) -> list[dict]:
        """The shop's merchandising rules (README "Relevance")."""
        return self.admin("rules", {}, shop)["rules"]

    def set_rules(self, rules: list[dict], shop: str | None = None) -> int:
        """Replace the merchandising rules; returns the SEQUENCE (searches with it as
        MIN_SEQUENCE apply them)."""
        return int(self.admin("set_rules", {"rules": rules}, shop)["sequence"])

    def synonyms(self, shop: str | None = None) -> list[dict]:
        """The shop's synonyms as stored: {"words": [...]} (multi-way), {"from": p, "to": [...]} (one-way)."""
        return self.admin("synonyms", {}, shop)["synonyms"]

    def set_synonyms(self, synonyms: list, shop: str | None = None) -> int:
        """Replace the shop's synonyms (README "Relevance": ["sneakers", "trainers"] multi-way,
        {"from": "tee", "to": "t-shirt"} one-way); returns the SEQUENCE (searches with it as
        MIN_SEQUENCE use them)."""
        return int(self.admin("set_synonyms", {"synonyms": synonyms}, shop)["sequence"])

    def popularity(self, shop: str | None = None, top: int = 20) -> dict:
        """The shop's popularity setting and its products' event scores now, best first (README
        "Relevance": {"popularity": setting, "scored_with": setting, "products": [{"id", "score"}]});
        needs a write key, like analytics."""
        return self.admin("popularity", {"top": top}, shop)

    def set_popularity(self, setting: dict, shop: str | None = None) -> int:
        """Where the `popularity` boost reads popularity: {"source": "catalog"} (the product field,
        the default) or {"source": "events", "half_life_days": 7, "refresh_s": 60, "weights":
        {"click": 1, "add_to_cart": 3, "purchase": 5}} (shoppers' events, time-decayed); returns the SEQUENCE."""
        return int(self.admin("set_popularity", setting, shop)["sequence"])

    def experiment(self, shop: str | None = None) -> dict:
        """The shop's latest A/B experiment (README "Experiments"): {"experiment": {"id", "control",
        "treatment", "share", "started_at", ["ended_at", "outcome"]} or None, "running": bool, and while
        it runs "arm_users": {"control": USER, "treatment": USER}, a USER id a search is answered as
        by that arm}. A search key of the shop is enough."""
        return self.admin("experiment", {}, shop)

    def experiment_report(self, shop: str | None = None) -> dict:
        """The experiment's report: "arms" (per arm searches, ctr, conversion, zero_result_rate with
        95% intervals, p50_ms, p99_ms), "differences", "verdicts" per metric. Needs a write key (the
        shop's search log and events, as `analytics`)."""
        return self.admin("experiment_report", {}, shop)

    def set_closed_values(self, values: dict[str, list[str]], shop: str | None = None) -> dict:
        """Refuse writes whose field (e.g. category) is not one of these values."""
        return self.admin("set_closed_values", {"values": values}, shop)


def parse_assignments(pairs: list[str]) -> dict:
    """name=value pairs; a value that parses as JSON (9.99, 0, true, null, "x") is taken as such."""
    fields = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise ValueError(f"expected name=value, got {pair!r}")
        try:
            fields[name] = json.loads(value)
        except ValueError:
            fields[name] = value
    return fields


def read_json(path: Path):
    """A JSON file's value; ValueError naming the file and the place of a syntax error."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not JSON ({err})") from None
    except OSError as err:
        raise ValueError(f"{path}: {err.strerror}") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m clients.catalog", description=__doc__.split("\n")[0])
    add_connection_arguments(parser)
    parser.add_argument("--shop", default=None, help="the shop's catalog (default: the default shop)")
    parser.add_argument("--key", default=None, help="the admin key (default: PRODUCTSEARCH_ADMIN_KEY or --key-file)")
    parser.add_argument("--key-file", default=str(DEFAULT_KEY_FILE))
    sub = parser.add_subparsers(dest="action", required=True)
    upsert = sub.add_parser("upsert", help="bulk load a JSONL file (id, title, image path, fields...)")
    upsert.add_argument("products", type=Path)
    upsert.add_argument("--concurrency", type=int, default=32)
    sub.add_parser("delete", help="delete products").add_argument("ids", nargs="+")
    setter = sub.add_parser("set", help="update fields: ID name=value ...")
    setter.add_argument("id")
    setter.add_argument("fields", nargs="+")
    sub.add_parser("get", help="one product's record").add_argument("id")
    sub.add_parser("create-shop", help="create the --shop's empty catalog (writes to unknown shops are refused)")
    sub.add_parser("info", help="the shop's size, sequence and vectors per generation")
    sub.add_parser("shops", help="every shop with its size")
    closed = sub.add_parser("closed", help="closed value lists: field=a,b,c ...")
    closed.add_argument("lists", nargs="+")
    rules = sub.add_parser("rules", help="merchandising rules: print them, or --set FILE (a JSON list) to replace them")
    rules.add_argument("--set", type=Path, default=None, metavar="RULES_JSON")
    synonyms = sub.add_parser("synonyms", help="synonyms: print them, or --set FILE (a JSON list) to replace them")
    synonyms.add_argument("--set", type=Path, default=None, metavar="SYNONYMS_JSON")
    popularity = sub.add_parser("popularity", help="where the popularity boost reads popularity: print the setting "
                                "and the event scores, or --set FILE (a JSON object) to change it")
    popularity.add_argument("--set", type=Path, default=None, metavar="POPULARITY_JSON")
    args = parser.parse_args(argv)
    tls = tls_from_args(args)
    try:
        if args.action == "upsert":
            from clients.index import load_catalog_file

            report = load_catalog_file(args.products, args.url, concurrency=args.concurrency, key=args.key,
                                       key_file=args.key_file, shop=args.shop, tls=tls)
            print(report.summary())
            return 0 if not report.failed else 1
        with CatalogClient(args.url, timeout_s=args.timeout, tls=tls, key=args.key, key_file=args.key_file) as client:
            if args.action == "delete":
                out = {"sequences": client.delete(args.ids, args.shop)}
            elif args.action == "set":
                out = {"sequence": client.update_fields({args.id: parse_assignments(args.fields)}, args.shop)[0]}
            elif args.action == "get":
                out = client.product(args.id, args.shop)
            elif args.action == "create-shop":
                if not args.shop:
                    raise ValueError("create-shop needs --shop NAME")
                out = client.create_shop(args.shop)
            elif args.action == "info":
                out = client.info(args.shop)
            elif args.action == "shops":
                out = client.shops()
            elif args.action == "rules":
                out = ({"sequence": client.set_rules(read_json(args.set), args.shop)} if args.set
                       else {"rules": client.rules(args.shop)})
            elif args.action == "synonyms":
                out = ({"sequence": client.set_synonyms(read_json(args.set), args.shop)} if args.set
                       else {"synonyms": client.synonyms(args.shop)})
            elif args.action == "popularity":
                out = ({"sequence": client.set_popularity(read_json(args.set), args.shop)} if args.set
                       else client.popularity(args.shop))
            else:
                lists = {k: [x for x in str(v).split(",") if x] for k, v in
                         (pair.split("=", 1) for pair in args.lists if "=" in pair)}
                out = client.set_closed_values(lists, args.shop)
    except (ServiceError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(out, indent=1, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
