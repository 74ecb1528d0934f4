"""Adapting the image tower to a shop (productsearch/training/adapt.py) on a small studio shop in
the session server's live store: the gate passes and registers a verified generation with its
report; a broken run (learning rate 0) is refused and leaves every file of the repository as it
was. Few steps and sampled held-out sets keep it short; the figure of a larger shop is in
BENCHMARKS.md."""
from __future__ import annotations

import json
from dataclasses import replace

import pytest

from clients.contract import Product
from clients.index import load_products
from productsearch.catalog.store import catalog_url
from productsearch.control.generations import tree_checksum, verify_generation
from productsearch.control.repository import built_generations, link_repository
from productsearch.demo.studio_shop import studio_products
from productsearch.training.adapt import adapt, default_config
from productsearch.training.adapt_quality import GATE_FIGURE, SHOP_NDCG, GateRefused
from tests.conftest import MODEL_REPOSITORY

pytestmark = pytest.mark.integration
SHOP = "studio-test"
# the default recipe, fewer epochs, sampled replay and held-out sets
QUICK_CFG = replace(default_config(), epochs=12, batch_size=64)
QUICK = dict(heldout_share=0.3, replay_renders=600, photos_per_class=100, demo_eval=600, fm_test=500, progress=False)


@pytest.fixture(scope="module")
def studio_shop(triton, admin_catalog):
    admin_catalog.create_shop(SHOP)
    products = [Product(p["id"], p["title"], p["image"], p["fields"]) for p in studio_products(180, seed=0)]
    report = load_products(triton.grpc_url, products, key=triton.key, shop=SHOP, progress=False)
    assert not report.failed, report.summary()
    return catalog_url(triton.repository)


@pytest.fixture(scope="module")
def admin_catalog(triton):
    from clients.catalog import CatalogClient

    with CatalogClient(triton.grpc_url, timeout_s=30, key=triton.key) as client:
        yield client


def fresh_repository(tmp_path):
    return link_repository(MODEL_REPOSITORY, tmp_path / "model_repository", generations=[1])


def test_adapt_tiny_shop_registers_a_generation_that_beats_serving(studio_shop, tmp_path):
    repository = fresh_repository(tmp_path)
    report = adapt(repository, SHOP, store_url=studio_shop, cfg=QUICK_CFG, **QUICK, log=lambda *_: None)
    assert report["gate"]["passed"]
    assert report["after"][GATE_FIGURE] > report["before"][GATE_FIGURE]
    assert report["trust"].startswith("held-out set too small to trust (n=")
    assert f"{SHOP_NDCG} ±" in report["trust"]
    for figure in (SHOP_NDCG, "en_fused_ndcg@10", "zh_fused_ndcg@10"):
        assert 0 < report["before"][figure] <= 1 and 0 < report["after"][figure] <= 1
    assert report["after"][SHOP_NDCG] >= report["before"][SHOP_NDCG] - report["margin"]  # the gate held it
    assert built_generations(repository) == [1, 2]
    assert verify_generation(repository, 2)["built_by"]["shop"] == SHOP
    saved = json.loads((repository / "generations" / "adapt-2.json").read_text())
    assert saved["split"]["heldout_ids"] == report["split"]["heldout_ids"]
    assert (repository / "generations" / "adapt-2.png").stat().st_size > 0
    # the text tower is the serving one; only the image tower's projection changed
    assert (repository / "text_encoder" / "2" / "text_model").resolve() == \
        (repository / "text_encoder" / "1" / "text_model").resolve()
    assert tree_checksum(repository / "image_encoder" / "2") != tree_checksum(repository / "image_encoder" / "1")


def test_broken_run_refused_and_repository_untouched(studio_shop, tmp_path):
    repository = fresh_repository(tmp_path)
    before = {p.relative_to(repository): tree_checksum(p) if p.is_dir() else p.read_bytes()
              for p in repository.iterdir() if p.name != "catalog_store"}
    broken = replace(QUICK_CFG, epochs=2, lr=0.0)
    with pytest.raises(GateRefused, match="shop text->photo P@10 did not rise"):
        adapt(repository, SHOP, store_url=studio_shop, cfg=broken, **{**QUICK, "replay_renders": 100, "photos_per_class": 10},
              log=lambda *_: None)
    after = {p.relative_to(repository): tree_checksum(p) if p.is_dir() else p.read_bytes()
             for p in repository.iterdir() if p.name != "catalog_store"}
    assert after == before
    assert built_generations(repository) == [1]
