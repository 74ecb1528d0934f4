"""The one loading path for served towers: a version directory's tower.json names its kind.

    {"kind": "use-multilingual"}  text_model/  USE multilingual v3 in torch (encoders/use_multilingual.py), on
                              the CPU through ONNX Runtime where the build exported it (encoders/use_onnx.py)
    {"kind": "lite0"}         image_tower/ EfficientNet-Lite0 + projection (encoders/lite_tower.py)
    {"kind": "minilm"}        text_model/  the English demo text tower (encoders/minilm.py)
    {"kind": "resnet"}        image_tower/ the from-scratch demo image tower (encoders/resnet_tower.py)
    {"kind": "clip"}          hf_model/    a transformers CLIPModel (both towers from one model)
    {"kind": "chinese-clip"}  hf_model/    a transformers ChineseCLIPModel (Chinese queries)
    {"kind": "bert-proj"}     text_model/ + heads.pt   BERT, mean pooling, trained projection
    {"kind": "resnet-proj"}   backbone.pt + heads.pt   torchvision ResNet, trained projection
A directory without tower.json is the MiniLM + ResNet layout (`demo-minilm`). Every tower's `encode` returns unit-norm
float32 rows; on a GPU the demo towers run under fp16/bf16 autocast (config `precision`).
torch (and transformers) are imported only on the paths that run them: the demo towers' ONNX Runtime
path on the CPU never loads torch, so their stubs start faster and ~0.7 GB smaller each. `threads`
is the instance's compute threads (ONNX Runtime's intra-op pool, or torch's); None: the machine's cores.
"""
from __future__ import annotations

import json
from pathlib import Path

import os

import numpy as np

TOWER_FILE = "tower.json"


def tower_kind(version_dir: Path, default: str) -> dict:
    path = Path(version_dir) / TOWER_FILE
    return json.loads(path.read_text()) if path.exists() else {"kind": default}


def write_tower_kind(version_dir: Path, spec: dict) -> None:
    Path(version_dir).mkdir(parents=True, exist_ok=True)
    (Path(version_dir) / TOWER_FILE).write_text(json.dumps(spec, indent=1))


class DemoTowerAdapter:
    """The demo towers (torch) with the same `encode` signature (and autocast on a GPU)."""

    def __init__(self, tower, device, precision: str):
        import torch

        self.tower, self.device, self.precision = tower, torch.device(device), precision

    def encode(self, items: list, **kwargs) -> np.ndarray:
        from productsearch.encoders.pretrained import autocast

        with autocast(self.device, self.precision):
            return np.asarray(self.tower.encode(items, **kwargs), dtype=np.float32)


def cores(threads: int | None) -> int:
    return max(1, int(threads or os.cpu_count() or 1))


def torch_threads(threads: int | None) -> None:
    """A torch tower's compute threads (the instance's, so stubs don't fight over cores)."""
    if threads:
        import torch

        torch.set_num_threads(int(threads))


def hf_quiet() -> None:
    import transformers

    transformers.utils.logging.disable_progress_bar()  # no "Loading weights" bars in the server log


def load_text_tower(version_dir: Path, device: str = "cpu", precision: str = "fp32", runtime: str = "auto",
                    threads: int | None = None):
    """runtime (USE multilingual): auto (ONNX Runtime on the CPU with the artifact the build chose,
    text_model/runtime.json, where the generation has one; else torch), torch, or onnxruntime."""
    spec = tower_kind(version_dir, "minilm")
    if spec["kind"] == "minilm":
        from productsearch.encoders.minilm import TextTower

        torch_threads(threads)
        return DemoTowerAdapter(TextTower.load(Path(version_dir) / "text_model", device=device), device, precision)
    if spec["kind"] == "use-multilingual":
        from productsearch.encoders.use_onnx import OrtUseTextTower, served_file

        model_dir = Path(version_dir) / "text_model"
        chosen = served_file(model_dir)
        if runtime == "onnxruntime" and chosen is None:
            raise ValueError(f"{model_dir}: runtime onnxruntime, but the build exported no ONNX text tower")
        if chosen and (runtime == "onnxruntime" or (runtime == "auto" and str(device) == "cpu")):
            return OrtUseTextTower(model_dir, chosen, threads=cores(threads))
        from productsearch.encoders.use_multilingual import UseTextTower

        torch_threads(threads)
        return DemoTowerAdapter(UseTextTower(model_dir, device=device), device, precision)
    from productsearch.encoders.pretrained import BertProjTextTower, HF_DIR, HFDualEncoderTower

    torch_threads(threads)
    hf_quiet()
    if spec["kind"] in HFDualEncoderTower.MODEL_CLASSES:
        return HFDualEncoderTower(Path(version_dir) / HF_DIR, spec["kind"], "text", device, precision)
    if spec["kind"] == "bert-proj":
        return BertProjTextTower(version_dir, spec, device, precision)
    raise ValueError(f"{version_dir}: unknown text tower kind {spec['kind']!r}")


def load_image_tower(version_dir: Path, device: str = "cpu", precision: str = "fp32", runtime: str = "auto",
                     threads: int | None = None):
    """runtime: auto (ONNX Runtime on the CPU where the generation has an ONNX export, else
    torch), torch, or onnxruntime."""
    spec = tower_kind(version_dir, "resnet")
    if spec["kind"] == "lite0":
        from productsearch.encoders.lite_onnx import ONNX_FILE, OrtLiteTower

        model_dir = Path(version_dir) / "image_tower"
        if runtime == "onnxruntime" or (runtime == "auto" and str(device) == "cpu" and (model_dir / ONNX_FILE).exists()):
            return OrtLiteTower(model_dir, threads=cores(threads))
    torch_threads(threads)
    if spec["kind"] == "resnet":
        from productsearch.encoders.resnet_tower import ImageTower

        return DemoTowerAdapter(ImageTower.load(Path(version_dir) / "image_tower", device=device), device, precision)
    if spec["kind"] == "lite0":
        from productsearch.encoders.lite_tower import LiteImageTower

        return DemoTowerAdapter(LiteImageTower.load(Path(version_dir) / "image_tower", device=device), device, precision)
    from productsearch.encoders.pretrained import HF_DIR, HFDualEncoderTower, ResNetProjImageTower

    hf_quiet()
    if spec["kind"] in HFDualEncoderTower.MODEL_CLASSES:
        return HFDualEncoderTower(Path(version_dir) / HF_DIR, spec["kind"], "image", device, precision)
    if spec["kind"] == "resnet-proj":
        return ResNetProjImageTower(version_dir, spec, device, precision)
    raise ValueError(f"{version_dir}: unknown image tower kind {spec['kind']!r}")
