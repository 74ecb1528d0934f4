"""The adapt split by product id: a held-out product is never a training product, the split is
fixed by the seed and a product's side never depends on the rest of the catalog."""
import pytest

from productsearch.demo.studio_shop import studio_products
from productsearch.training.adapt_quality import gate, split_ids, trust_line

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
    assert "too small to trust (n=10" in trust_line({**before, "_products": 30, "_ci": 0.2})


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
