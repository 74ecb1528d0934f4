"""A short training run is reproducible and the quality table is computed end to end (tiny
catalog, one epoch: this checks the plumbing, not the quality; build_models.py prints that)."""
from __future__ import annotations

import pytest
import torch
from PIL import Image

from productsearch.demo.catalog import generate_catalog, image_path
from productsearch.training.quality import format_table, passed, quality_table
from productsearch.encoders.minilm import TextTower, minilm_dir
from productsearch.training.training import train_image_tower


KWARGS = dict(epochs=1, resolution=32, batch_size=64)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny")
    products = generate_catalog(out, renders_per_combo=2, categories=("hat", "mug"))
    text_tower = TextTower.load(minilm_dir())
    logs: list[str] = []
    tower = train_image_tower(products, out, text_tower, seed=0, log=logs.append, **KWARGS)
    return out, products, text_tower, tower, logs


def test_training_is_reproducible_and_skips_heldout(setup):
    out, products, text_tower, a, logs = setup
    b = train_image_tower(products, out, text_tower, seed=0, log=lambda s: None, **KWARGS)
    for key, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[key]), key
    assert any("epoch  1/1: loss" in line for line in logs)
    trained = sum(not p["heldout"] for p in products)
    assert any(f"{trained} training products" in line for line in logs)


def test_quality_table_runs(setup):
    out, products, text_tower, tower, _ = setup
    titles = text_tower.encode([p["title"] for p in products])
    images = tower.encode([Image.open(image_path(out, p)) for p in products])
    table = quality_table(products, titles, images, text_tower, tower)
    assert table["queries"] == len({(p["category"], p["color"], p["pattern"])
                                    for p in products if p["heldout"]})
    for metric in table["metrics"].values():
        assert 0.0 <= metric["value"] <= 1.0
    text = format_table(table)
    assert "| metric | value | target | result |" in text
    # passed() is the gate: it fails exactly when a targeted metric is below its target
    targeted = [m for m in table["metrics"].values() if m["target"] is not None]
    assert targeted
    assert passed(table) == all(m["value"] >= m["target"] for m in targeted)
    first = targeted[0]
    assert passed({**table, "metrics": {"m": {**first, "value": first["target"] - 0.01}}}) is False
    assert passed({**table, "metrics": {"m": {**first, "value": first["target"]}}}) is True
    assert text.count("FAIL") == sum(m["value"] < m["target"] for m in targeted)
