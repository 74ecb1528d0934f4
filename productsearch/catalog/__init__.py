"""The live catalog. At the top: the store interface (`store`: which store serves, from one URL),
record rules (`records`), the rows stores take and give (`rows`), what searches read beside the
products (`search_settings`: rules, synonyms), product image files. Its rooms:
`sqlite/` (the embedded store), `milvus/` (past one machine), `index/` (the in-memory vector index
and its follower), `ranking/` (filters, hybrid relevance, merchandising). Read inside the stub;
imports only core (tests/unit/test_layout.py).
"""
