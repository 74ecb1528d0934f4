"""Triton python-backend entry point for `scorer` (copied into every version N = generation N); the code is productsearch.runtime.scorer in the installed package."""
from productsearch.runtime.scorer import ScorerModel as TritonPythonModel  # noqa: F401
