"""Retrieval quality measured through the SERVED search: a user of the client package (gRPC only),
not part of it. Query sets (Recall/nDCG/MRR per kind) and Fashion-MNIST's test photos."""
