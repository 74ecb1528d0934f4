"""A shop's synonyms: words its shoppers type for what its catalog calls otherwise, stored with the
catalog (the store's meta `synonyms`, changed through catalog_admin while serving and logged like
any write, so the SEQUENCE `set_synonyms` returns works as a search's MIN_SEQUENCE).

The JSON form (`python -m clients.catalog synonyms --set synonyms.json`) is a list of entries:
    ["sneakers", "trainers", "运动鞋"]           multi-way: each phrase finds the others
    {"from": "tee", "to": "t-shirt"}             one-way: "tee" finds t-shirts, not the reverse
    {"from": "tee", "to": ["t-shirt", "top"]}    one-way to several phrases
Phrases are matched after normalization (merchandising.normalized_query: case folded, punctuation
dropped), a Latin phrase as whole words of the query, a Chinese one anywhere in it. A matched
phrase adds its synonyms to the LEXICAL query (the FTS5 / BM25 query is an OR of terms, so this is
the OR of the synonyms); the dense query is the text tower's of the shopper's own text. EXPLAIN
shows the expansion in its `query` part.
"""
from __future__ import annotations

from productsearch.catalog.ranking.lexical import CJK_RUN
from productsearch.catalog.ranking.merchandising import normalized_query

MAX_ENTRIES = 10_000
MAX_PHRASES = 32  # per entry
MAX_PHRASE_CHARS = 100
MAX_EXPANSION = 16  # phrases added to one query


class SynonymError(ValueError):
    """A synonym entry the catalog refuses; the message says which and why."""


def phrase(value, where: str) -> str:
    """A phrase as stored (normalized), or SynonymError."""
    if not isinstance(value, str) or not normalized_query(value) or len(value) > MAX_PHRASE_CHARS:
        raise SynonymError(f"{where} must be a non-empty string of at most {MAX_PHRASE_CHARS} characters "
                           f"with a letter or digit, got {value!r}")
    return normalized_query(value)


def check_synonyms(entries) -> list[dict]:
    """The entries as stored ({"words": [...]} multi-way, {"from": p, "to": [...]} one-way,
    phrases normalized), or SynonymError naming the first bad one."""
    if not isinstance(entries, list) or len(entries) > MAX_ENTRIES:
        raise SynonymError(f"synonyms must be a JSON list of at most {MAX_ENTRIES} entries: "
                           '["sneakers", "trainers"] (multi-way) or {"from": "tee", "to": "t-shirt"} (one-way)')
    out = []
    for i, entry in enumerate(entries):
        if isinstance(entry, list):
            if not 2 <= len(entry) <= MAX_PHRASES:
                raise SynonymError(f"synonym {i}: a multi-way list needs 2 to {MAX_PHRASES} phrases, got {len(entry)}")
            words = list(dict.fromkeys(phrase(p, f"synonym {i}, phrase {j}") for j, p in enumerate(entry)))
            if len(words) < 2:
                raise SynonymError(f"synonym {i}: its phrases are all the same after normalization: {words}")
            out.append({"words": words})
        elif isinstance(entry, dict):
            unknown = set(entry) - {"from", "to"}
            if unknown or "from" not in entry or "to" not in entry:
                raise SynonymError(f'synonym {i}: a one-way entry is {{"from": phrase, "to": phrase or [phrases]}}, '
                                   f"got keys {sorted(entry)}")
            targets = entry["to"] if isinstance(entry["to"], list) else [entry["to"]]
            if not 1 <= len(targets) <= MAX_PHRASES:
                raise SynonymError(f"synonym {i}: to needs 1 to {MAX_PHRASES} phrases, got {len(targets)}")
            source = phrase(entry["from"], f"synonym {i}: from")
            to = [p for p in dict.fromkeys(phrase(t, f"synonym {i}: to") for t in targets) if p != source]
            if not to:
                raise SynonymError(f"synonym {i}: to names only the from phrase {source!r}")
            out.append({"from": source, "to": to})
        else:
            raise SynonymError(f"synonym {i} is neither a JSON list of phrases nor a {{\"from\", \"to\"}} object: {entry!r}")
    return out


def contains(query: str, phrase_: str) -> bool:
    """Whether the normalized query holds the phrase: whole words, or anywhere for Chinese."""
    return f" {phrase_} " in f" {query} " or (bool(CJK_RUN.search(phrase_)) and phrase_ in query)


def expansion(synonyms: list[dict], text: str) -> list[str]:
    """The phrases the shop's synonyms add to the text (none it already holds), in entry order."""
    query = normalized_query(text)
    if not query or not synonyms:
        return []
    added: dict[str, None] = {}
    for entry in synonyms:
        if "words" in entry:
            if any(contains(query, p) for p in entry["words"]):
                added.update((p, None) for p in entry["words"] if not contains(query, p))
        elif contains(query, entry["from"]):
            added.update((p, None) for p in entry["to"] if not contains(query, p))
    return list(added)[:MAX_EXPANSION]


def lexical_query(synonyms: list[dict], text: str) -> str:
    """The text searched on the lexical side: the text, then the phrases its synonyms add."""
    return " ".join([text] + expansion(synonyms, text))


def covered_words(synonyms: list[dict], text: str) -> set[str]:
    """The query's words that a synonym matched (never spell-corrected: the shop said what they mean)."""
    query = normalized_query(text)
    matched = set()
    for entry in synonyms:
        for p in entry.get("words", [entry.get("from")]):
            if p and contains(query, p):
                matched.update(p.split())
    return matched


def readings(synonyms: list[dict], text: str, limit: int = 4) -> list[str]:
    """The query with a matched phrase replaced by one of its synonyms (at most `limit`): the ways
    the catalog may name what the shopper typed; the hybrid weight takes the most navigational."""
    query = normalized_query(text)
    out: dict[str, None] = {}
    for entry in synonyms:
        pairs = ([(m, p) for m in entry["words"] if contains(query, m) for p in entry["words"] if p != m]
                 if "words" in entry else [(entry["from"], p) for p in entry["to"]] if contains(query, entry["from"]) else [])
        for matched, other in pairs:
            reading = " ".join(f" {query} ".replace(f" {matched} ", f" {other} ").split()) if f" {matched} " in f" {query} " \
                else query.replace(matched, f" {other} ")
            out.setdefault(" ".join(reading.split()), None)
            if len(out) >= limit:
                return list(out)
    return list(out)
