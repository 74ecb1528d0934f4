"""text_encoder: raw UTF-8 query/title strings -> unit-norm 384-d embeddings.

Tokenizes inside the model (clients send plain strings), so requests of any text length batch
together. An empty string means "no text": its row is zero and PRESENT is false.
"""
from __future__ import annotations

import numpy as np

from productsearch.backends.common import ModelContext, RequestError, input_array, response, run_batched, set_torch_threads

MAX_TEXT_BYTES = 16 * 1024  # longer input is refused; within it, tokens past MAX_TOKENS are cut
MAX_TOKENS = 128


def decode_texts(raw: np.ndarray) -> list[str]:
    texts = []
    for value in raw.reshape(-1):
        data = value if isinstance(value, bytes) else str(value).encode()
        if len(data) > MAX_TEXT_BYTES:
            raise RequestError(f"text is too long: {len(data)} bytes > limit {MAX_TEXT_BYTES}")
        try:
            texts.append(data.decode("utf-8").strip())
        except UnicodeDecodeError as err:
            raise RequestError(f"text is not valid UTF-8: {err.reason} at byte {err.start}") from None
    return texts


class TextEncoderModel:
    def initialize(self, args: dict) -> None:
        import transformers

        from productsearch.checkpoints import load_text_tower

        transformers.utils.logging.disable_progress_bar()  # no "Loading weights" bars in the server log
        self.ctx = ModelContext.from_args(args)
        set_torch_threads(self.ctx)
        self.tower = load_text_tower(self.ctx.version_dir, self.ctx.device, self.ctx.parameter("precision", "fp32"))
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
