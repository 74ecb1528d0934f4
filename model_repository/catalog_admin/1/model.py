"""Triton python-backend entry point for `catalog_admin` (copied into every version N = generation N); the code is productsearch.runtime.catalog_admin in the installed package."""
from productsearch.runtime.catalog_admin import CatalogAdminModel as TritonPythonModel  # noqa: F401
