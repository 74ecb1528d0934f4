"""Triton python-backend entry point for `image_encoder` (copied into every version N = generation N); the code is productsearch.runtime.image_encoder in the installed package."""
from productsearch.runtime.image_encoder import ImageEncoderModel as TritonPythonModel  # noqa: F401
