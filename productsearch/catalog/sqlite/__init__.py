"""The embedded catalog store: one SQLite database (WAL) per shop, and bulk copies into and out of it."""
