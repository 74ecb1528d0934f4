"""Query suggestions client: completions of what a shopper has typed (the `suggest` model).

    from clients.suggest import SuggestClient
    with SuggestClient("localhost:8001") as client:
        client.suggest("blue pol", top_k=5)   # [("blue polka", 120), ...]: (suggestion, products)

CLI: python -m clients.suggest PREFIX [--top-k 10] [--shop S] (a private shop's search key in
PRODUCTSEARCH_KEY: never on the command line).
"""
from __future__ import annotations

import argparse
import os

from clients.connection import DEFAULT_URL, Connection, TlsOptions, add_connection_arguments, tls_from_args
from clients.contract import bytes_tensor, key_headers, number_tensor

SUGGEST = "suggest"
KEY_ENV = "PRODUCTSEARCH_KEY"


class SuggestClient(Connection):
    """Calls `suggest` (read-only: retried like a search)."""

    def __init__(self, url: str | list[str] = DEFAULT_URL, timeout_s: float = 10.0, retries: int = 3,
                 backoff_s: float = 0.1, tls: TlsOptions | None = None, max_backoff_s: float = 1.0,
                 key: str | None = None):
        super().__init__(url, timeout_s, retries, backoff_s, tls, max_backoff_s)
        self.key = key

    def suggest(self, prefix: str, top_k: int = 10, shop: str | None = None) -> list[tuple[str, int]]:
        """(suggestion, products backing it), best first."""
        inputs = [bytes_tensor("PREFIX", prefix), number_tensor("TOP_K", top_k, "INT32")]
        if shop:
            inputs.append(bytes_tensor("SHOP", shop))
        result = self.infer(SUGGEST, inputs, ["SUGGESTIONS", "SUGGESTION_COUNTS"], headers=key_headers(self.key))
        texts, counts = result.as_numpy("SUGGESTIONS")[0], result.as_numpy("SUGGESTION_COUNTS")[0]
        return [(t.decode(), int(c)) for t, c in zip(texts, counts) if t]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Query suggestions for a typed prefix")
    parser.add_argument("prefix")
    parser.add_argument("--top-k", type=int, default=10)
    parser.add_argument("--shop")
    add_connection_arguments(parser)
    args = parser.parse_args(argv)
    with SuggestClient(args.url, args.timeout, tls=tls_from_args(args), key=os.environ.get(KEY_ENV)) as client:
        for text, count in client.suggest(args.prefix, args.top_k, args.shop):
            print(f"{count:8d}  {text}")


if __name__ == "__main__":
    main()
