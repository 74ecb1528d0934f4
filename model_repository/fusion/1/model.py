"""Triton python-backend entry point for `fusion` (copied into every version N = generation N); the code is productsearch.runtime.fusion in the installed package."""
from productsearch.runtime.fusion import FusionModel as TritonPythonModel  # noqa: F401
