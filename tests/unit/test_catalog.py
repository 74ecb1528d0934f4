"""The demo catalog is deterministic, uses only the listed words, and keeps held-out combos out
of training while every attribute value still appears in training."""
from __future__ import annotations

import json
import random

import pytest

from productsearch.demo import catalog as cat

SMALL = dict(renders_per_combo=10, categories=("t-shirt", "mug"))  # 2 x 11 x 4 x 10 = 880
KEYS = {"id", "title", "description", "category", "color", "pattern", "price", "image", "heldout",
        "brand", "sku", "group", "rating", "popularity", "stock"}


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    out = tmp_path_factory.mktemp("catalog")
    return out, cat.generate_catalog(out, seed=0, **SMALL)


def test_same_seed_same_catalog_and_pixels(small, tmp_path):
    out, products = small
    again = cat.generate_catalog(tmp_path, seed=0, **SMALL)
    assert (tmp_path / "catalog.jsonl").read_bytes() == (out / "catalog.jsonl").read_bytes()
    for p in (products[0], products[137], products[-1]):
        assert (tmp_path / p["image"]).read_bytes() == (out / p["image"]).read_bytes()
    assert again == products


def test_other_seed_differs(tmp_path):
    a = cat.render_product("hat", "red", "striped", random.Random(1))
    b = cat.render_product("hat", "red", "striped", random.Random(2))
    assert a.tobytes() != b.tobytes()
    assert a.size == (cat.IMAGE_SIZE, cat.IMAGE_SIZE) and a.mode == "RGB"


def test_records(small):
    out, products = small
    assert len(products) == 2 * len(cat.COLORS) * len(cat.PATTERNS) * 10
    ids = [p["id"] for p in products]
    assert len(set(ids)) == len(ids) and ids[0] == "P00001"
    for p in products:
        assert set(p) == KEYS
        assert p["category"] in cat.CATEGORIES and p["color"] in cat.COLORS
        assert p["pattern"] in cat.PATTERNS
        assert p["category"] in p["title"].lower() and p["color"] in p["title"].lower()
        low, high = cat.PRICE_RANGE[p["category"]]
        assert low <= p["price"] <= high
        assert p["brand"] in cat.BRANDS and 1 <= p["rating"] <= 5 and p["stock"] >= 0 and p["popularity"] >= 0
        assert p["sku"].endswith(p["id"][1:] + "-" + p["sku"][-2:]) and p["group"].startswith(p["category"] + "/")
        named = [b for b in cat.BRANDS if b in p["title"]]
        assert not named or p["brand"] == named[0], "the brand field agrees with the title"
        assert not p["image"].startswith("/") and (out / p["image"]).is_file()
        assert p["heldout"] == (cat.combo_of(p) in cat.heldout_combos(0))
    assert cat.load_catalog(out / "catalog.jsonl") == products
    assert cat.load_catalog(out) == products


def test_titles_vary_and_name_the_pattern(small):
    _, products = small
    titles = {p["title"] for p in products if cat.combo_of(p) == ("t-shirt", "red", "striped")}
    assert len(titles) >= 3
    for p in products:
        if p["pattern"] == "striped":
            assert "stripe" in p["title"].lower()
        elif p["pattern"] == "polka-dot":
            assert "polka" in p["title"].lower()
        elif p["pattern"] == "checked":
            assert "check" in p["title"].lower()


def test_renders_per_combo(small):
    _, products = small
    counts: dict = {}
    for p in products:
        counts[cat.combo_of(p)] = counts.get(cat.combo_of(p), 0) + 1
    assert len(counts) == 2 * len(cat.COLORS) * len(cat.PATTERNS)
    assert min(counts.values()) >= 10


def test_heldout_split():
    held = cat.heldout_combos(0)
    assert held == cat.heldout_combos(0)
    everything = set(cat.combos())
    assert held < everything
    assert 0.08 <= len(held) / len(everything) <= 0.12
    train = everything - held
    assert {c[0] for c in train} == set(cat.CATEGORIES)
    assert {c[1] for c in train} == set(cat.COLORS)
    assert {c[2] for c in train} == set(cat.PATTERNS)
    # every (category, colour) pair still has a training combination
    assert {(c[0], c[1]) for c in train} == {(a, b) for a in cat.CATEGORIES for b in cat.COLORS}
    assert cat.heldout_combos(1) != held


def test_heldout_products_are_in_catalog_but_flagged(small):
    _, products = small
    held = [p for p in products if p["heldout"]]
    assert held, "the small catalog should contain held-out products"
    assert all(cat.combo_of(p) in cat.heldout_combos(0) for p in held)


def test_reuse_and_regenerate(small, tmp_path):
    out, products = small
    before = (out / "catalog.jsonl").stat().st_mtime_ns
    assert cat.generate_catalog(out, seed=0, **SMALL) == products
    assert (out / "catalog.jsonl").stat().st_mtime_ns == before
    meta = json.loads((out / "catalog_meta.json").read_text())
    assert meta["renders_per_combo"] == 10 and meta["seed"] == 0
    tiny = cat.generate_catalog(tmp_path, seed=0, renders_per_combo=1, categories=("hat",))
    assert len(tiny) == len(cat.COLORS) * len(cat.PATTERNS)
    bigger = cat.generate_catalog(tmp_path, seed=0, renders_per_combo=2, categories=("hat",))
    assert len(bigger) == 2 * len(tiny)


def test_canonical_query():
    assert cat.canonical_query("t-shirt", "red", "striped") == "red striped t-shirt"
    assert cat.canonical_query("mug", "white", "plain") == "plain white mug"
