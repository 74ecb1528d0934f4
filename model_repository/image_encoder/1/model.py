"""Triton python-backend entry point for `image_encoder`; the code lives in productsearch.backends.image_encoder (installed package)."""
from productsearch.backends.image_encoder import ImageEncoderModel as TritonPythonModel  # noqa: F401
