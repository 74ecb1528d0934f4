"""Triton python-backend entry point for `query_gate` (copied into every version N = generation N); the code is productsearch.runtime.query_gate in the installed package."""
from productsearch.runtime.query_gate import QueryGateModel as TritonPythonModel  # noqa: F401
