"""Statistics of an A/B experiment between two arms (pure functions, no I/O): what `experiment
report` prints beside the per-arm figures.

- `wilson`: the 95% Wilson score interval of one arm's rate (right near 0 and 1, unlike p +- 1.96 se);
- `difference`: treatment - control with Newcombe's hybrid score interval (method 10: built from
  the two Wilson intervals) and the two-sided p of the pooled two-proportion z-test;
- `searches_needed`: per arm, how many searches detect a difference `delta` from a base rate
  `p` at level `alpha` with `power` (normal approximation);
- `verdict`: one plain sentence from those;
- `overlap_at` and `mean_interval`: a shadow run's agreement of two generations' answers.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

Z95 = NormalDist().inv_cdf(0.975)


def wilson(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of successes / n; (0, 1) for n = 0."""
    if n <= 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass
class Difference:
    """treatment rate - control rate, its 95% interval and the test's two-sided p."""

    control: float
    treatment: float
    delta: float
    low: float
    high: float
    p_value: float


def two_proportion_p(x_c: int, n_c: int, x_t: int, n_t: int) -> float:
    """Two-sided p of the pooled two-proportion z-test (1.0 when there is nothing to compare)."""
    if n_c <= 0 or n_t <= 0:
        return 1.0
    pooled = (x_c + x_t) / (n_c + n_t)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n_c + 1 / n_t))
    if se == 0:
        return 1.0
    z = (x_t / n_t - x_c / n_c) / se
    return math.erfc(abs(z) / math.sqrt(2))


def difference(x_c: int, n_c: int, x_t: int, n_t: int, z: float = Z95) -> Difference:
    """Newcombe's hybrid score interval for p_t - p_c, with the z-test's p."""
    p_c = x_c / n_c if n_c else 0.0
    p_t = x_t / n_t if n_t else 0.0
    l_c, u_c = wilson(x_c, n_c, z)
    l_t, u_t = wilson(x_t, n_t, z)
    delta = p_t - p_c
    low = delta - math.sqrt((p_t - l_t) ** 2 + (u_c - p_c) ** 2)
    high = delta + math.sqrt((u_t - p_t) ** 2 + (p_c - l_c) ** 2)
    return Difference(p_c, p_t, delta, max(-1.0, low), min(1.0, high), two_proportion_p(x_c, n_c, x_t, n_t))


def searches_needed(p: float, delta: float, alpha: float = 0.05, power: float = 0.8) -> int:
    """Searches per arm for a two-sided test at `alpha` to see rate p against p + delta with `power`."""
    delta = abs(delta)
    if delta <= 0:
        raise ValueError("delta must be non-zero")
    p2 = min(max(p + delta, 0.0), 1.0)
    p = min(max(p, 0.0), 1.0)
    mean = (p + p2) / 2
    z_a, z_b = NormalDist().inv_cdf(1 - alpha / 2), NormalDist().inv_cdf(power)
    n = (z_a * math.sqrt(2 * mean * (1 - mean)) + z_b * math.sqrt(p * (1 - p) + p2 * (1 - p2))) ** 2 / delta ** 2
    return max(1, math.ceil(n))


def quantile(values: list[float], q: float) -> float | None:
    """The q-quantile (0..1) by linear interpolation; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    at = q * (len(ordered) - 1)
    low = math.floor(at)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (at - low)


def verdict(metric: str, treatment_name: str, x_c: int, n_c: int, x_t: int, n_t: int, share: float,
            alpha: float = 0.05, min_relative_effect: float = 0.1) -> str:
    """One sentence: which arm is better on `metric` (p < alpha), or how many more searches (both
    arms together, at the experiment's `share`) a test with 80% power needs to see the observed
    difference, or `min_relative_effect` of the control's rate if that is larger."""
    diff = difference(x_c, n_c, x_t, n_t)
    if n_c and n_t and diff.p_value < alpha and diff.delta != 0:
        better = treatment_name if diff.delta > 0 else "control"
        return (f"{better} better on {metric}: {diff.treatment:.4f} vs {diff.control:.4f} "
                f"(difference {diff.delta:+.4f}, 95% CI [{diff.low:+.4f}, {diff.high:+.4f}], p = {diff.p_value:.2g})")
    base = diff.control if n_c else diff.treatment
    base = base if 0 < base < 1 else 0.05
    effect = max(abs(diff.delta), min_relative_effect * base)
    per_arm = searches_needed(base, effect, alpha)
    smallest = min(share, 1 - share) if 0 < share < 1 else 0.5
    more = max(0, math.ceil(per_arm / smallest) - (n_c + n_t))
    if more == 0:
        return (f"no difference on {metric} (p = {diff.p_value:.2g}; difference {diff.delta:+.4f}, "
                f"95% CI [{diff.low:+.4f}, {diff.high:+.4f}])")
    return (f"not enough data yet on {metric} (p = {diff.p_value:.2g}): need ~{more} more searches "
            f"to see a difference of {effect:.4f} with 80% power")


def overlap_at(shown: list, other: list, k: int = 10) -> float:
    """overlap@k of two answers: the share of their first k ids they have in common,
    |A_k & B_k| / max(|A_k|, |B_k|) (an answer shorter than k, as top_k < k or a narrow filter
    makes it, counts what it shows); 1.0 when both are empty (they agree)."""
    a, b = set(shown[:k]), set(other[:k])
    return len(a & b) / max(len(a), len(b)) if a or b else 1.0


def mean_interval(values: list[float], z: float = Z95, bounds: tuple[float, float] = (0.0, 1.0)) -> tuple[float, float]:
    """The normal-approximation 95% interval of the mean of `values` (mean +- z s / sqrt(n), with
    the sample standard deviation s), clipped to `bounds`; `bounds` for fewer than 2 values."""
    n = len(values)
    if n < 2:
        return bounds
    mean = sum(values) / n
    s = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = z * s / math.sqrt(n)
    return max(bounds[0], mean - half), min(bounds[1], mean + half)
