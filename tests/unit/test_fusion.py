import numpy as np
import pytest

from productsearch.core.vectors import fuse, normalize


def unit_rows(rng, n, d=384):
    return normalize(rng.standard_normal((n, d)))


def test_fused_cosine_is_weighted_sum_of_modality_cosines():
    rng = np.random.default_rng(0)
    t_a, i_a, t_b, i_b = (unit_rows(rng, 5) for _ in range(4))
    both = np.ones(5, bool)
    for w in (0.0, 0.3, 0.5, 1.0):
        a = fuse(t_a, i_a, both, both, w)
        b = fuse(t_b, i_b, both, both, w)
        expected = w * np.sum(t_a * t_b, 1) + (1 - w) * np.sum(i_a * i_b, 1)
        np.testing.assert_allclose(np.sum(a * b, 1), expected, atol=1e-5)
        np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)


def test_missing_modality_is_filled_with_the_present_one():
    rng = np.random.default_rng(1)
    text, image = unit_rows(rng, 3), unit_rows(rng, 3)
    fused = fuse(text, np.zeros_like(image), np.ones(3, bool), np.zeros(3, bool), 0.25)
    np.testing.assert_allclose(fused[:, :384], np.sqrt(0.25) * text, atol=1e-6)
    np.testing.assert_allclose(fused[:, 384:], np.sqrt(0.75) * text, atol=1e-6)
    fused = fuse(np.zeros_like(text), image, np.zeros(3, bool), np.ones(3, bool), 0.25)
    np.testing.assert_allclose(fused[:, :384], np.sqrt(0.25) * image, atol=1e-6)


def test_neither_modality_or_bad_weight_is_refused():
    z = np.zeros((2, 384), np.float32)
    with pytest.raises(ValueError, match="neither"):
        fuse(z, z, np.array([True, False]), np.array([False, False]))
    with pytest.raises(ValueError, match="weight"):
        fuse(z + 1, z + 1, np.ones(2, bool), np.ones(2, bool), 1.5)
