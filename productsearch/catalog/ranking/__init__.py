"""Ranking a batch of queries against a shop's live index: filters, hybrid lexical + vector relevance
(SQLite FTS5), merchandising rules, facets and grouping."""
