"""The adapt split by product id: a held-out product is never a training product, the split is
fixed by the seed and a product's side never depends on the rest of the catalog. The gate, the
small-set warning, the graded nDCG, the training device and a registration stopped half way."""
import numpy as np
import pytest

from productsearch.demo.studio_shop import studio_products
from productsearch.training.adapt_quality import SHOP_NDCG, gate, graded_gains, ndcg_per_query, split_ids, trust_line
from tests.catalog_fixtures import STORE_KINDS, catalog_store

IDS = [f"S{n:05d}" for n in range(1, 2001)]


def test_heldout_ids_never_in_training_and_none_lost():
    train, held = split_ids(IDS, 0.2, seed=0)
    assert not set(train) & set(held)
    assert sorted(train + held) == sorted(IDS)
    assert 300 < len(held) < 500  # about the share


def test_split_fixed_by_seed_and_stable_as_the_catalog_grows():
    assert split_ids(IDS, 0.2, 0) == split_ids(list(reversed(IDS)), 0.2, 0)
    assert split_ids(IDS, 0.2, 0)[1] != split_ids(IDS, 0.2, 1)[1]
    _, held_small = split_ids(IDS[:500], 0.2, 0)
    _, held_big = split_ids(IDS, 0.2, 0)
    assert set(held_small) == set(held_big) & set(IDS[:500])


def test_share_out_of_range_refused():
    with pytest.raises(ValueError, match="between 0 and 1"):
        split_ids(IDS, 1.0, 0)


def test_gate_names_the_figure_that_failed():
    before = {"shop text->photo P@10": 0.5, "en_image_category": 0.9, "_queries": 10}
    assert gate(before, {**before, "shop text->photo P@10": 0.6}) == []
    failed = gate(before, {**before, "shop text->photo P@10": 0.6, "en_image_category": 0.85})
    assert len(failed) == 1 and failed[0].startswith("en_image_category fell")
    assert gate(before, before)[0].startswith("shop text->photo P@10 did not rise")
    line = trust_line({**before, "_products": 30, "_ci": {"shop text->photo P@10": 0.2, SHOP_NDCG: 0.15}})
    assert "too small to trust (n=10 queries over 30 products" in line
    assert "shop text->photo P@10 ±0.200" in line and f"{SHOP_NDCG} ±0.150" in line
    assert trust_line({**before, "_queries": 100}) is None


def test_the_gate_guards_the_shops_fused_ndcg_but_only_reports_its_photo_to_photo():
    before = {"shop text->photo P@10": 0.5, SHOP_NDCG: 0.8, "shop photo->photo P@10": 0.9, "_queries": 10}
    better = {**before, "shop text->photo P@10": 0.6}
    assert gate(before, {**better, "shop photo->photo P@10": 0.5}) == []
    assert gate(before, {**better, SHOP_NDCG: 0.79}) == []  # within the margin
    failed = gate(before, {**better, SHOP_NDCG: 0.7})
    assert failed == [f"{SHOP_NDCG} fell by more than 0.02 (0.800 -> 0.700)"]


def test_graded_ndcg_is_one_for_the_ideal_order_and_falls_as_the_best_sink():
    # products: the same kind and colour (gain 2), the same kind (1), another kind (0)
    gains = graded_gains([("vase", "blue")], [("vase", "blue"), ("vase", "red"), ("mug", "blue")])
    assert gains.tolist() == [[2.0, 1.0, 0.0]]
    corpus = np.eye(3, dtype=np.float32)
    ideal = ndcg_per_query(np.array([[3.0, 2.0, 1.0]], np.float32), corpus, gains)
    worst = ndcg_per_query(np.array([[1.0, 2.0, 3.0]], np.float32), corpus, gains)
    assert ideal[0] == pytest.approx(1.0)
    # DCG of (0, 1, 2) over that of (2, 1, 0), discounts 1/log2(rank+1)
    assert worst[0] == pytest.approx((1 / np.log2(3) + 2 / 2) / (2 + 1 / np.log2(3)))
    assert ndcg_per_query(corpus[:1], corpus, np.zeros((1, 3)))[0] == 0.0  # nothing relevant: 0, not NaN


def test_studio_shop_bilingual_and_deterministic():
    a, b = studio_products(60, seed=1), studio_products(60, seed=1)
    assert [p["image"] for p in a] == [p["image"] for p in b]
    langs = {p["fields"]["lang"] for p in a}
    assert langs == {"en", "zh"}
    assert len({p["fields"]["category"] for p in a}) == 6


def test_adapt_refuses_an_empty_repository_and_an_unknown_shop(tmp_path, capsys):
    from productsearch.control.repository import built_generations, link_repository
    from productsearch.training.adapt import main
    from tests.conftest import MODEL_REPOSITORY

    with pytest.raises(SystemExit, match="no built generation to adapt"):
        main(["--shop", "s", "--model-repository", str(tmp_path / "empty")])
    repository = link_repository(MODEL_REPOSITORY, tmp_path / "model_repository", generations=[1])
    assert main(["--shop", "nosuch", "--model-repository", str(repository)]) == 2
    assert "shop 'nosuch' has no catalog" in capsys.readouterr().err
    assert built_generations(repository) == [1]


