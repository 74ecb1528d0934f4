"""The hybrid weight per query: a query that names a product (a rare word, a brand or a code, with
some product holding every word) leans on the lexical side; a descriptive, misspelt or Chinese
query leans on the vectors. LEXICAL_WEIGHT, when sent, overrides the rule.

Why: a shop's own names (a new brand "Zorblax", a model number) mean nothing to the text tower,
while BM25 finds them at once; the weight that suits descriptions (0.1) buries them. The rule and
its three numbers were chosen by measurement on the tuning split of a generated judged query set
and reported on its held-out split (loadtest/query_bench.py, BENCHMARKS.md "Query understanding"):
    no term statistics, no words, a Chinese run, a word the catalog lacks,
    or no product holding every word                         -> BASE_WEIGHT   (vectors)
    every word known and some product holds all of them, and
    a word in at most RARE_SHARE of the products (or in one)
    or a brand of the shop                                   -> NAMED_WEIGHT  (navigational)
    otherwise (every word common: "red striped t-shirt")     -> COMMON_WEIGHT
"""
from __future__ import annotations

from dataclasses import dataclass

from productsearch.catalog.index.live import TermColumn
from productsearch.catalog.ranking.lexical import query_words

BASE_WEIGHT = 0.1
COMMON_WEIGHT = 0.3
NAMED_WEIGHT = 0.9
RARE_SHARE = 0.002


@dataclass(frozen=True)
class WeightRule:
    base: float = BASE_WEIGHT
    common: float = COMMON_WEIGHT
    named: float = NAMED_WEIGHT
    rare_share: float = RARE_SHARE
    brands_named: bool = True  # a brand of the shop counts as a name


DEFAULT_RULE = WeightRule()


def brand_words(column: TermColumn) -> list[tuple[str, ...]]:
    """Each brand of the shop as its query words (cached on the column; names only grow)."""
    cached = getattr(column, "_words", None)
    if cached is None or cached[0] != len(column.names):
        cached = column._words = (len(column.names), [tuple(query_words(n)) for n in column.names if query_words(n)])
    return cached[1]


def names_brand(column: TermColumn, text: str) -> str | None:
    """The brand the query names (all of its words present), if any."""
    words = set(query_words(text))
    for brand in brand_words(column):
        if set(brand) <= words:
            return " ".join(brand)
    return None


def choose(profile: dict | None, products: int, brand: str | None, rule: WeightRule = DEFAULT_RULE) -> tuple[float, str]:
    """(the lexical weight, why) for a query with this term profile (lexical.term_profile) in a
    catalog of `products`."""
    if profile is None:
        return rule.base, "no term statistics on this store: the default weight"
    words, documents = profile["words"], profile["documents"]
    if profile["chinese"]:
        return rule.base, "Chinese text: the vectors lead"
    if not words:
        return rule.base, "no words to match exactly"
    unknown = [w for w in words if w not in documents]
    if unknown:
        return rule.base, f"not in this catalog: {', '.join(unknown[:5])} (descriptive or misspelt): the vectors lead"
    if profile["joint"] == 0:
        return rule.base, "no product holds every word: the vectors lead"
    rarest = min(words, key=lambda w: documents[w])
    share = documents[rarest] / max(products, 1)
    held = f"{profile['joint']}{'+' if profile['joint'] >= 1000 else ''} product(s) hold every word"
    if documents[rarest] <= max(1.0, rule.rare_share * products):  # a word of one product is always rare
        return rule.named, f"rare word {rarest!r} ({documents[rarest]} of {products} products), {held}: lexical leads"
    if rule.brands_named and brand:
        return rule.named, f"names the brand {brand!r}, {held}: lexical leads"
    return rule.common, f"every word common (rarest {rarest!r} in {share:.0%} of products), {held}"
