"""Ranking a batch of queries against a shop's live index: filters, hybrid lexical + vector relevance
(SQLite FTS5), query understanding (the hybrid weight, negation, synonyms, did you mean),
merchandising rules, facets and grouping."""
