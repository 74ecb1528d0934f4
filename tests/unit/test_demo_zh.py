"""The bilingual demo catalog: about a third of the products in Chinese, written from their
attributes; the English text and the pixels never change, and switching languages re-renders nothing."""
from __future__ import annotations

import pytest

from productsearch.demo import catalog as cat
from productsearch.demo import chinese as zh

SMALL = dict(renders_per_combo=10, categories=("t-shirt", "dress", "lipstick"))  # 1,320 products


@pytest.fixture(scope="module")
def english(tmp_path_factory):
    out = tmp_path_factory.mktemp("catalog")
    return out, cat.generate_catalog(out, seed=0, **SMALL)


def test_about_a_third_is_chinese_and_names_category_and_colour(english, tmp_path):
    _, products = english
    mixed = cat.generate_catalog(tmp_path, seed=0, zh_fraction=zh.ZH_FRACTION, **SMALL)
    chinese = [p for p in mixed if p["lang"] == "zh"]
    assert 0.28 <= len(chinese) / len(mixed) <= 0.39
    for p in chinese:
        assert any(form in p["title"] for form in zh.CATEGORY_ZH[p["category"]]), p["title"]
        assert any(form in p["title"] for form in zh.COLOR_ZH[p["color"]]), p["title"]
    for before, after in zip(products, mixed):
        assert after["title_en"] == before["title"] and after["description_en"] == before["description"]
        assert {k: after[k] for k in ("id", "category", "color", "pattern", "price", "image")} == \
               {k: before[k] for k in ("id", "category", "color", "pattern", "price", "image")}
        assert after["title"] == (after["title_zh"] if after["lang"] == "zh" else before["title"])


def test_switching_languages_rewrites_the_text_only(english):
    out, products = english
    pixels = (out / products[5]["image"]).stat().st_mtime_ns
    mixed = cat.generate_catalog(out, seed=0, zh_fraction=zh.ZH_FRACTION, **SMALL)
    assert any(p["lang"] == "zh" for p in mixed)
    back = cat.generate_catalog(out, seed=0, **SMALL)
    assert back == products
    assert (out / products[5]["image"]).stat().st_mtime_ns == pixels


def test_canonical_chinese_phrases():
    assert zh.canonical_query_zh("t-shirt", "red", "striped") == "红色条纹T恤"
    assert zh.canonical_query_zh("lipstick", "red", "plain") == "红色纯色口红"
    assert zh.canonical_query_zh("dress", "blue", "polka-dot") == "蓝色波点连衣裙"


def test_the_language_pick_depends_on_the_product_only():
    p = {"id": "P00003", "category": "dress", "color": "red", "pattern": "plain"}
    assert zh.is_chinese(p) == zh.is_chinese({**p, "price": 3.0, "title": "x"})


def test_a_build_that_does_not_choose_the_language_keeps_the_catalog_as_it_is(english):
    out, products = english
    mixed = cat.generate_catalog(out, seed=0, zh_fraction=zh.ZH_FRACTION, **SMALL)
    assert cat.generate_catalog(out, seed=0, zh_fraction=None, **SMALL) == mixed
    cat.generate_catalog(out, seed=0, **SMALL)
    assert cat.generate_catalog(out, seed=0, zh_fraction=None, **SMALL) == products
