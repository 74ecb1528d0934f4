"""Triton python-backend entry point for `text_encoder` (copied into every version N = generation N); the code is productsearch.runtime.text_encoder in the installed package."""
from productsearch.runtime.text_encoder import TextEncoderModel as TritonPythonModel  # noqa: F401
