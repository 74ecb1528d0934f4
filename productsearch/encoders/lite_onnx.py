"""The demo image tower as served on the CPU: `image_tower.onnx` through ONNX Runtime, and the
preprocessing every runtime of this tower shares. Imports neither torch nor torchvision, so an
image_encoder stub on the CPU starts without them (~0.7 GB less memory and seconds less start-up
per instance).

Preprocessing (`lite_pixels`): RGB, shorter side resized to R with PIL's antialiased bilinear
filter, centre crop R x R (torchvision's rounding), uint8 [B, 3, R, R]; then (pixel / 255 -
0.498) / 0.502. PIL's resize agrees with torchvision's antialiased tensor resize within one grey
level (measured on demo renders and random sizes: max 1, mean 0.0005); training and the torch
tower use this same function, so train and serve see the same pixels.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from PIL import Image

LITE_MEAN = (0.498, 0.498, 0.498)
LITE_STD = (0.502, 0.502, 0.502)
CONFIG_FILE = "image_tower.json"
ONNX_FILE = "image_tower.onnx"


def lite_pixels(images: list[Image.Image], resolution: int) -> np.ndarray:
    """uint8 [B, 3, R, R]: each image's shorter side resized to R (antialiased), centre-cropped."""
    out = np.empty((len(images), 3, resolution, resolution), dtype=np.uint8)
    for i, image in enumerate(images):
        image = image.convert("RGB")
        width, height = image.size
        if width <= height:
            size = (resolution, max(resolution, int(resolution * height / width)))
        else:
            size = (max(resolution, int(resolution * width / height)), resolution)
        if size != image.size:
            image = image.resize(size, Image.BILINEAR)
        left, top = int(round((size[0] - resolution) / 2.0)), int(round((size[1] - resolution) / 2.0))
        crop = image.crop((left, top, left + resolution, top + resolution))
        out[i] = np.asarray(crop, dtype=np.uint8).transpose(2, 0, 1)
    return out


def normalized(pixels: np.ndarray) -> np.ndarray:
    """uint8 pixels -> the tower's float32 input."""
    mean = np.array(LITE_MEAN, np.float32).reshape(1, 3, 1, 1)
    std = np.array(LITE_STD, np.float32).reshape(1, 3, 1, 1)
    return (pixels.astype(np.float32) / 255.0 - mean) / std


class OrtLiteTower:
    """The tower through ONNX Runtime on the CPU (`image_tower.onnx`); `encode` has the torch
    tower's signature and output."""

    def __init__(self, model_dir: str | os.PathLike, threads: int = 1):
        import onnxruntime as ort

        model_dir = Path(model_dir)
        self.config = json.loads((model_dir / CONFIG_FILE).read_text())
        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = max(1, int(threads)), 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(model_dir / ONNX_FILE), options, providers=["CPUExecutionProvider"])
        self.resolution = int(self.config["resolution"])

    def run(self, pixels: np.ndarray) -> np.ndarray:
        return self.session.run(None, {"pixels": np.ascontiguousarray(pixels, dtype=np.float32)})[0]

    def encode(self, images: list[Image.Image], batch_size: int = 16) -> np.ndarray:
        if len(images) == 0:
            return np.zeros((0, self.config["dim"]), dtype=np.float32)
        return np.concatenate([self.run(normalized(lite_pixels(images[s:s + batch_size], self.resolution)))
                               for s in range(0, len(images), batch_size)])
