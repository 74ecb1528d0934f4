"""Merchandising rules: a merchandiser's say over the ranking for a query, stored with the catalog
(the store's meta `rules`, changed through catalog_admin while serving, logged like any write).

A rule is a JSON object with an optional `query` (matched after normalization: case folded,
punctuation dropped, spaces collapsed; no `query` = every query) and one action:
    {"query": "summer dress", "pin": "P00042", "position": 1}     the product at that position
    {"query": "summer dress", "hide": "P00007"}                   never returned for the query
    {"query": "sneakers", "boost_brand": "Acme", "factor": 0.5}   that brand's scores x (1 + factor)
Rules apply after ranking (catalog/ranking/relevance.py) and show in the EXPLANATIONS output.
"""
from __future__ import annotations

import re

MAX_RULES = 10_000
ACTIONS = ("pin", "hide", "boost_brand")
WORD = re.compile(r"\w+")


class RuleError(ValueError):
    """A rule the catalog refuses; the message says which and why."""


def normalized_query(text: str) -> str:
    return " ".join(WORD.findall((text or "").casefold()))


def check_rules(rules) -> list[dict]:
    """The rules as stored (queries normalized), or RuleError naming the first bad one."""
    if not isinstance(rules, list) or len(rules) > MAX_RULES:
        raise RuleError(f"rules must be a JSON list of at most {MAX_RULES} objects")
    checked = []
    for i, rule in enumerate(rules):
        if not isinstance(rule, dict):
            raise RuleError(f"rule {i} is not a JSON object")
        actions = [a for a in ACTIONS if a in rule]
        if len(actions) != 1:
            raise RuleError(f"rule {i} needs exactly one of {', '.join(ACTIONS)}, got {sorted(rule)}")
        unknown = set(rule) - {"query", "position", "factor", *ACTIONS}
        if unknown:
            raise RuleError(f"rule {i} has unknown keys {sorted(unknown)}")
        out = {actions[0]: rule[actions[0]]}
        if not isinstance(rule[actions[0]], str) or not rule[actions[0]]:
            raise RuleError(f"rule {i}: {actions[0]} must be a product id or brand (a non-empty string)")
        if "query" in rule:
            if not isinstance(rule["query"], str) or not normalized_query(rule["query"]):
                raise RuleError(f"rule {i}: query must be a non-empty string")
            out["query"] = normalized_query(rule["query"])
        if actions[0] == "pin":
            position = rule.get("position", 1)
            if not isinstance(position, int) or isinstance(position, bool) or not 1 <= position <= 1000:
                raise RuleError(f"rule {i}: position must be an integer 1..1000, got {position!r}")
            out["position"] = position
        if actions[0] == "boost_brand":
            factor = rule.get("factor")
            if not isinstance(factor, (int, float)) or isinstance(factor, bool) or not -1 < factor <= 100:
                raise RuleError(f"rule {i}: factor must be a number in (-1, 100], got {factor!r}")
            out["factor"] = float(factor)
        checked.append(out)
    return checked


def applicable(rules: list[dict], query: str) -> tuple[set[str], list[tuple[str, int]], list[tuple[str, float]]]:
    """(hidden ids, pins (id, position) in position order, brand boosts) for a normalized query."""
    mine = [r for r in rules if r.get("query") in (None, query)]
    hidden = {r["hide"] for r in mine if "hide" in r}
    pins = sorted(((r["pin"], r["position"]) for r in mine if "pin" in r), key=lambda p: p[1])
    brands = [(r["boost_brand"], r["factor"]) for r in mine if "boost_brand" in r]
    return hidden, pins, brands
