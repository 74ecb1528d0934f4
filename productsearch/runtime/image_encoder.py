"""image_encoder: raw JPEG/PNG bytes -> unit-norm D-dim embeddings in the text tower's space.

Decoding happens here (clients send the file's bytes). A corrupt, oversized or non-image upload
fails its own request with INVALID_ARGUMENT; the other images in the batch are still encoded in
one forward pass. An empty element means "no image": zero row, PRESENT false. The same bytes twice (in one batch,
or among the last photos encoded: runtime/photo_memo.py, config parameter `photo_memo` = how
many, "0" off) are decoded and encoded once; `productsearch_photos_encoded_total` and
`productsearch_photos_reused_total` count both.
"""
from __future__ import annotations

import numpy as np

from productsearch.runtime.image_input import InvalidImage, decode_image
from productsearch.runtime.metrics import Metrics
from productsearch.runtime.model_io import ModelContext, RequestError, input_array, response, configured_threads, run_batched
from productsearch.runtime.photo_memo import DEFAULT_CAPACITY, PhotoMemo, photo_key


class ImageEncoderModel:
    def initialize(self, args: dict) -> None:
        from PIL import Image

        from productsearch.encoders.loading import load_image_tower

        self.ctx = ModelContext.from_args(args)
        self.tower = load_image_tower(self.ctx.version_dir, self.ctx.device, self.ctx.parameter("precision", "fp32"),
                                      self.ctx.parameter("runtime", "auto"), threads=configured_threads(self.ctx))
        self.dim = self.tower.encode([Image.new("RGB", (64, 64))]).shape[1]  # also the first-call warm-up
        self.memo = PhotoMemo(int(self.ctx.parameter("photo_memo", str(DEFAULT_CAPACITY))))
        self.metrics = Metrics.of_model(self.ctx)

    def finalize(self) -> None:
        self.metrics.close()

    def parse(self, request) -> list:
        """Per image: None (no image), (key, embedding) for a photo already encoded, or (key,
        decoded image); a photo that does not decode fails its own request here."""
        raw = input_array(request, "IMAGE")
        if raw is None:
            raise RequestError("missing input IMAGE")
        images = []
        for value in raw.reshape(-1):
            data = value if isinstance(value, bytes) else bytes(value)
            if not data:
                images.append(None)
                continue
            key = photo_key(data)
            known = self.memo.get(key)
            if known is not None:
                images.append((key, known))
                continue
            try:
                images.append((key, decode_image(data)))
            except InvalidImage as err:
                raise RequestError(str(err)) from None
        return images

    def compute(self, images: list) -> dict[str, np.ndarray]:
        """One forward pass over the batch's distinct photos not encoded before."""
        present = np.array([image is not None for image in images])
        embedding = np.zeros((len(images), self.dim), dtype=np.float32)
        todo: dict[bytes, object] = {}  # key -> decoded image, first seen order
        for item in images:
            if item is not None and not isinstance(item[1], np.ndarray):
                todo.setdefault(item[0], item[1])
        encoded = dict(zip(todo, self.tower.encode(list(todo.values())))) if todo else {}
        for key, vector in encoded.items():
            self.memo.put(key, vector.copy())  # not a view holding the whole batch
        for row, item in enumerate(images):
            if item is not None:
                embedding[row] = item[1] if isinstance(item[1], np.ndarray) else encoded[item[0]]
        self.metrics.add("productsearch_photos_encoded_total", len(encoded))
        self.metrics.add("productsearch_photos_reused_total", int(present.sum()) - len(encoded))
        return {"EMBEDDING": embedding, "PRESENT": present[:, None]}

    def execute(self, requests):
        return run_batched(requests, self.parse, self.compute, lambda out: response(**out))
