"""The Fashion-MNIST loader (IDX parsing, photo polarity, balanced subsets) and the photo
evaluation's one-line answer when the dataset is not installed."""
from __future__ import annotations

import gzip

import numpy as np
import pytest

from productsearch.evaluation import photo_quality as evaluate_photos
from productsearch.demo import fashion_mnist as fm


def write_idx(path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + np.array(array.shape, dtype=">i4").tobytes()
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def test_idx_files_load_and_photos_are_dark_on_white(tmp_path):
    images = np.zeros((20, 28, 28), np.uint8)
    images[:, 10:18, 10:18] = 255  # Fashion-MNIST: a bright product on black
    labels = np.arange(20) % 10
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", images)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", labels)
    got_images, got_labels = fm.load_split("test", tmp_path)
    assert got_images.shape == (20, 28, 28) and got_labels.tolist() == labels.tolist()
    photo = np.asarray(fm.to_photos(got_images[:1])[0])
    assert photo.shape == (28, 28, 3) and photo[0, 0].tolist() == [255, 255, 255] and photo[14, 14].tolist() == [0, 0, 0]
    rows = fm.balanced_subset(got_labels, 2)
    assert np.bincount(got_labels[rows]).tolist() == [2] * 10


def test_a_file_that_is_not_idx_is_refused(tmp_path):
    (tmp_path / "x").write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(ValueError, match="not an unsigned-byte IDX"):
        fm.read_idx(tmp_path / "x")


def test_missing_dataset_prints_the_install_command(tmp_path, capsys):
    assert evaluate_photos.main(["--dataset-dir", str(tmp_path), "--url", "127.0.0.1:1"]) == 2
    assert capsys.readouterr().out.strip() == "apt-get install dataset-fashion-mnist"


def test_query_sets_cover_every_class_in_both_languages():
    assert len(fm.EVAL_QUERIES_EN) == len(fm.EVAL_QUERIES_ZH) == len(fm.TRAIN_CAPTIONS) == len(fm.CLASSES) == 10
    assert all(len(q) >= 3 for q in fm.EVAL_QUERIES_EN + fm.EVAL_QUERIES_ZH)
