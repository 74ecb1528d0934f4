"""text_encoder: raw UTF-8 query/title strings -> unit-norm D-dim embeddings (512 for the demo).

Tokenizes inside the model (clients send plain strings), so requests of any text length batch
together. An empty string means "no text": its row is zero and PRESENT is false. Config parameter `runtime`
= auto | torch | onnxruntime (auto: the build's ONNX export on the CPU where the generation has one).
"""
from __future__ import annotations

import numpy as np

from productsearch.core.limits import MAX_TOKENS
from productsearch.runtime.model_io import ModelContext, RequestError, input_array, response, configured_threads, run_batched
from productsearch.runtime.text_input import decode_texts


class TextEncoderModel:
    def initialize(self, args: dict) -> None:
        from productsearch.encoders.loading import load_text_tower

        self.ctx = ModelContext.from_args(args)
        self.tower = load_text_tower(self.ctx.version_dir, self.ctx.device, self.ctx.parameter("precision", "fp32"),
                                     self.ctx.parameter("runtime", "auto"), threads=configured_threads(self.ctx))
        self.dim = self.tower.encode(["warm-up"]).shape[1]  # also the first-call warm-up

    def parse(self, request) -> list[str]:
        raw = input_array(request, "TEXT")
        if raw is None:
            raise RequestError("missing input TEXT")
        return decode_texts(raw)

    def compute(self, texts: list[str]) -> dict[str, np.ndarray]:
        present = np.array([bool(t) for t in texts])
        embedding = np.zeros((len(texts), self.dim), dtype=np.float32)
        if present.any():
            embedding[present] = self.tower.encode([t for t in texts if t], max_length=MAX_TOKENS)
        return {"EMBEDDING": embedding, "PRESENT": present[:, None]}

    def execute(self, requests):
        return run_batched(requests, self.parse, self.compute, lambda out: response(**out))
