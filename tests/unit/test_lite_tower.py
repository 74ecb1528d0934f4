"""EfficientNet-Lite0 loading: a checkpoint with the package's key names loads strictly at the
served resolution, a wrong one is refused, and a trained tower round-trips through save/load and
the served loading path. Tiny randomly initialised configs, no download."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("efficientnet_lite_pytorch")

from productsearch.encoders.lite_tower import LiteImageTower, lite0_checkpoint, load_lite0  # noqa: E402
from productsearch.encoders.loading import load_image_tower, write_tower_kind  # noqa: E402

TINY = {"width_coefficient": 0.25, "depth_coefficient": 0.5}


def images(n: int = 3) -> list[Image.Image]:
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 255, (40 + 7 * i, 33, 3), dtype=np.uint8)) for i in range(n)]


def test_checkpoint_with_package_keys_loads(tmp_path):
    torch.manual_seed(0)
    source = load_lite0(32, **TINY)
    state = {**source.state_dict(), "_fc.weight": torch.zeros(10, 1280), "_fc.bias": torch.zeros(10)}
    torch.save(state, tmp_path / "tiny.pth")
    loaded = load_lite0(32, tmp_path / "tiny.pth", **TINY).eval()
    x = torch.randn(2, 3, 32, 32)
    assert torch.allclose(loaded(x), source.eval()(x))
    assert loaded(x).shape == (2, 1280)


def test_a_checkpoint_of_another_network_is_refused(tmp_path):
    torch.save({"conv1.weight": torch.zeros(8, 3, 3, 3)}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match="EfficientNet-Lite0"):
        load_lite0(32, tmp_path / "other.pth", **TINY)
    torch.save(load_lite0(32).state_dict(), tmp_path / "full.pth")  # full width into the tiny net
    with pytest.raises(ValueError, match="not an EfficientNet-Lite0 checkpoint"):
        load_lite0(32, tmp_path / "full.pth", **TINY)


def test_the_shipped_imagenet_weights_load():
    assert lite0_checkpoint().is_file()
    net = load_lite0(96, lite0_checkpoint())
    assert sum(p.numel() for p in net.parameters()) > 3_000_000


def test_tower_round_trips_through_the_served_loading_path(tmp_path):
    torch.manual_seed(0)
    tower = LiteImageTower(32, dim=8, hidden=16, backbone=TINY)
    expected = tower.encode(images())
    assert expected.shape == (3, 8) and np.allclose(np.linalg.norm(expected, axis=1), 1, atol=1e-5)
    tower.save(tmp_path / "image_tower")
    write_tower_kind(tmp_path, {"kind": "lite0"})
    served = load_image_tower(tmp_path)
    assert np.allclose(served.encode(images()), expected, atol=1e-6)


def test_the_onnx_runtime_tower_equals_torch_and_is_what_the_cpu_serves(tmp_path):
    """The build's ONNX export: equal to the torch tower within 1e-4 on the same photos (its
    preprocessing included), any batch size; the served loading path takes it on the CPU."""
    from productsearch.encoders.lite_tower import ONNX_FILE, OrtLiteTower

    torch.manual_seed(1)
    tower = LiteImageTower(32, dim=8, hidden=16, backbone=TINY).eval()
    expected = tower.encode(images(5))
    tower.save(tmp_path / "image_tower")
    tower.export_onnx(tmp_path / "image_tower")
    assert (tmp_path / "image_tower" / ONNX_FILE).exists()
    write_tower_kind(tmp_path, {"kind": "lite0"})
    served = load_image_tower(tmp_path)
    assert isinstance(served, OrtLiteTower)
    assert np.allclose(served.encode(images(5)), expected, atol=1e-4)
    assert np.allclose(served.encode(images(5), batch_size=2), expected, atol=1e-4)
    assert not isinstance(load_image_tower(tmp_path, runtime="torch"), OrtLiteTower)
