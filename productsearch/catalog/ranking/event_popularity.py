"""Popularity learned from shoppers: a shop that opts in (its `popularity` setting with source
"events") has the `popularity` boost read each product's time-decayed count of its shoppers'
events instead of the catalog's own `popularity` field.

    score(p) = sum over p's events e of weight[e.event] * 2 ** (-(now - e.at) / half_life)

normalised by the shop's highest score, as the field is by its highest value (ranking/relevance.py,
step 2). Why decayed: last month's best seller should not outrank this week's. Events are counted
in SQL per (product, event, hour) over the last HORIZON_HALF_LIVES half-lives (an older event
weighs under 2^-8) and decayed here. The scores are recomputed every `refresh_s` in a background
thread while the shop is served, never on a search's path; only the first search after the shop
opts in (or changes its half-life or weights) computes them inline, once (catalog/refreshed.py).

The setting (catalog_admin `set_popularity`, logged with a sequence like rules):
    {"source": "catalog"}                                       the default: the catalog's field
    {"source": "events", "half_life_days": 7, "refresh_s": 60,
     "weights": {"click": 1, "add_to_cart": 3, "purchase": 5}}  shoppers' events
"""
from __future__ import annotations

import math
import threading
import time
from pathlib import Path

from productsearch.catalog.events import EVENT_KINDS, EventStore
from productsearch.catalog.refreshed import Refreshed

SOURCES = ("catalog", "events")
DEFAULT_SETTING = {"source": "catalog"}
DEFAULT_HALF_LIFE_DAYS = 7.0
DEFAULT_REFRESH_S = 60.0
DEFAULT_WEIGHTS = {"click": 1.0, "add_to_cart": 3.0, "purchase": 5.0}
HORIZON_HALF_LIVES = 8
MIN_REFRESH_S = 1.0
MAX_HALF_LIFE_DAYS = 365.0
HOUR_S = 3600.0


class PopularityError(ValueError):
    """A `popularity` setting the service cannot use; the message says which field and why."""


def check_setting(value) -> dict:
    """The setting with its defaults filled in, or PopularityError."""
    if not isinstance(value, dict):
        raise PopularityError('the setting is a JSON object, e.g. {"source": "events", "half_life_days": 7}')
    unknown = sorted(set(value) - {"source", "half_life_days", "refresh_s", "weights"})
    if unknown:
        raise PopularityError(f"unknown fields {unknown}: source, half_life_days, refresh_s, weights")
    source = value.get("source", "catalog")
    if source not in SOURCES:
        raise PopularityError(f"source must be one of {list(SOURCES)}, got {source!r}")
    if source == "catalog":
        if set(value) - {"source"}:
            raise PopularityError('source "catalog" takes no other field (they are the events source\'s)')
        return dict(DEFAULT_SETTING)
    half_life = _number(value, "half_life_days", DEFAULT_HALF_LIFE_DAYS, 1.0 / 24, MAX_HALF_LIFE_DAYS)
    refresh_s = _number(value, "refresh_s", DEFAULT_REFRESH_S, MIN_REFRESH_S, 86400.0)
    weights = value.get("weights", DEFAULT_WEIGHTS)
    if not isinstance(weights, dict) or not weights or set(weights) - set(EVENT_KINDS):
        raise PopularityError(f"weights maps event kinds {list(EVENT_KINDS)} to numbers >= 0, got {weights!r}")
    checked = {kind: _number(weights, kind, 0.0, 0.0, 1e6) for kind in weights}
    if not any(checked.values()):
        raise PopularityError("weights: at least one event kind needs a weight above 0")
    return {"source": "events", "half_life_days": half_life, "refresh_s": refresh_s, "weights": checked}


def _number(value: dict, name: str, default: float, low: float, high: float) -> float:
    got = value.get(name, default)
    if isinstance(got, bool) or not isinstance(got, (int, float)) or not math.isfinite(got) or not low <= got <= high:
        raise PopularityError(f"{name} must be a number in [{low:g}, {high:g}], got {got!r}")
    return float(got)


def decayed_scores(db, now: float, half_life_days: float, weights: dict[str, float]) -> dict[bytes, float]:
    """product id (bytes, as the live index holds ids) -> its decayed, weighted event count."""
    half_life_s = half_life_days * 86400.0
    kinds = [kind for kind, weight in weights.items() if weight > 0]
    marks = ",".join("?" * len(kinds))
    rows = db.execute(f"SELECT product_id, event, CAST(at / {HOUR_S} AS INTEGER), COUNT(*) FROM events "
                      f"WHERE at >= ? AND event IN ({marks}) GROUP BY 1, 2, 3",
                      (now - HORIZON_HALF_LIVES * half_life_s, *kinds))
    scores: dict[bytes, float] = {}
    for product, event, hour, count in rows:
        age_s = max(0.0, now - (hour + 0.5) * HOUR_S)
        key = product.encode()
        scores[key] = scores.get(key, 0.0) + weights[event] * count * 2.0 ** (-age_s / half_life_s)
    return scores


class ShopPopularity:
    """One shop's event popularity, kept current while it is served (catalog/refreshed.py: a stale
    read recounts in the background; a setting changed recounts inline, once)."""

    def __init__(self, events_file: Path, log=print, clock=time.time):
        self.events_file, self.clock = Path(events_file), clock
        self.setting: dict | None = None  # the setting the scores are counted with
        self.scores: Refreshed[tuple[dict[bytes, float], float]] = Refreshed(
            self._compute, DEFAULT_REFRESH_S, ({}, 0.0), f"popularity: {self.events_file.name}", log, clock)
        self._changing = threading.Lock()

    def current(self, setting: dict) -> tuple[dict[bytes, float], float] | None:
        """(scores, highest score) for `setting` (a checked one); None when it is the catalog's field."""
        if setting.get("source") != "events":
            return None
        if setting != self.setting:
            with self._changing:
                if setting != self.setting:
                    self.setting, self.scores.refresh_s = setting, setting["refresh_s"]
                    return self.scores.recount()
        return self.scores.read()

    def _compute(self) -> tuple[dict[bytes, float], float]:
        setting = self.setting
        store = EventStore(self.events_file, durable=False)
        try:
            scores = decayed_scores(store.db, self.clock(), setting["half_life_days"], setting["weights"])
        finally:
            store.close()
        return scores, max(scores.values(), default=0.0)


def event_popularity(popularity: ShopPopularity | None, store, rows: list) -> tuple[dict[bytes, float], float] | None:
    """What rank() takes as `popularity` for a batch: the shop's event scores when some row boosts
    popularity and the shop's setting (read from its store) opts in; else None (the catalog's field)."""
    if popularity is None or not any(row.relevance.boosts.get("popularity") for row in rows):
        return None
    return popularity.current(store.popularity())
