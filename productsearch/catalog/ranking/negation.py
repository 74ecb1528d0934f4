"""Negation in a shopper's text: "-red", "not red", "no stripes", "without logo", "不要红色", "非红色",
"除了红色" become exclusions applied BEFORE ranking, and the rest of the text is searched as usual.

Two steps, because only the second needs the shop:
1. `parse(text)` finds the negated phrases by their form alone: a word after "-" (at a word's
   start), "not", "no" or "without"; a Chinese run after 不要 / 非 / 除了 / 不含 / 没有, up to 的, a
   punctuation mark, a space or the end (以外 / 之外 and 的 after it dropped);
2. `resolve(negated, columns)` maps each phrase to the shop's closed values (colour, pattern,
   category, brand: the values its products carry): a value matches a word after case folding and
   a plural / participle ending ("stripes" = "striped", "dresses" = "dress"), or a Chinese phrase
   through ZH_VALUES (common colours, patterns and categories) or the value itself; a Chinese
   phrase that only STARTS with a value ("非红色连衣裙") gives the rest back to the positive text.
   A negated word that is no closed value of the shop falls back to a lexical exclusion: the
   products whose text matches it (batch.py).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

NEGATABLE_FIELDS = ("color", "pattern", "category", "brand")
LATIN_NEGATION = re.compile(r"(?:(?<!\S)-|\b(?:not|no|without)\s+)([^\W_][\w-]*)", re.IGNORECASE)
ZH_NEGATION = re.compile(r"(?:不要|除了|不含|没有|非)([\u3400-\u4dbf\u4e00-\u9fffA-Za-z]+?)(?=的|以外|之外|[\s,，。、;；!！?？]|$)(?:以外|之外)?的?")
# Chinese names of common closed values (a shop whose values are English still understands 不要红色)
ZH_VALUES = {
    "红色": "red", "红": "red", "橙色": "orange", "橘色": "orange", "黄色": "yellow", "黄": "yellow",
    "绿色": "green", "绿": "green", "蓝色": "blue", "蓝": "blue", "紫色": "purple", "紫": "purple",
    "粉色": "pink", "粉红色": "pink", "棕色": "brown", "咖啡色": "brown", "黑色": "black", "黑": "black",
    "白色": "white", "白": "white", "灰色": "grey", "灰": "grey",
    "纯色": "plain", "素色": "plain", "条纹": "striped", "波点": "polka-dot", "圆点": "polka-dot",
    "格子": "checked", "格纹": "checked",
    "T恤": "t-shirt", "连衣裙": "dress", "裙子": "dress", "牛仔裤": "jeans", "运动鞋": "sneakers", "球鞋": "sneakers",
    "手提包": "handbag", "手袋": "handbag", "双肩包": "backpack", "背包": "backpack", "帽子": "hat",
    "太阳镜": "sunglasses", "墨镜": "sunglasses", "太阳眼镜": "sunglasses", "手表": "watch", "腕表": "watch",
    "马克杯": "mug", "咖啡杯": "mug", "口红": "lipstick", "唇膏": "lipstick", "水杯": "water bottle",
    "水瓶": "water bottle",
}
CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff]")


@dataclass
class Negation:
    """A query split into what is searched and what is excluded."""

    positive: str  # the text without its negations: searched as usual
    negated: list[str] = field(default_factory=list)  # the phrases as typed
    excluded: dict[str, list[str]] = field(default_factory=dict)  # field -> closed values excluded
    lexical: list[str] = field(default_factory=list)  # negated words no closed value matched

    def note(self) -> dict:
        return {"positive": self.positive, "negated": self.negated, "excluded": self.excluded,
                "excluded_words": self.lexical}


def parse(text: str) -> tuple[str, list[str]]:
    """(the text without its negations, the negated phrases in order)."""
    negated: list[str] = []

    def cut(match: re.Match) -> str:
        negated.append(match.group(1))
        return " "

    rest = ZH_NEGATION.sub(cut, LATIN_NEGATION.sub(cut, text))
    return " ".join(rest.split()), negated


def roots(word: str) -> set[str]:
    """A word's forms without a plural or participle ending ("stripes", "striped" -> "strip")."""
    word = re.sub(r"[\s_-]+", "", word.casefold())
    out = {word}
    if len(word) >= 4:
        for ending in ("es", "ed", "s", "d"):
            if word.endswith(ending):
                out.add(word[: -len(ending)])
    return out


def value_table(names_by_field: dict[str, list[str]]) -> dict[str, list[tuple[str, str]]]:
    """root -> (field, value) for the shop's closed values."""
    table: dict[str, list[tuple[str, str]]] = {}
    for name, values in names_by_field.items():
        for value in values:
            for root in roots(value):
                table.setdefault(root, []).append((name, value))
    return table


def matching(phrase: str, table: dict, names_by_field: dict[str, list[str]]) -> tuple[list[tuple[str, str]], str]:
    """((field, value) the phrase names, the part of a Chinese phrase after the value)."""
    if not CJK.search(phrase):
        found = [hit for root in roots(phrase) for hit in table.get(root, [])]
        return list(dict.fromkeys(found)), ""
    for end in range(len(phrase), 0, -1):  # the longest prefix that names a value
        head = phrase[:end]
        found = [(name, v) for name, values in names_by_field.items() for v in values if v == head]
        english = ZH_VALUES.get(head)
        if english:
            found += [hit for root in roots(english) for hit in table.get(root, [])]
        if found:
            return list(dict.fromkeys(found)), phrase[end:]
    return [], ""


def resolve(text: str, names_by_field: dict[str, list[str]]) -> Negation:
    """The query's negations as exclusions of the shop's closed values (`names_by_field`: field ->
    the values its products carry) or, for an unknown word, a lexical exclusion."""
    positive, negated = parse(text)
    result = Negation(positive, negated)
    if not negated:
        return result
    table = value_table(names_by_field)
    extra = []
    for phrase in negated:
        found, rest = matching(phrase, table, names_by_field)
        if rest:
            extra.append(rest)
        if not found:
            result.lexical.append(phrase)
        for name, value in found:
            values = result.excluded.setdefault(name, [])
            if value not in values:
                values.append(value)
    result.positive = " ".join([positive] + extra).strip()
    return result
