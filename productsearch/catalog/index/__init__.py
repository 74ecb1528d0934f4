"""The in-memory vector index of a shop's catalog (exact and faiss IVF), derived from the store and
kept current by a follower that tails the store's log."""
