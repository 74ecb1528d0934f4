"""Triton python-backend entry point for `query_gate`; the code lives in productsearch.backends.query_gate (installed package)."""
from productsearch.backends.query_gate import QueryGateModel as TritonPythonModel  # noqa: F401
