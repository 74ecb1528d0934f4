"""The fusion weight is a property of the generation: recorded in its manifest by the build, read
back by fusion N and scorer N, inherited by a clone, and the default for older manifests."""
from __future__ import annotations

import json

import pytest

from productsearch.control.generations import clone_encoders, record_encoders
from productsearch.core.vectors import DEFAULT_TEXT_WEIGHT
from productsearch.runtime.generation_settings import generation_text_weight, manifest_file


def built(repository, generation: int) -> None:
    for model in ("text_encoder", "image_encoder", "fusion", "scorer", "catalog_writer"):
        version = repository / model / str(generation)
        version.mkdir(parents=True)
        (version / "model.py").write_text("from productsearch.runtime.x import X as TritonPythonModel\n")
    for encoder in ("text_encoder", "image_encoder"):
        (repository / encoder / str(generation) / "weights").mkdir()
        (repository / encoder / str(generation) / "weights" / "w.bin").write_bytes(b"w" * generation)


def test_the_manifest_carries_the_weight_and_fusion_and_scorer_read_it(tmp_path):
    built(tmp_path, 1)
    record_encoders(tmp_path, 1, {"preset": "demo"}, {"text_weight": 0.1})
    assert json.loads(manifest_file(tmp_path, 1).read_text())["fusion"] == {"text_weight": 0.1}
    assert generation_text_weight(tmp_path, 1) == pytest.approx(0.1)


def test_a_rebuild_with_another_weight_rewrites_the_manifest(tmp_path):
    built(tmp_path, 1)
    record_encoders(tmp_path, 1, {"preset": "demo"}, {"text_weight": 0.1})
    record_encoders(tmp_path, 1, {"preset": "demo-minilm"})
    assert generation_text_weight(tmp_path, 1) == DEFAULT_TEXT_WEIGHT


def test_old_or_missing_manifests_mean_the_default(tmp_path):
    assert generation_text_weight(tmp_path, 7) == DEFAULT_TEXT_WEIGHT
    manifest_file(tmp_path, 2).parent.mkdir(parents=True, exist_ok=True)
    manifest_file(tmp_path, 2).write_text(json.dumps({"generation": 2, "encoders": {}}))
    assert generation_text_weight(tmp_path, 2) == DEFAULT_TEXT_WEIGHT


def test_a_cloned_generation_keeps_the_weight_of_its_source(tmp_path):
    built(tmp_path, 1)
    record_encoders(tmp_path, 1, {"preset": "demo"}, {"text_weight": 0.1})
    clone_encoders(tmp_path, 2, 1)
    assert generation_text_weight(tmp_path, 2) == pytest.approx(0.1)


def test_a_weight_outside_the_unit_interval_is_refused(tmp_path):
    manifest_file(tmp_path, 3).parent.mkdir(parents=True, exist_ok=True)
    manifest_file(tmp_path, 3).write_text(json.dumps({"fusion": {"text_weight": 1.5}}))
    with pytest.raises(ValueError, match="outside"):
        generation_text_weight(tmp_path, 3)
