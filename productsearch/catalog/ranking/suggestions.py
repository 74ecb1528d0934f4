"""Query suggestions (the first piece of the `suggest` model, issue 28): completions of a typed
prefix read from the shop's own lexical index (catalog/ranking/lexical.py), so they are exactly
as current as the catalog (the index is kept by triggers in each write's transaction).

Why the FTS5 vocabulary (`lexical_terms`, fts5vocab 'col'): it already lists every indexed term
with the number of products holding it, and a range on `term` is a prefix query SQLite answers
from the index; no second index to keep in step. What a prefix gets:
- Latin: its last (partial) word completed from the `words` column (the words before it kept as
  typed), each completion's count the products holding the completed word; a partial word of 4+
  letters that completes to too few terms also gets the terms one edit away (same first letter:
  the range scan stays one letter's terms);
- Chinese: the `grams` column holds each CJK run's characters and bigrams, so a one-character
  prefix completes to the bigrams it starts (连 -> 连衣), a longer one is offered as typed when
  the catalog holds its last bigram.
Popular queries (catalog/ranking/popular_queries.py: the shop's searches that returned results,
by at least a minimum number of shoppers) are mixed in by `mix`: they lead, most searchers first,
as they are what shoppers of this shop typed and found; the last top_k // 2 places are kept for
catalog completions when there are that many (a product just written is suggestable before anyone
searched it), and either side fills the places the other leaves empty; a catalog completion
equal to a popular query shown is dropped (it is shown once, with its searchers). Counts are not
comparable across the two: a popular query's count is its searchers, a completion's its products.
Not yet: phrase completions over several words from the catalog.
"""
from __future__ import annotations

import sqlite3

from productsearch.catalog.ranking.lexical import CJK_RUN, TOKEN

TYPO_MIN_LETTERS = 4
MAX_PREFIX_CHARS = 256


def _range(db: sqlite3.Connection, column: str, start: str, limit: int) -> list[tuple[str, int]]:
    """(term, products) of the column's terms starting with `start`, most products first."""
    return db.execute("SELECT term, doc FROM lexical_terms WHERE col=? AND term >= ? AND term < ? "
                      "ORDER BY doc DESC, term LIMIT ?", (column, start, start + "\U0010ffff", limit)).fetchall()


def one_edit(a: str, b: str) -> bool:
    """Levenshtein distance of a and b is at most 1."""
    if abs(len(a) - len(b)) > 1:
        return False
    if len(a) > len(b):
        a, b = b, a
    i = 0
    while i < len(a) and a[i] == b[i]:
        i += 1
    return a[i + (len(a) == len(b)):] == b[i + 1:]


def _typo_terms(db: sqlite3.Connection, partial: str, limit: int) -> list[tuple[str, int]]:
    found = []
    for term, doc in _range(db, "words", partial[0], 100_000):
        if any(one_edit(partial, term[:n]) for n in (len(partial) - 1, len(partial), len(partial) + 1)):
            found.append((term, doc))
    return found[:limit]


def suggest(db: sqlite3.Connection, prefix: str, top_k: int) -> list[tuple[str, int]]:
    """(suggestion, products backing it) for a typed prefix, best first, at most top_k."""
    folded = prefix.casefold()
    if CJK_RUN.search(folded[-1:] or " "):
        run = CJK_RUN.findall(folded)[-1]
        head = folded[:len(folded) - len(run)]
        if len(run) == 1:
            return [(head + term, doc) for term, doc in _range(db, "grams", run, 10 * top_k) if len(term) == 2][:top_k]
        hit = db.execute("SELECT doc FROM lexical_terms WHERE col='grams' AND term=?", (run[-2:],)).fetchone()
        return [(folded.strip(), int(hit[0]))] if hit else []
    words = TOKEN.findall(folded)
    if not words:
        return []
    partial = words[-1] if not folded[-1:].isspace() else ""
    head = " ".join(words[:-1] if partial else words)
    head = head + " " if head else ""
    if not partial:
        return []
    found = _range(db, "words", partial, top_k)
    if len(found) < top_k and len(partial) >= TYPO_MIN_LETTERS and partial.isalpha():
        known = {term for term, _ in found}
        found += [t for t in _typo_terms(db, partial, top_k) if t[0] not in known][:top_k - len(found)]
    return [(head + term, int(doc)) for term, doc in found]


def mix(popular: list[tuple[str, int]], catalog: list[tuple[str, int]], top_k: int) -> list[tuple[str, int]]:
    """Popular queries first, top_k // 2 places kept for catalog completions (the module's docstring)."""
    unlike = lambda shown: [item for item in catalog if item[0] not in {text for text, _ in shown}]  # noqa: E731
    lead = popular[:top_k - min(len(unlike(popular)), top_k // 2)]
    return lead + unlike(lead)[:top_k - len(lead)]
