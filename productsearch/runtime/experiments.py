"""A/B experiments between model generations: their durable state, and which arm a shopper is in.

State: `model_repository/generations/experiments.json`, beside the serving pointer (written
atomically by `python -m productsearch.control.deploy experiment start|stop|promote`), one entry per
shop: {"id", "control": M, "treatment": N, "share", "started_at"} (+ "shadow": true for a shadow
run: share 0, M answers everyone and N repeats each search unseen) and, once stopped or
promoted, "ended_at" and "outcome" (kept for `experiment report` until the shop's next experiment). The serving scorer (version M)
reads it again whenever the file changes (one stat per batch), also after a restart, so the
split survives restarts of any process.

Assignment is sticky and stateless: a shopper is in the treatment arm when the first 8 bytes of
sha256(experiment id, USER) read as a fraction of 2**64 fall below the share. The same USER
always lands in the same arm of one experiment; a new experiment (a new id) draws anew. A search
without USER is the control's.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from productsearch.runtime.generation_settings import MANIFEST_DIR

EXPERIMENTS_FILE = "experiments.json"
CONTROL, TREATMENT = "control", "treatment"
# a shadow experiment's arm of N's answers, which no shopper sees, and of the rows M logs for
# requests N could not answer or that the full shadow queue dropped (runtime/shadow.py)
SHADOW, SHADOW_FAILED, SHADOW_DROPPED = "shadow", "shadow_failed", "shadow_dropped"


def experiments_path(repository: Path) -> Path:
    return Path(repository) / MANIFEST_DIR / EXPERIMENTS_FILE


def arm_of(experiment_id: str, user: str, share: float) -> str:
    """TREATMENT for a fraction `share` of users (a stable hash of the experiment id and USER), else CONTROL."""
    if not user:
        return CONTROL
    digest = hashlib.sha256(f"{experiment_id}\0{user}".encode()).digest()
    return TREATMENT if int.from_bytes(digest[:8], "big") < share * 2 ** 64 else CONTROL


def arm_user(experiment_id: str, share: float, arm: str, prefix: str = "probe-") -> str:
    """The first USER `<prefix><i>` that lands in `arm`: a search with it answers as that arm (the
    console's Compare page runs a query as each arm this way). Expected tries: 1 / the arm's share."""
    for i in range(10_000_000):
        if arm_of(experiment_id, f"{prefix}{i}", share) == arm:
            return f"{prefix}{i}"
    raise ValueError(f"no {arm} user in 10,000,000 tries at share {share}")


def read_experiments(repository: Path) -> dict[str, dict]:
    """shop -> its latest experiment (running unless it has "ended_at"); {} when none (or unreadable)."""
    try:
        data = json.loads(experiments_path(repository).read_text())
    except (FileNotFoundError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


class ExperimentWatch:
    """The experiments file as the serving scorer sees it, re-read when its mtime or size changes."""

    def __init__(self, repository: Path):
        self.path = experiments_path(repository)
        self.repository = repository
        self.stamp: tuple | None = None
        self.running: dict[str, dict] = {}

    def current(self) -> dict[str, dict]:
        try:
            stat = os.stat(self.path)
            stamp = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
        except FileNotFoundError:
            stamp = None
        if stamp != self.stamp:
            self.stamp = stamp
            self.running = read_experiments(self.repository) if stamp else {}
        return self.running
