"""Search client: a class for e-commerce backends and a CLI for people.

    python -m clients.search "red striped t-shirt" --top-k 5
    python -m clients.search --image photo.jpg
    python -m clients.search "like this but in red" --image photo.jpg --url localhost:8001
    python -m clients.search "summer dress" --category dress --price-max 40 --page 1
    python -m clients.search --like P00042                          # more like this product

Thin by design: tritonclient's gRPC client and numpy. Tensor names and packing come from
clients.contract, deadlines, retries and TLS from clients.connection (a search is read-only, so
every retry the policy allows is safe).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from clients.connection import (DEAD_STUB, DEFAULT_URL, ServiceError, TlsOptions,  # noqa: F401
                                add_connection_arguments, is_retryable, tls_from_args)
from clients.catalog import CatalogClient
from clients.contract import (RANKED_OUTPUTS, RECOMMEND, SEARCH, SEARCH_OUTPUTS, Filters, ReadOptions, Relevance,
                              SearchResult, recommend_inputs, search_inputs)

SearchError = ServiceError  # the name callers know; raised for every failed call


class SearchClient(CatalogClient):
    """Calls the `search` and `recommend` ensembles over gRPC, and (with the admin key) the
    catalog writes of CatalogClient: `upsert`, `update_fields`, `delete`. See Connection for the
    deadline, retry and TLS options; `ssl`/`root_certificates`/`private_key`/`certificate_chain`
    are the tritonclient-style TLS arguments, the same as `tls=TlsOptions(...)`."""

    def __init__(self, url: str | list[str] = DEFAULT_URL, timeout_s: float = 10.0, retries: int = 3, backoff_s: float = 0.1,
                 ssl: bool = False, root_certificates: str | None = None, private_key: str | None = None,
                 certificate_chain: str | None = None, max_backoff_s: float = 1.0, tls: TlsOptions | None = None,
                 key: str | None = None, key_file: str | Path | None = None):
        if tls is None and (ssl or root_certificates or certificate_chain):
            tls = TlsOptions(root_certificates, certificate_chain, private_key)
        super().__init__(url, timeout_s, retries, backoff_s, tls, max_backoff_s, key=key, key_file=key_file)

    def search(self, text: str | None = None, image: bytes | str | Path | None = None, top_k: int = 10,
               offset: int = 0, text_weight: float | None = None, filters: Filters | None = None,
               read: ReadOptions | None = None, relevance: Relevance | None = None,
               user: str | None = None) -> SearchResult:
        """Best products for a text and/or image query (image: encoded bytes or a file path).
        offset: skip that many (pages: offset = page * top_k); text_weight: text vs image in
        the fused query, 0..1 (None: the server's default, 0.5); filters: see `Filters`;
        read: the shop and the MIN_SEQUENCE (read-your-writes), see `ReadOptions`; relevance:
        hybrid lexical weight, boosts, group cap, facets, explain, see `Relevance`; user: USER, the
        shopper's opaque id (the search log; the experiment arm). The answer's `query_id` is what
        events about it refer to (clients.events)."""
        inputs = search_inputs(text, image, top_k, offset, text_weight, filters, read, relevance, user)
        return SearchResult.from_response(self.infer(SEARCH, inputs, list(SEARCH_OUTPUTS), headers=self.write_headers))

    def recommend(self, item_ids: list[str], top_k: int = 10, weights: list[float] | None = None, offset: int = 0,
                  filters: Filters | None = None, read: ReadOptions | None = None,
                  relevance: Relevance | None = None, user: str | None = None) -> SearchResult:
        """Products like `item_ids` (one id: "more like this"; a shopper's recently viewed ids,
        most recent first: "for this shopper"), never the items themselves. weights: one per id
        (None: recency weights 0.8**i). An unknown id raises INVALID_ARGUMENT."""
        inputs = recommend_inputs(item_ids, top_k, weights, offset, filters, read, relevance, user)
        return SearchResult.from_response(self.infer(RECOMMEND, inputs, list(RANKED_OUTPUTS), headers=self.write_headers))


def format_result(result: SearchResult) -> str:
    lines = [f"{'rank':>4}  {'id':<8} {'score':>6}  title   (generation {result.generation}, query id {result.query_id})"]
    if result.corrected_query:
        lines.insert(0, f"did you mean: {result.corrected_query}")
    for rank, (pid, score, title) in enumerate(result.rows(), 1):
        lines.append(f"{rank:>4}  {pid:<8} {score:6.3f}  {title}")
        if rank <= len(result.explanations):
            lines.append(f"{'':>6}{json.dumps(result.explanations[rank - 1], ensure_ascii=False)}")
    for name, counts in result.facets.items():
        lines.append(f"{name}: " + ", ".join(f"{value} ({count})" for value, count in counts.items()))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m clients.search", description="Search the product catalog.")
    parser.add_argument("text", nargs="?", default=None, help="query words")
    parser.add_argument("--image", type=Path, help="query photo (JPEG/PNG)")
    parser.add_argument("--top-k", type=int, default=10)
    parser.add_argument("--page", type=int, default=0, help="page number (0 = first), top-k results a page")
    parser.add_argument("--text-weight", type=float, default=None, help="text vs image, 0..1 (default 0.5)")
    parser.add_argument("--category", action="append", default=None, help="only this category (repeatable: any of)")
    parser.add_argument("--price-min", type=float, default=None)
    parser.add_argument("--price-max", type=float, default=None)
    parser.add_argument("--exclude", action="append", default=None, help="never this product id (repeatable)")
    parser.add_argument("--like", action="append", default=None, metavar="PRODUCT_ID",
                        help="recommend instead: products like this id (repeatable: recently viewed, most recent first)")
    parser.add_argument("--in-stock", action="store_true", help="only products in stock")
    parser.add_argument("--lexical-weight", type=float, default=None, help="hybrid: lexical vs vector, 0..1 (0: vectors only)")
    parser.add_argument("--hybrid-mode", choices=("rrf", "weighted"), default=None)
    parser.add_argument("--boost", action="append", default=[], metavar="NAME=WEIGHT",
                        help="rating, popularity, recency or in_stock (repeatable)")
    parser.add_argument("--max-per-group", type=int, default=None, help="at most N results per brand (or --group-by)")
    parser.add_argument("--group-by", default=None)
    parser.add_argument("--facet", action="append", default=None, help="count this field's values (repeatable)")
    parser.add_argument("--explain", action="store_true", help="print why each result ranks where it does")
    parser.add_argument("--shop", default=None, help="the shop's catalog (default: the default shop)")
    parser.add_argument("--min-sequence", type=int, default=0, help="answer only once the catalog has this write")
    add_connection_arguments(parser)
    args = parser.parse_args(argv)
    with SearchClient(args.url, timeout_s=args.timeout, tls=tls_from_args(args)) as client:
        try:
            filters = Filters(args.category, args.price_min, args.price_max, args.exclude, args.in_stock)
            read = ReadOptions(args.shop, args.min_sequence)
            boosts = {name: float(value) for name, value in (b.split("=", 1) for b in args.boost)}
            relevance = Relevance(args.lexical_weight, args.hybrid_mode, boosts or None, args.max_per_group, args.group_by,
                                  args.facet, args.explain)
            if args.like:
                result = client.recommend(args.like, args.top_k, offset=args.page * args.top_k, filters=filters, read=read,
                                          relevance=relevance)
            else:
                result = client.search(args.text, args.image, args.top_k, offset=args.page * args.top_k,
                                       text_weight=args.text_weight, filters=filters, read=read, relevance=relevance)
        except SearchError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
    print(format_result(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
