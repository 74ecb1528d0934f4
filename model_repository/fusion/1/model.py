"""Triton python-backend entry point for `fusion`; the code lives in productsearch.backends.fusion (installed package)."""
from productsearch.backends.fusion import FusionModel as TritonPythonModel  # noqa: F401
