"""Triton python-backend entry point for `catalog_admin` (copied into every version N = generation N); the code is productsearch.runtime.catalog_writes in the installed package."""
from productsearch.runtime.catalog_writes import CatalogAdminModel as TritonPythonModel  # noqa: F401
