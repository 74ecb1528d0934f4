"""Triton python-backend entry point for `delete_products` (copied into every version N = generation N); the code is productsearch.runtime.catalog_writes in the installed package."""
from productsearch.runtime.catalog_writes import DeleteProductsModel as TritonPythonModel  # noqa: F401
