"""image_encoder: raw JPEG/PNG bytes -> unit-norm D-dim embeddings in the text tower's space.

Decoding happens here (clients send the file's bytes). A corrupt, oversized or non-image upload
fails its own request with INVALID_ARGUMENT; the other images in the batch are still encoded in
one forward pass. An empty element means "no image": zero row, PRESENT false.
"""
from __future__ import annotations

import numpy as np

from productsearch.runtime.model_io import ModelContext, RequestError, input_array, response, configured_threads, run_batched
from productsearch.runtime.image_input import InvalidImage, decode_image


class ImageEncoderModel:
    def initialize(self, args: dict) -> None:
        from PIL import Image

        from productsearch.encoders.loading import load_image_tower

        self.ctx = ModelContext.from_args(args)
        self.tower = load_image_tower(self.ctx.version_dir, self.ctx.device, self.ctx.parameter("precision", "fp32"),
                                      self.ctx.parameter("runtime", "auto"), threads=configured_threads(self.ctx))
        self.dim = self.tower.encode([Image.new("RGB", (64, 64))]).shape[1]  # also the first-call warm-up

    def parse(self, request) -> list:
        raw = input_array(request, "IMAGE")
        if raw is None:
            raise RequestError("missing input IMAGE")
        images = []
        for value in raw.reshape(-1):
            data = value if isinstance(value, bytes) else bytes(value)
            if not data:
                images.append(None)
                continue
            try:
                images.append(decode_image(data))
            except InvalidImage as err:
                raise RequestError(str(err)) from None
        return images

    def compute(self, images: list) -> dict[str, np.ndarray]:
        present = np.array([image is not None for image in images])
        embedding = np.zeros((len(images), self.dim), dtype=np.float32)
        if present.any():
            embedding[present] = self.tower.encode([image for image in images if image is not None])
        return {"EMBEDDING": embedding, "PRESENT": present[:, None]}

    def execute(self, requests):
        return run_batched(requests, self.parse, self.compute, lambda out: response(**out))
