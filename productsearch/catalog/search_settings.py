"""What a shop's searches read beside its products: its merchandising rules (catalog/ranking/
merchandising.py), synonyms (catalog/ranking/synonyms.py) and where its popularity comes from
(catalog/ranking/event_popularity.py), one stored shape for both stores.

Each is a meta value of the store, replaced whole (checked by the caller) and logged: the sequence
`set_rules` / `set_synonyms` return is a write's SEQUENCE, so a search that passes it as
MIN_SEQUENCE is ranked with them. A store provides `meta(key, default)` and `_set_logged(key, value)`.
"""
from __future__ import annotations


from productsearch.catalog.ranking.event_popularity import DEFAULT_SETTING


class SearchSettings:
    """The rules, synonyms and popularity source of a store's shop (a mixin of SqliteCatalog and MilvusCatalog)."""

    def rules(self) -> list[dict]:
        return self.meta("rules", [])

    def set_rules(self, rules: list[dict]) -> int:
        return self._set_logged("rules", rules)

    def synonyms(self) -> list[dict]:
        return self.meta("synonyms", [])

    def set_synonyms(self, synonyms: list[dict]) -> int:
        return self._set_logged("synonyms", synonyms)

    def popularity(self) -> dict:
        return self.meta("popularity", DEFAULT_SETTING)

    def set_popularity(self, setting: dict) -> int:
        return self._set_logged("popularity", setting)
