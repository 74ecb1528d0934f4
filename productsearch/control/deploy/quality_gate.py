"""The quality gate before exposure: no experiment or swap to a generation whose held-out
evaluation is worse than the serving generation's by more than a margin (unless forced).

The figures are the build's own: build_models.py records its held-out table in the manifest
(`generations/N.json`, "evaluation": metric -> value, P@10 and the like, higher is better;
training/generation.py). Every metric both generations report is compared; one that drops by
more than `margin` (absolute, default 0.02) refuses, and the refusal names each such figure.
A generation without recorded figures (built before they were recorded, or a clone) is not
gated, and `check` says so.
"""
from __future__ import annotations

from pathlib import Path

from productsearch.control.generations import read_manifest

DEFAULT_MARGIN = 0.02


class QualityGateRefused(RuntimeError):
    """Generation N is worse than the serving one on its held-out figures."""


def check(repository: Path, candidate: int, serving: int | None, margin: float = DEFAULT_MARGIN,
          force: bool = False) -> str:
    """A line saying what was compared; raises QualityGateRefused naming every figure that drops
    by more than `margin` (unless `force`: then the line says it was forced)."""
    if serving is None or serving == candidate:
        return "quality gate: nothing serves to compare with"
    ours = read_manifest(repository, candidate).get("evaluation") or {}
    theirs = read_manifest(repository, serving).get("evaluation") or {}
    common = sorted(set(ours) & set(theirs))
    if not common:
        missing = [g for g, figures in ((candidate, ours), (serving, theirs)) if not figures]
        return (f"quality gate: not applied (no held-out evaluation recorded for generation"
                f"{'s' if len(missing) > 1 else ''} {', '.join(map(str, missing)) or '-'} in common)")
    worse = [f"{name} {ours[name]:.4f} vs {theirs[name]:.4f} ({ours[name] - theirs[name]:+.4f})"
             for name in common if ours[name] < theirs[name] - margin]
    if not worse:
        return f"quality gate: generation {candidate} within {margin} of generation {serving} on {len(common)} held-out figures"
    message = (f"generation {candidate} is worse than serving generation {serving} by more than {margin} on its held-out "
               f"evaluation: {'; '.join(worse)}")
    if force:
        return f"quality gate forced: {message}"
    raise QualityGateRefused(f"refused: {message} (--force to go on)")
