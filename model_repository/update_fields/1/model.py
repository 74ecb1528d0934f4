"""Triton python-backend entry point for `update_fields` (copied into every version N = generation N); the code is productsearch.runtime.catalog_writes in the installed package."""
from productsearch.runtime.catalog_writes import UpdateFieldsModel as TritonPythonModel  # noqa: F401
