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

import numpy as np

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


def letter_mask(word: str) -> int:
    """The letters a word holds, one bit each (a-z; other letters share the top 6 bits)."""
    mask = 0
    for c in word:
        mask |= 1 << (ord(c) - 97 if "a" <= c <= "z" else 26 + ord(c) % 6)
    return mask


POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


class Vocabulary:
    """The catalog's correctable words with how many products hold each. An edit changes at most two
    bits of a word's letter mask, so one numpy pass over every word's length and mask keeps the few
    within reach, and only those are compared letter by letter (~5 ms a word at 50,000 words)."""

    def __init__(self, documents: dict[str, int]):
        self.documents = documents
        self.corrections: dict[str, str | None] = {}  # per unknown word, until the catalog changes
        self.words = list(documents)
        self.lengths = np.array([len(w) for w in self.words], dtype=np.int32)
        self.masks = np.array([letter_mask(w) for w in self.words], dtype=np.uint32)

    def correction(self, word: str) -> str | None:
        """The known word closest to an unknown one, or None (see the module docstring)."""
        if word not in self.corrections:
            self.corrections[word] = self.closest(word)
        return self.corrections[word]

    def closest(self, word: str) -> str | None:
        if word in self.documents or plain(word) in self.documents or not CORRECTABLE.fullmatch(word):
            return None
        limit = max_edits(word)
        differing = (self.masks ^ np.uint32(letter_mask(word))).view(np.uint8).reshape(-1, 4)
        near = (np.abs(self.lengths - len(word)) <= limit) & (POPCOUNT[differing].sum(axis=1) <= 2 * limit)
        best: tuple | None = None
        for i in np.flatnonzero(near).tolist():
            known = self.words[i]
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
