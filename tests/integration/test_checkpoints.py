"""Real-checkpoint presets (clip, chinese-clip, bert-resnet) built from tiny random configs,
served by the real Triton as generations 2-4 beside the demo, and searched end to end."""
from __future__ import annotations

import json

import numpy as np
import pytest

import build_models
from clients.index import read_products
from loadtest.private_server import deployer_for
from clients.search import SearchClient
from productsearch.encoders.loading import load_image_tower, load_text_tower
from productsearch.control.repository import link_repository
from tests.conftest import DEMO_CATALOG, MODEL_REPOSITORY, load_catalog, require_built, serve_generation, start_server
from tests.tiny_checkpoints import tiny_bert, tiny_chinese_clip, tiny_clip

pytestmark = pytest.mark.integration
PRESETS = {2: "clip", 3: "chinese-clip", 4: "bert-resnet"}


@pytest.fixture(scope="module")
def preset_repository(tmp_path_factory):
    require_built()
    root = tmp_path_factory.mktemp("presets")
    repository = link_repository(MODEL_REPOSITORY, root / "model_repository", generations=[1])
    checkpoints = {"clip": tiny_clip(root / "clip"), "chinese-clip": tiny_chinese_clip(root / "cclip"),
                   "bert-resnet": tiny_bert(root / "bert")}
    for generation, preset in PRESETS.items():
        extra = ["--arch", "resnet18", "--resolution", "64", "--dim", "32", "--epochs", "2"] if preset == "bert-resnet" else []
        assert build_models.main(["--preset", preset, "--checkpoint", str(checkpoints[preset]), "--out", str(repository),
                                  "--catalog-dir", str(DEMO_CATALOG.parent), "--generation", str(generation), *extra]) == 0
    subset = root / "catalog.jsonl"
    with open(subset, "w") as out:
        for line in DEMO_CATALOG.read_text().splitlines()[::53]:  # ~100 products, every category
            product = json.loads(line)
            product["image"] = str(DEMO_CATALOG.parent / product["image"])
            out.write(json.dumps(product) + "\n")
    return repository, subset


@pytest.mark.parametrize("generation", sorted(PRESETS))
def test_preset_towers_load_and_embed_unit_norm(preset_repository, generation):
    from PIL import Image

    repository, _ = preset_repository
    text = load_text_tower(repository / "text_encoder" / str(generation)).encode(["red mug", "口红 连衣裙"])
    image = load_image_tower(repository / "image_encoder" / str(generation)).encode([Image.new("RGB", (80, 60), "red")])
    assert text.shape[1] == image.shape[1] and text.shape[0] == 2
    np.testing.assert_allclose(np.linalg.norm(np.vstack([text, image]), axis=1), 1.0, atol=1e-4)


def test_presets_serve_end_to_end_through_triton(preset_repository, tmp_path):
    repository, subset = preset_repository
    server = start_server(repository, tmp_path / "triton.log", [])
    try:
        serve_generation(server, repository)
        load_catalog(server, read_products(subset))
        for generation, preset in PRESETS.items():
            with deployer_for(server, repository, log=lambda *a: None) as deployer:
                deployer.swap(generation)  # the catalog re-encoded from the store by the preset's towers
            with SearchClient(server.grpc_url, timeout_s=60) as client:
                query = "口红" if preset == "chinese-clip" else "red mug"
                result = client.search(query, image=json.loads(subset.read_text().splitlines()[0])["image"], top_k=5)
            assert result.generation == generation, preset
            assert len(result.ids) == 5 and all(a >= b for a, b in zip(result.scores, result.scores[1:]))
    finally:
        server.stop()
