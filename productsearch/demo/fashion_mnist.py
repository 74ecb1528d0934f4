"""Fashion-MNIST (Zalando's product photos, MIT licence) from the Debian package
`dataset-fashion-mnist`: the IDX loader, the photo conversion and the class-name query sets.

Client-side (numpy and PIL only), so `productsearch.evaluation.photo_quality` runs from any machine; the build
uses the same module for its training photos (TRAIN split only; the TEST split is only ever
evaluated). Fashion-MNIST stores the photos INVERTED (a bright product on black): `to_photos`
restores a dark product on a light background (255 - x) in RGB, the way a shopper's upload
looks, so the served image_encoder needs no dataset-specific step.
"""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

ROOT = Path("/usr/share/datasets/fashion-mnist")
INSTALL_HINT = "apt-get install dataset-fashion-mnist"
CLASSES = ("T-shirt/top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker",
           "bag", "ankle boot")
# Captions the build may use as TRAINING targets (with the TRAIN split) ...
TRAIN_CAPTIONS = (
    ("t-shirt", "a photo of a t-shirt", "top"), ("trousers", "a photo of trousers", "pants"),
    ("pullover", "a photo of a pullover", "sweater"), ("dress", "a photo of a dress"),
    ("coat", "a photo of a coat", "jacket"), ("sandal", "a photo of a sandal", "sandals"),
    ("shirt", "a photo of a shirt", "button-up shirt"), ("sneaker", "a photo of a sneaker", "trainers"),
    ("bag", "a photo of a bag", "handbag"), ("ankle boot", "a photo of an ankle boot", "boots"),
)
TRAIN_CAPTIONS_ZH = ("T恤", "裤子", "套头衫", "连衣裙", "外套", "凉鞋", "衬衫", "运动鞋", "包", "短靴")
# ... and the evaluation queries: several phrasings per class, some never used as targets
EVAL_QUERIES_EN = (
    ("t-shirt", "a photo of a t-shirt", "tee", "short-sleeved top"),
    ("trousers", "a photo of trousers", "pair of pants", "slacks"),
    ("pullover", "a photo of a pullover", "knitted jumper", "sweatshirt"),
    ("dress", "a photo of a dress", "a women's dress", "gown"),
    ("coat", "a photo of a coat", "winter coat", "overcoat"),
    ("sandal", "a photo of a sandal", "open-toe sandal", "summer sandals"),
    ("shirt", "a photo of a shirt", "collared shirt", "blouse"),
    ("sneaker", "a photo of a sneaker", "running shoe", "sports shoes"),
    ("bag", "a photo of a bag", "purse", "tote bag"),
    ("ankle boot", "a photo of an ankle boot", "short boots", "chelsea boot"),
)
EVAL_QUERIES_ZH = (
    ("T恤", "T恤衫", "短袖上衣"), ("裤子", "长裤", "休闲裤"), ("套头衫", "毛衣", "卫衣"),
    ("连衣裙", "裙子", "一条连衣裙"), ("外套", "大衣", "冬季外套"), ("凉鞋", "凉拖鞋", "夏季凉鞋"),
    ("衬衫", "衬衣", "长袖衬衫"), ("运动鞋", "球鞋", "跑步鞋"), ("包", "手提包", "女包"),
    ("短靴", "踝靴", "靴子"),
)


class MissingDataset(FileNotFoundError):
    """The Fashion-MNIST files are not installed; str() is the command that installs them."""


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (optionally .gz): magic (0, 0, dtype 0x08, ndim), big-endian int32 dims, bytes."""
    with (gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")) as f:
        data = f.read()
    if data[0:2] != b"\x00\x00" or data[2] != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte IDX file")
    ndim = data[3]
    dims = np.frombuffer(data, dtype=">i4", count=ndim, offset=4).astype(int)
    arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if arr.size != int(np.prod(dims)):
        raise ValueError(f"{path}: {arr.size} bytes for dims {dims.tolist()}")
    return arr.reshape(dims)


def load_split(split: str, root: Path = ROOT) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images [N, 28, 28] and labels [N] of "train" (60,000) or "test" (10,000)."""
    prefix = {"train": "train", "test": "t10k"}[split]

    def find(stem: str) -> Path:
        for name in (stem + ".gz", stem):
            if (Path(root) / name).exists():
                return Path(root) / name
        raise MissingDataset(INSTALL_HINT)

    images = read_idx(find(f"{prefix}-images-idx3-ubyte"))
    labels = read_idx(find(f"{prefix}-labels-idx1-ubyte"))
    if len(images) != len(labels):
        raise ValueError(f"{root}: {len(images)} {split} images but {len(labels)} labels")
    return images, labels


def to_photos(images: np.ndarray) -> list:
    """uint8 [N, 28, 28] -> RGB PIL images, dark product on white (the inversion undone)."""
    from PIL import Image

    return [Image.fromarray(255 - im, mode="L").convert("RGB") for im in images]


def balanced_subset(labels: np.ndarray, per_class: int, seed: int = 0) -> np.ndarray:
    """Sorted indices of `per_class` random samples of each class."""
    rng = np.random.default_rng(seed)
    return np.sort(np.concatenate([rng.choice(np.flatnonzero(labels == c), per_class, replace=False)
                                   for c in range(len(CLASSES))]))
