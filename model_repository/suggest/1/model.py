"""Triton python-backend entry point for `suggest`; the code is productsearch.runtime.suggest in the installed package."""
from productsearch.runtime.suggest import SuggestModel as TritonPythonModel  # noqa: F401
