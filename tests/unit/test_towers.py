"""TextTower reproduces sentence-transformers; ImageTower round-trips through save/load."""
from __future__ import annotations

import random
import shutil

import numpy as np
import pytest
import torch

from productsearch.encoders.minilm import MINILM_DIM as EMBED_DIM
from productsearch.demo.render import render_product
from productsearch.encoders.minilm import TEXT_MODEL_FILES, TextTower, minilm_dir
from productsearch.encoders.resnet_tower import ImageTower

TEXTS = [
    "red striped t-shirt",
    "Classic white mug in a solid colour",
    "A blue watch with a checked pattern. Titanium finish, with a clear dial.",
    "",
    "sunglasses " * 200,  # longer than max_length: truncated
]


@pytest.fixture(scope="module")
def text_tower():
    return TextTower.load(minilm_dir())


def test_minilm_dir():
    d = minilm_dir()
    assert all((d / name).is_file() for name in TEXT_MODEL_FILES)


def test_text_tower_matches_sentence_transformers(text_tower):
    st = pytest.importorskip("sentence_transformers")
    model = st.SentenceTransformer(str(minilm_dir()), device="cpu")
    model.max_seq_length = 128
    expected = model.encode(TEXTS, convert_to_numpy=True, batch_size=2)
    got = text_tower.encode(TEXTS, max_length=128)
    assert got.shape == (len(TEXTS), EMBED_DIM) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_text_tower_batching_and_truncation(text_tower):
    one_by_one = np.concatenate([text_tower.encode([t]) for t in TEXTS])
    np.testing.assert_allclose(text_tower.encode(TEXTS, batch_size=2), one_by_one, atol=1e-5)
    ids = text_tower.tokenize([TEXTS[-1]], max_length=16)["input_ids"]
    assert ids.shape[1] == 16
    assert text_tower.encode([]).shape == (0, EMBED_DIM)


def test_text_tower_loads_from_copied_files(tmp_path, text_tower):
    for name in TEXT_MODEL_FILES:
        (tmp_path / name).symlink_to(minilm_dir() / name)
    copy = TextTower.load(tmp_path)
    np.testing.assert_allclose(copy.encode(TEXTS[:2]), text_tower.encode(TEXTS[:2]), atol=1e-6)


def _images(n=5):
    rng = random.Random(0)
    return [render_product("mug", "red", "striped", rng) for _ in range(n)] + [
        render_product("hat", "blue", "plain", rng).resize((150, 100)).convert("L")]


def test_image_tower_shape_and_norm():
    torch.manual_seed(0)
    tower = ImageTower("resnet10", resolution=32)
    out = tower.encode(_images())
    assert out.shape == (6, EMBED_DIM) and out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    assert tower.preprocess(_images()).shape == (6, 3, 32, 32)
    assert tower.encode([]).shape == (0, EMBED_DIM)


def test_image_tower_save_load_round_trip(tmp_path):
    torch.manual_seed(0)
    tower = ImageTower("resnet10", resolution=32)
    # move BatchNorm statistics away from their init so the round trip covers buffers too
    tower.train()
    with torch.no_grad():
        tower(tower.preprocess(_images()))
    tower.eval()
    before = tower.encode(_images())
    tower.save(tmp_path / "tower")
    loaded = ImageTower.load(tmp_path / "tower")
    assert loaded.config == tower.config
    np.testing.assert_array_equal(loaded.encode(_images()), before)
    shutil.rmtree(tmp_path / "tower")


def test_image_tower_rejects_unknown_arch():
    with pytest.raises(ValueError):
        ImageTower("resnet9000")
