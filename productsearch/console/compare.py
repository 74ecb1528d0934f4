"""The Compare page's arithmetic: the same query under two settings, overlap@10 and what moved."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Movement:
    id: str
    title: str
    rank_a: int | None  # 1-based; None: not in A's list
    rank_b: int | None

    @property
    def label(self) -> str:
        if self.rank_a is None:
            return "new"
        if self.rank_b is None:
            return "dropped"
        change = self.rank_a - self.rank_b
        return "same" if change == 0 else (f"up {change}" if change > 0 else f"down {-change}")


def overlap_at(a: list[str], b: list[str], k: int = 10) -> float:
    """|top-k of A ∩ top-k of B| / k."""
    return len(set(a[:k]) & set(b[:k])) / k if k else 0.0


def movements(a: list[tuple[str, str]], b: list[tuple[str, str]]) -> list[Movement]:
    """Each product of B's list with its rank in A, then A's products that B dropped."""
    rank_a = {pid: i + 1 for i, (pid, _) in enumerate(a)}
    rank_b = {pid: i + 1 for i, (pid, _) in enumerate(b)}
    moved = [Movement(pid, title, rank_a.get(pid), i + 1) for i, (pid, title) in enumerate(b)]
    return moved + [Movement(pid, title, rank_a[pid], None) for pid, title in a if pid not in rank_b]
