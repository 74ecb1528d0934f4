"""The lowest room: what the stub runtime, the encoders and the catalog all need (input limits,
the fusion math). It imports nothing else of productsearch."""
