"""Event popularity (catalog/ranking/event_popularity.py) on a real SQLite events file: the
decayed, weighted counts, the setting's checks, and the scores kept current while serving (a
refresh in the background once `refresh_s` has passed; a failed one keeps the last scores)."""
from __future__ import annotations

import pytest

from productsearch.catalog.events import EventRow, EventStore
from productsearch.catalog.ranking.event_popularity import (DEFAULT_WEIGHTS, PopularityError, ShopPopularity,
                                                            check_setting, decayed_scores)

NOW = 1_800_000_000.0
DAY = 86400.0
FRESH = 2 ** (-1800 / (7 * DAY))  # an event half an hour old (its hour's middle), half-life 7 days


def record(path, rows: list[tuple[str, str, str, float]]) -> None:
    store = EventStore(path)
    store.add_events([EventRow(q, event, pid, position=1, at=at) for q, event, pid, at in rows])
    store.close()


def test_scores_halve_every_half_life_and_weigh_each_event_kind(tmp_path):
    path = tmp_path / "shop.sqlite"
    record(path, [("q1", "click", "A", NOW - 0.5 * 3600), ("q2", "click", "A", NOW - 7 * DAY - 0.5 * 3600),
                  ("q3", "purchase", "B", NOW - 0.5 * 3600), ("q4", "add_to_cart", "B", NOW - 14 * DAY - 0.5 * 3600),
                  ("q5", "click", "C", NOW - 200 * DAY)])  # beyond 8 half-lives: not read
    store = EventStore(path)
    scores = decayed_scores(store.db, NOW, 7.0, DEFAULT_WEIGHTS)
    assert scores[b"A"] == pytest.approx((1.0 + 0.5) * FRESH, rel=1e-6)  # each event at its hour's middle
    assert scores[b"B"] == pytest.approx((5.0 + 3.0 * 0.25) * FRESH, rel=1e-6)
    assert b"C" not in scores
    assert decayed_scores(store.db, NOW, 7.0, {"purchase": 1.0}) == pytest.approx({b"B": FRESH}, rel=1e-6)
    store.close()


@pytest.mark.parametrize("setting, words", [
    ([], "JSON object"), ({"source": "clicks"}, "source must be one of"), ({"source": "events", "decay": 2}, "unknown"),
    ({"source": "events", "half_life_days": -1}, "half_life_days"), ({"source": "events", "half_life_days": True}, "half_life_days"),
    ({"source": "events", "refresh_s": float("nan")}, "refresh_s"), ({"source": "events", "weights": {}}, "weights"),
    ({"source": "events", "weights": {"click": -1}}, "click"), ({"source": "catalog", "refresh_s": 5}, "no other field")])
def test_a_bad_setting_is_refused_with_what_is_wrong(setting, words):
    with pytest.raises(PopularityError, match=words):
        check_setting(setting)


def test_defaults_are_filled_in():
    assert check_setting({"source": "catalog"}) == {"source": "catalog"}
    assert check_setting({"source": "events"}) == {"source": "events", "half_life_days": 7.0, "refresh_s": 60.0,
                                                   "weights": DEFAULT_WEIGHTS}


class Clock:
    def __init__(self):
        self.now = NOW

    def __call__(self) -> float:
        return self.now


def test_scores_are_refreshed_in_the_background_and_a_setting_change_recounts_inline(tmp_path):
    """The snapshot's rules are catalog/refreshed.py's (test_refreshed.py); here what the shop's
    scores take from them: decayed at the recount's time, the setting's refresh_s and weights."""
    path, clock = tmp_path / "shop.sqlite", Clock()
    record(path, [("q1", "click", "A", NOW - 1800)])
    popularity = ShopPopularity(path, log=lambda *a: None, clock=clock)
    setting = check_setting({"source": "events", "refresh_s": 10})
    assert popularity.current({"source": "catalog"}) is None
    scores, top = popularity.current(setting)  # the first search after opting in computes inline
    assert scores == pytest.approx({b"A": FRESH}, rel=1e-6) and top == pytest.approx(FRESH, rel=1e-6)
    record(path, [("q2", "purchase", "B", NOW - 1800)])
    assert popularity.current(setting)[0] == scores  # within refresh_s: the same scores, no read
    clock.now += 11
    assert popularity.current(setting)[0] == scores  # stale: answered at once from the last scores
    later = FRESH * 2 ** (-11 / (7 * DAY))
    refreshed, top = popularity.scores.settled()  # refreshed behind it
    assert refreshed == pytest.approx({b"A": later, b"B": 5 * later}, rel=1e-6) and top == pytest.approx(5 * later, rel=1e-6)
    clicks = check_setting({"source": "events", "refresh_s": 10, "weights": {"click": 1}})
    assert popularity.current(clicks)[0] == pytest.approx({b"A": later}, rel=1e-6)  # a new setting: inline
    path.unlink()
    path.mkdir()  # the events file is broken: the scores stay, a search never fails for it
    clock.now += 11
    before = popularity.current(clicks)
    assert popularity.scores.settled() is before
