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
- Latin, phrases (`phrases`): the catalog's names (title, localized titles, brand) that hold the
  typed words and one of the PHRASE_EXPANDED best completed words as a phrase (one FTS5 phrase
  query, at most PHRASE_ROWS products read) offer what follows it there, up to PHRASE_WORDS words
  in all ("blue pol" -> "blue polo shirt"), not ending on a stopword, not going into Chinese;
  ranked by the products read holding each, a phrase dropped when a longer one holds all of them,
  and each shown one's count is the products whose indexed words hold it (an FTS5 phrase count:
  it finds as many by `search`'s lexical side). They alternate with the word completions, a word
  first, and take at most a quarter of `top_k` (the model asks for 2 * TOP_K, so up to half of
  the places it shows). Not typo-tolerant: the typed words must be the catalog's;
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
Counts: a word completion's is the products holding the completed word (the typed words before
it not counted), a phrase's the products holding the whole phrase.
"""
from __future__ import annotations

import sqlite3
import unicodedata
from collections import Counter

from productsearch.catalog.ranking.lexical import CJK_RUN, STOPWORDS, TOKEN, quoted

TYPO_MIN_LETTERS = 4
MAX_PREFIX_CHARS = 256
PHRASE_WORDS = 4  # words of a phrase completion at most (typed ones included; one-letter ones not counted)
PHRASE_EXPANDED = 2  # word completions (the best) whose phrases are looked for
PHRASE_ROWS = 32  # products read for phrases per prefix
# A product's names: its title, its localized titles (title_en, ...) and its brand.
NAMES = ("SELECT p.title, (SELECT group_concat(value, char(10)) FROM json_each(p.fields) WHERE type = 'text' AND "
         "(key = 'brand' OR key GLOB 'title_[a-z][a-z]')) FROM lexical JOIN products p ON p.id = lexical.id "
         "WHERE lexical MATCH ? LIMIT ?")


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


def fold(text: str) -> str:
    """Case and accents folded, as the lexical index's tokenizer does (remove_diacritics)."""
    if text.isascii():
        return text.lower()
    return "".join(c for c in unicodedata.normalize("NFKD", text.casefold()) if not unicodedata.combining(c))


def _continuations(text: str, head: list[str], words: set[str]) -> set[str]:
    """The phrases of a folded name that start at `head` + one of `words` and go on by 1+ words
    (PHRASE_WORDS in all), each as the name writes it from that word on; none ends on a stopword
    or a one-letter word, none goes into Chinese."""
    tokens = list(TOKEN.finditer(text))
    folded = [t.group() for t in tokens]
    found = set()
    for i in range(len(tokens) - len(head) - 1):
        if folded[i:i + len(head)] != head or folded[i + len(head)] not in words:
            continue
        start, counted = i + len(head), sum(len(w) > 1 for w in head) + 1
        for end in range(start + 1, len(tokens)):
            token = folded[end]
            if CJK_RUN.search(token):
                break
            counted += len(token) > 1
            if counted > PHRASE_WORDS:
                break
            if len(token) > 1 and token not in STOPWORDS:
                found.add(text[tokens[start].start():tokens[end].end()])
    return found


def phrases(db: sqlite3.Connection, head: list[str], words: list[str], limit: int) -> list[tuple[str, int]]:
    """(phrase, products holding it) of the catalog's names that go on from the typed `head`
    words and one of the completed `words` (the phrase from that word on), most products first,
    at most `limit`; a phrase is dropped when a longer one holds all its products read."""
    head = [fold(w) for w in head]
    if sum(len(w) > 1 for w in head) + 2 > PHRASE_WORDS:
        return []
    expanded = {fold(w) for w in words[:PHRASE_EXPANDED]}
    if not expanded:
        return []
    match = "words : (" + " OR ".join(quoted(" ".join(head + [w])) for w in sorted(expanded)) + ")"
    read: Counter = Counter()
    for title, others in db.execute(NAMES, (match, PHRASE_ROWS)):
        names = {fold(n) for n in [title] + (others.split("\n") if others else [])}
        read.update({p for n in names for p in _continuations(n, head, expanded)})
    extended: dict[str, int] = {}  # phrase -> products read of its longest-held extension
    for phrase, n in read.items():
        shorter = phrase
        while " " in shorter:
            shorter = shorter.rsplit(" ", 1)[0]
            extended[shorter] = max(extended.get(shorter, 0), n)
    kept = [p for p, n in read.items() if extended.get(p, 0) < n]
    kept.sort(key=lambda p: (-read[p], p))
    counted = [(p, _holding(db, head, p)) for p in kept[:limit]]
    return sorted(counted, key=lambda item: -item[1])


def _holding(db: sqlite3.Connection, head: list[str], phrase: str) -> int:
    """Products whose indexed words hold the phrase (FTS5 phrase query)."""
    return db.execute("SELECT count(*) FROM lexical WHERE lexical MATCH ?",
                      ("words : " + quoted(" ".join(head + [phrase])),)).fetchone()[0]


def alternate(first: list, second: list) -> list:
    """first[0], second[0], first[1], ...; the longer list's rest at the end."""
    mixed = [item for pair in zip(first, second) for item in pair]
    n = min(len(first), len(second))
    return mixed + first[n:] + second[n:]


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
    completed = [(head + term, int(doc)) for term, doc in found]
    found_phrases = [(head + p, n) for p, n in phrases(db, words[:-1], [term for term, _ in found], max(1, top_k // 4))]
    return alternate(completed, found_phrases)[:top_k]


def mix(popular: list[tuple[str, int]], catalog: list[tuple[str, int]], top_k: int) -> list[tuple[str, int]]:
    """Popular queries first, top_k // 2 places kept for catalog completions (the module's docstring)."""
    unlike = lambda shown: [item for item in catalog if item[0] not in {text for text, _ in shown}]  # noqa: E731
    lead = popular[:top_k - min(len(unlike(popular)), top_k // 2)]
    return lead + unlike(lead)[:top_k - len(lead)]
