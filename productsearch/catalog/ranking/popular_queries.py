"""A shop's popular queries that returned results, counted from its search log (the `searches`
table, catalog/events.py): the second source of the `suggest` model's completions (issue 28).

What counts: rows of kind text or text+image (not recommend, not a photo alone, not a shadow
experiment's repeat of an answer) searched within the window (`since`), per normalised query
(case-folded, runs of spaces collapsed). A query's count is its distinct non-empty USERs plus its
searches without a USER (an anonymous search cannot be told from another shopper's), counting
only searches that returned products; it is suggested once that count reaches `min_searchers`,
so one shopper's odd query, or a private string a shopper pasted, is never offered to others.
A query whose latest search in the window returned nothing has dropped out (the catalog no
longer answers it), whatever it scored before; so has a query longer than MAX_QUERY_CHARS.

Matching a typed prefix (`PopularQueries.complete`): queries starting with the normalised prefix
(a Chinese prefix is a character prefix of the query), then, for a last partial Latin word of
TYPO_MIN_LETTERS+ letters, queries whose word at that place starts within one edit of it (same
first letter), as catalog completions are typo-tolerant (suggestions.py); most searchers first.
"""
from __future__ import annotations

import bisect
import sqlite3
from dataclasses import dataclass, field

from productsearch.catalog.ranking.suggestions import TYPO_MIN_LETTERS, one_edit

KINDS = ("text", "text+image")
PHOTO_ALONE = "photo"  # search_log.py's query text of a text+image row without words
MAX_QUERY_CHARS = 100
MAX_KEPT = 20_000  # most-searched queries kept per shop: bounds the memory a big log can take
COUNTED = f"""
SELECT query, user, SUM(zero_result = 0), MAX(CASE WHEN zero_result = 0 THEN at END),
       MAX(CASE WHEN zero_result = 1 THEN at END)
FROM searches
WHERE at >= ? AND kind IN ({",".join("?" * len(KINDS))}) AND arm NOT LIKE 'shadow%'
  AND NOT (kind = 'text+image' AND query = '{PHOTO_ALONE}')
GROUP BY query, user
"""


def normalise(query: str) -> str:
    return " ".join(query.casefold().split())


def count_popular(db: sqlite3.Connection, since: float, min_searchers: int) -> dict[str, int]:
    """Normalised query -> its searchers (see the module's docstring) for the queries that reach
    `min_searchers`, at most MAX_KEPT of them (the most searched)."""
    users: dict[str, set[str]] = {}
    anonymous: dict[str, int] = {}
    last_answered: dict[str, float] = {}
    last_empty: dict[str, float] = {}
    for query, user, answered, answered_at, empty_at in db.execute(COUNTED, (since, *KINDS)):
        key = normalise(query)
        if not key or len(key) > MAX_QUERY_CHARS:
            continue
        if user and answered:
            users.setdefault(key, set()).add(user)
        elif answered:
            anonymous[key] = anonymous.get(key, 0) + answered
        if answered_at is not None:
            last_answered[key] = max(last_answered.get(key, 0.0), answered_at)
        if empty_at is not None:
            last_empty[key] = max(last_empty.get(key, 0.0), empty_at)
    counts = {q: len(users.get(q, ())) + anonymous.get(q, 0) for q in users.keys() | anonymous.keys()}
    kept = [(n, q) for q, n in counts.items()
            if n >= min_searchers and last_empty.get(q, 0.0) <= last_answered.get(q, 0.0)]
    kept.sort(key=lambda item: (-item[0], item[1]))
    return {q: n for n, q in kept[:MAX_KEPT]}


@dataclass
class PopularQueries:
    """One shop's popular queries at one refresh, sorted for prefix ranges."""

    counts: dict[str, int] = field(default_factory=dict)
    computed_at: float = 0.0

    def __post_init__(self) -> None:
        self.sorted = sorted(self.counts)

    def _range(self, start: str) -> list[str]:
        lo = bisect.bisect_left(self.sorted, start)
        hi = bisect.bisect_left(self.sorted, start + "\U0010ffff")
        return self.sorted[lo:hi]

    def complete(self, prefix: str, limit: int) -> list[tuple[str, int]]:
        """(query, searchers) of the popular queries completing `prefix`, best first."""
        if not self.sorted:
            return []
        typed = normalise(prefix) + (" " if prefix[-1:].isspace() and prefix.strip() else "")
        if not typed.strip():
            return []
        exact = self._range(typed)
        found = sorted(exact, key=lambda q: (-self.counts[q], q))[:limit]
        head, _, partial = typed.rpartition(" ")
        if len(found) < limit and len(partial) >= TYPO_MIN_LETTERS and partial.isalpha():
            head = head + " " if head else ""
            known = set(exact)
            near = [q for q in self._range(head + partial[0]) if q not in known and self._near(q[len(head):], partial)]
            found += sorted(near, key=lambda q: (-self.counts[q], q))[:limit - len(found)]
        return [(q, self.counts[q]) for q in found]

    @staticmethod
    def _near(rest: str, partial: str) -> bool:
        word = rest.split(" ", 1)[0]
        return any(one_edit(partial, word[:n]) for n in (len(partial) - 1, len(partial), len(partial) + 1))