def test_the_training_device_is_the_cpu_here_and_cuda_without_a_gpu_is_refused(monkeypatch):
    import torch

    from productsearch.training.adapt import training_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert training_device("auto") == "cpu" and training_device("cpu") == "cpu"
    with pytest.raises(SystemExit, match="torch sees no GPU"):
        training_device("cuda")


def test_a_registration_stopped_half_way_leaves_the_repository_as_it_was(tmp_path, monkeypatch):
    """Ctrl-C after the encoders were cloned (finish_generation raising): no generation 2, no
    staged tower, every file as before."""
    from productsearch.control.generations import tree_checksum
    from productsearch.control.repository import built_generations, link_repository
    from productsearch.encoders.lite_tower import LiteImageTower
    from productsearch.training import adapt_register
    from tests.conftest import MODEL_REPOSITORY

    repository = link_repository(MODEL_REPOSITORY, tmp_path / "model_repository", generations=[1])
    before = {p.name: tree_checksum(p) for p in repository.iterdir() if p.is_dir()}
    tower = LiteImageTower.load(repository / "image_encoder" / "1" / "image_tower")

    def interrupted(*args, **kwargs):
        assert built_generations(repository) == [1, 2]  # the clone was there when it stopped
        raise KeyboardInterrupt

    monkeypatch.setattr(adapt_register, "finish_generation", interrupted)
    with pytest.raises(KeyboardInterrupt):
        adapt_register.register(repository, 2, 1, tower, {"preset": "adapt"}, 0.5)
    assert built_generations(repository) == [1]
    assert {p.name: tree_checksum(p) for p in repository.iterdir() if p.is_dir()} == before
    assert not list((repository / "image_encoder").glob(".adapt-*"))


@pytest.mark.parametrize("kind", STORE_KINDS)
def test_adapt_reads_the_shops_photos_from_either_store(kind, tmp_path):
    """The products adapt trains on, from the embedded store and from Milvus (where a shop that
    was never swapped has no write fence): with photos only, graded by kind and colour, a missing
    field never matching."""
    import time

    from productsearch.catalog.rows import ProductWrite
    from productsearch.catalog.store import catalog_url, open_store, register_generation
    from productsearch.training.adapt import shop_products

    studio = studio_products(3, seed=0)
    with catalog_store(kind, tmp_path):
        url = catalog_url(tmp_path)
        register_generation(url, 1, 0.5)
        store = open_store(url, "studio")
        vector = np.full(8, 8 ** -0.5, np.float32)
        with store.transaction() as batch:
            seqs = [store.upsert_one(batch, 1, ProductWrite(p["id"], p["title"], p["fields"], p["image"], vector, vector),
                                     time.time()) for p in studio]
            seqs.append(store.upsert_one(batch, 1, ProductWrite("T1", "gift card", {}, None, vector, None), time.time()))
        store.committed(batch, seqs)
        products = shop_products(url, "studio")
    assert [p["id"] for p in products] == [p["id"] for p in studio]
    assert [p["image"] for p in products] == [p["image"] for p in studio]
    first = products[0]
    assert first["attributes"][:2] == (studio[0]["fields"]["category"], studio[0]["fields"]["color"])
    assert first["attributes"][2] == "\0S00001" != products[1]["attributes"][2]  # no pattern field: matches nothing


def test_a_generation_left_by_an_adapt_run_killed_while_registering_is_removed_by_the_next(tmp_path):
    """kill -9 half way through register (its marker, the clone, a staged tower left): the next
    run, under the repository's lock, removes them; a second run at the same time is refused."""
    from productsearch.control.generations import clone_encoders
    from productsearch.control.repository import built_generations, link_repository
    from productsearch.training.adapt_register import adapting, partial_marker, staged_tower
    from tests.conftest import MODEL_REPOSITORY

    repository = link_repository(MODEL_REPOSITORY, tmp_path / "model_repository", generations=[1])
    partial_marker(repository, 2).write_text("{}")
    staged_tower(repository, 2).mkdir()
    clone_encoders(repository, 2, 1)
    said = []
    with adapting(repository, said.append):
        assert built_generations(repository) == [1]
        assert not partial_marker(repository, 2).exists() and not staged_tower(repository, 2).exists()
        with pytest.raises(SystemExit, match="another adapt run is under way"):
            with adapting(repository):
                pass
    assert said == ["removing generation 2: an adapt run stopped while registering it"]
    clone_encoders(repository, 2, 1)  # a complete generation (no marker) is never touched
    with adapting(repository, said.append):
        assert built_generations(repository) == [1, 2]
    assert len(said) == 1


def test_the_default_recipe_is_sized_in_steps_not_epochs():
    """About TRAIN_STEPS steps whatever the shop's size, never more epochs than asked."""
    from dataclasses import replace

    from productsearch.training.adapt import default_config, sized_to

    cfg = default_config()
    assert sized_to(cfg, 4834).epochs == 30  # the 3,000-product studio shop: 2,417 train photos + flips
    assert sized_to(cfg, 16088).epochs == 10  # 10,000 products: the same ~1,200 steps
    assert sized_to(cfg, 10 ** 7).epochs == 1
    assert sized_to(replace(cfg, epochs=5), 252).epochs == 5
