"""Triton python-backend entry point for `catalog_gate` (copied into every version N = generation N); the code is productsearch.runtime.catalog_writes in the installed package."""
from productsearch.runtime.catalog_writes import CatalogGateModel as TritonPythonModel  # noqa: F401
