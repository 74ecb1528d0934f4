"""Input limits of the public API: the one place each limit is defined.

The python-backend models enforce them (query_gate, the encoders, the scorer); the README's
Operations table lists them. A request over a limit fails alone with INVALID_ARGUMENT.
"""
from __future__ import annotations

MAX_TEXT_BYTES = 16 * 1024  # a query or title longer than this is refused
MAX_TOKENS = 128  # within that, tokens past this many are cut ([CLS]/[SEP] included)
MAX_IMAGE_BYTES = 10 * 1024 * 1024  # 10 MiB encoded
MAX_IMAGE_PIXELS = 25_000_000  # 25 MP (e.g. 5000x5000) decoded, read from the header
MAX_TOP_K = 1000
MAX_DEPTH = 10_000  # OFFSET + TOP_K
MAX_LIST = 1000  # ids or categories in one row of a list input
MAX_VALUE_BYTES = 1024  # one element of a list input (an id, a category, a shop name)
MAX_EMBEDDING_DIM = 4096  # QUERY_EMBEDDING / TEXT_EMBEDDING / IMAGE_EMBEDDING values per row
MAX_JSON_BYTES = 4096  # BOOSTS, and the other small JSON inputs of a search
MAX_FACET_VALUES = 100  # values per facet field returned (the most frequent; scorer parameter max_facet_values)
MAX_USER_BYTES = 256  # USER (an opaque shopper or session id) of a search or an event

EMPTY_QUERY = "query is empty: send QUERY_TEXT and/or QUERY_IMAGE (both were empty)"
