"""Triton python-backend entry point for `scorer`; the code lives in productsearch.backends.scorer (installed package)."""
from productsearch.backends.scorer import ScorerModel as TritonPythonModel  # noqa: F401
