"""Shared code for the cross-modal product search service.

Used by build_models.py (training, indexing helpers), by the thin `model.py` files in
model_repository/ (which Triton's python backend loads) and by tests. Clients in clients/
do not import it: they speak gRPC only.
"""
EMBED_DIM = 384  # all-MiniLM-L6-v2 sentence embedding size; the image tower projects into it.
