"""The experiment statistics against published values and by simulation."""
from __future__ import annotations

import numpy as np
import pytest

from productsearch.core.ab_statistics import (difference, mean_interval, overlap_at, quantile, searches_needed,
                                                    two_proportion_p, verdict, wilson)


def test_wilson_matches_the_published_interval():
    # Newcombe (1998), table I: 81/263 -> 0.2553 .. 0.3662
    low, high = wilson(81, 263)
    assert low == pytest.approx(0.2553, abs=1e-4) and high == pytest.approx(0.3662, abs=1e-4)
    assert wilson(0, 10)[0] == pytest.approx(0.0, abs=1e-12) and 0.0 < wilson(0, 10)[1] < 0.35
    assert wilson(0, 0) == (0.0, 1.0)


def test_newcombe_difference_matches_the_published_interval():
    # Newcombe (1998), table II example: 56/70 vs 48/80 -> difference 0.2, hybrid score CI 0.0524 .. 0.3339
    diff = difference(48, 80, 56, 70)
    assert diff.delta == pytest.approx(0.2)
    assert diff.low == pytest.approx(0.0524, abs=1e-3) and diff.high == pytest.approx(0.3339, abs=1e-3)


def test_z_test_p_value():
    # 2x2 table 30/100 vs 45/100: pooled z = 2.19, p = 0.0285
    assert two_proportion_p(30, 100, 45, 100) == pytest.approx(0.0285, abs=5e-4)
    assert two_proportion_p(0, 0, 5, 10) == 1.0 and two_proportion_p(0, 10, 0, 10) == 1.0


def test_sample_size_matches_the_textbook_figure():
    # base 0.10 vs 0.12, alpha 0.05 two-sided, power 0.8: ~3,841 per arm (Fleiss without continuity correction)
    assert abs(searches_needed(0.10, 0.02) - 3841) <= 5
    with pytest.raises(ValueError):
        searches_needed(0.1, 0.0)


def test_interval_covers_the_true_difference_about_95_percent():
    rng = np.random.default_rng(7)
    covered = 0
    for _ in range(2000):
        x_c, x_t = rng.binomial(400, 0.2), rng.binomial(400, 0.25)
        diff = difference(int(x_c), 400, int(x_t), 400)
        covered += diff.low <= 0.05 <= diff.high
    assert 0.93 <= covered / 2000 <= 0.97


def test_verdicts():
    assert verdict("CTR", "generation 2", 300, 1000, 400, 1000, 0.5).startswith("generation 2 better on CTR")
    assert verdict("CTR", "generation 2", 400, 1000, 300, 1000, 0.5).startswith("control better on CTR")
    waiting = verdict("CTR", "generation 2", 10, 90, 2, 10, 0.1)
    assert waiting.startswith("not enough data yet on CTR") and "more searches" in waiting
    assert verdict("CTR", "g2", 20_000, 100_000, 20_010, 100_000, 0.5).startswith("no difference on CTR")


def test_quantile():
    assert quantile([], 0.5) is None
    assert quantile([3.0, 1.0, 2.0], 0.5) == 2.0
    assert quantile(list(map(float, range(101))), 0.99) == pytest.approx(99.0)


def test_overlap_at_10_counts_the_shared_ids_of_what_each_answer_shows():
    assert overlap_at(list("abcdefghij"), list("abcdefghij")) == 1.0
    assert overlap_at(list("abcdefghij"), list("abcdeVWXYZ")) == 0.5
    assert overlap_at(list("abcdefghijKLM"), list("jihgfedcbaXYZ")) == 1.0  # order within the 10 does not count
    assert overlap_at(list("abc"), list("abd")) == pytest.approx(2 / 3)  # top_k 3: what both show
    assert overlap_at(list("abc"), []) == 0.0 and overlap_at([], []) == 1.0


def test_mean_interval_is_the_normal_interval_of_the_mean_clipped():
    values = [0.2, 0.4, 0.6, 0.8]  # mean 0.5, s = 0.2582, half-width 1.96 * 0.2582 / 2 = 0.2530
    low, high = mean_interval(values)
    assert low == pytest.approx(0.2470, abs=1e-4) and high == pytest.approx(0.7530, abs=1e-4)
    assert mean_interval([1.0] * 5) == (1.0, 1.0) and mean_interval([0.7]) == (0.0, 1.0)
    assert mean_interval([0.0, 1.0]) == (0.0, 1.0)  # clipped to [0, 1]
    rng = np.random.default_rng(7)  # covers a known mean about 95% of the time
    covered = sum(low <= 0.3 <= high for low, high in
                  (mean_interval(list(rng.binomial(10, 0.3, 200) / 10)) for _ in range(400)))
    assert 0.92 <= covered / 400 <= 0.98, covered
