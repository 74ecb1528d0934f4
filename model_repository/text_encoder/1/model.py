"""Triton python-backend entry point for `text_encoder`; the code lives in productsearch.backends.text_encoder (installed package)."""
from productsearch.backends.text_encoder import TextEncoderModel as TritonPythonModel  # noqa: F401
