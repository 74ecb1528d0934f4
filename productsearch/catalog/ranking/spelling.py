"""Did you mean: a query word the shop's catalog does not know (not in the FTS5 `words` vocabulary),
close to one it knows, gets that word instead (the CORRECTED_QUERY output).

Only Latin words of 4+ letters are corrected (no digits: codes are matched as typed; Chinese and
short words are left alone: at one edit from many words, a correction would be a guess). A word is
known when some product holds it, so a known word is never corrected. The correction is the known
word at the smallest edit distance (Levenshtein with adjacent transpositions), at most 1 for words
of 4-5 letters and 2 from 6, ties to the word more products hold, then alphabetically.
"""
from __future__ import annotations

import re
import unicodedata

from productsearch.catalog.ranking.lexical import STOPWORDS, TOKEN

CORRECTABLE = re.compile(r"[a-z\u00e0-\u024f]{4,}")  # fullmatch: the (Latin) words a vocabulary keeps and corrects
MAX_VOCABULARY = 200_000  # words read from the index, the most frequent first


def plain(word: str) -> str:
    """The word as FTS5's tokenizer indexes it (remove_diacritics): "café" is the known "cafe"."""
    return "".join(c for c in unicodedata.normalize("NFKD", word) if not unicodedata.combining(c))


def max_edits(word: str) -> int:
    return 1 if len(word) < 6 else 2


def distance(a: str, b: str, limit: int) -> int:
    """Edit distance (insert, delete, substitute, swap two adjacent letters), or limit + 1 past it."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    before, row = None, list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i] + [0] * len(b)
        for j, cb in enumerate(b, 1):
            current[j] = min(row[j] + 1, current[j - 1] + 1, row[j - 1] + (ca != cb))
            if before is not None and i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                current[j] = min(current[j], before[j - 2] + 1)
        if min(current) > limit:
            return limit + 1
        before, row = row, current
    return row[-1]


class Vocabulary:
    """The catalog's correctable words with how many products hold each, grouped by length."""

    def __init__(self, documents: dict[str, int]):
        self.documents = documents
        self.by_length: dict[int, list[str]] = {}
        for word in documents:
            self.by_length.setdefault(len(word), []).append(word)

    def correction(self, word: str) -> str | None:
        """The known word closest to an unknown one, or None (see the module docstring)."""
        if word in self.documents or plain(word) in self.documents or not CORRECTABLE.fullmatch(word):
            return None
        limit = max_edits(word)
        best: tuple | None = None
        for length in range(len(word) - limit, len(word) + limit + 1):
            for known in self.by_length.get(length, ()):
                d = distance(word, known, limit)
                if d <= limit:
                    key = (d, -self.documents[known], known)
                    best = key if best is None or key < best else best
        return None if best is None else best[2]


def read_vocabulary(db) -> Vocabulary:
    """The vocabulary of a shop's FTS5 index (lexical.py's `lexical_terms`)."""
    rows = db.execute("SELECT term, doc FROM lexical_terms WHERE col='words' ORDER BY doc DESC LIMIT ?",
                      (MAX_VOCABULARY,)).fetchall()
    return Vocabulary({term: int(doc) for term, doc in rows if CORRECTABLE.fullmatch(term)})


def corrected(text: str, unknown: list[str], vocabulary: Vocabulary, keep: set[str]) -> tuple[str, dict[str, str]]:
    """(the text with each correctable unknown word replaced, {word: correction}); the text is ""
    when nothing was corrected. `unknown`: the query's words the catalog lacks (casefolded);
    `keep`: words never corrected (a synonym of the shop's)."""
    fixes = {}
    for word in unknown:
        if word in keep or word in STOPWORDS:
            continue
        fix = vocabulary.correction(word)
        if fix:
            fixes[word] = fix
    if not fixes:
        return "", {}
    return replaced(text, fixes), fixes


def replaced(text: str, fixes: dict[str, str]) -> str:
    """The text with each word in `fixes` (casefolded) replaced by its correction."""
    return TOKEN.sub(lambda m: fixes.get(m.group().casefold(), m.group()), text)
