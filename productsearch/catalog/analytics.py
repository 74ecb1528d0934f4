"""Search analytics of one shop over a time window, computed in SQL over its search log and
events (catalog/events.py): what `catalog_admin` ACTION analytics answers, and what
`python -m clients.analytics report` shows.

Figures, per search (a search: one answered `search` / `recommend` row):
    searches, zero_result_rate     share answered with no product
    ctr                            share of searches with at least one click
    conversion                     share of searches with at least one purchase
    mrr                            mean over searches with a click of 1 / the best-placed clicked position
    revenue_per_search             purchase VALUE summed / searches
They come for the whole window and by day (UTC), generation and arm; with the top queries, the
zero-result queries (what the catalog lacks) and the low-click queries (searched at least
`min_searches` times, CTR below half the shop's: what it ranks badly).
"""
from __future__ import annotations

import json
import sqlite3

PER_SEARCH = """
WITH e AS (
  SELECT query_id, MAX(event = 'click') AS clicked, MAX(event = 'purchase') AS bought,
         MIN(CASE WHEN event = 'click' THEN position END) AS first_click,
         SUM(CASE WHEN event = 'purchase' THEN value ELSE 0 END) AS revenue
  FROM events GROUP BY query_id)
SELECT {group} AS grp, COUNT(*), SUM(s.zero_result), SUM(COALESCE(e.clicked, 0)), SUM(COALESCE(e.bought, 0)),
       SUM(CASE WHEN e.clicked THEN 1.0 / MAX(e.first_click, 1) ELSE 0 END), SUM(COALESCE(e.revenue, 0))
FROM searches s LEFT JOIN e ON e.query_id = s.query_id
WHERE s.at >= ? AND s.at < ? {where}
GROUP BY grp ORDER BY {order} LIMIT ?
"""
GROUPS = {"total": "'all'", "day": "date(s.at, 'unixepoch')", "generation": "s.generation", "arm": "s.arm",
          "query": "lower(s.query)"}


def figures(row: tuple) -> dict:
    _, searches, zero, clicked, bought, reciprocal, revenue = row
    searches = searches or 0
    per = (lambda x: round(x / searches, 4)) if searches else (lambda x: 0.0)
    return {"searches": searches, "zero_result_rate": per(zero or 0), "ctr": per(clicked or 0),
            "conversion": per(bought or 0), "mrr": round(reciprocal / clicked, 4) if clicked else 0.0,
            "revenue_per_search": per(revenue or 0.0), "clicked": clicked or 0, "purchased": bought or 0,
            "revenue": round(revenue or 0.0, 2)}


def grouped(db: sqlite3.Connection, group: str, since: float, until: float, where: str = "", order: str = "grp",
            limit: int = 10_000) -> list[dict]:
    sql = PER_SEARCH.format(group=GROUPS[group], where=where, order=order)
    return [{group: row[0], **figures(row)} for row in db.execute(sql, (since, until, limit))]


def report(db: sqlite3.Connection, since: float, until: float, top: int = 20, min_searches: int = 3) -> dict:
    """The shop's analytics between `since` and `until` (seconds since the epoch)."""
    total = grouped(db, "total", since, until)
    summary = total[0] if total else figures((None, 0, 0, 0, 0, 0.0, 0.0))
    summary.pop("total", None)
    queries = "AND s.kind != 'recommend'"
    low_limit = summary["ctr"] / 2
    low = [q for q in grouped(db, "query", since, until, queries + " AND s.zero_result = 0",
                              "COUNT(*) DESC, grp", 10 * top)
           if q["searches"] >= min_searches and (q["ctr"] < low_limit or not q["clicked"])]
    return {"since": since, "until": until, "summary": summary,
            "by_day": grouped(db, "day", since, until), "by_generation": grouped(db, "generation", since, until),
            "by_arm": grouped(db, "arm", since, until),
            "top_queries": grouped(db, "query", since, until, queries, "COUNT(*) DESC, grp", top),
            "zero_result_queries": grouped(db, "query", since, until, queries + " AND s.zero_result = 1",
                                           "COUNT(*) DESC, grp", top),
            "low_click_queries": sorted(low, key=lambda q: (q["ctr"], -q["searches"]))[:top]}


ARM_OUTCOMES = """
WITH e AS (SELECT query_id, MAX(event = 'click') AS clicked, MAX(event = 'purchase') AS bought
           FROM events GROUP BY query_id)
SELECT s.arm, s.generation, s.zero_result, s.latency_ms, COALESCE(e.clicked, 0), COALESCE(e.bought, 0)
FROM searches s LEFT JOIN e ON e.query_id = s.query_id
WHERE s.at >= ? AND s.at < ?
"""


def arm_outcomes(db: sqlite3.Connection, since: float, until: float) -> dict[tuple[str, int], dict]:
    """(arm, generation) -> its searches' outcomes between `since` and `until`: counts of searches,
    zero-result searches, searches with a click and with a purchase, and every latency (ms)."""
    found: dict[tuple[str, int], dict] = {}
    for arm, generation, zero, latency, clicked, bought in db.execute(ARM_OUTCOMES, (since, until)):
        cell = found.setdefault((arm, int(generation)), {"searches": 0, "zero_result": 0, "clicked": 0,
                                                         "purchased": 0, "latencies_ms": []})
        cell["searches"] += 1
        cell["zero_result"] += int(zero)
        cell["clicked"] += int(clicked)
        cell["purchased"] += int(bought)
        cell["latencies_ms"].append(float(latency))
    return found


SHADOW_PAIRS = """
SELECT c.generation, c.latency_ms, c.results, s.arm, s.generation, s.latency_ms, s.results, s.filters
FROM searches c LEFT JOIN searches s ON s.query_id = c.query_id || ?
WHERE c.arm = 'control' AND c.at >= ? AND c.at < ?
"""


def shadow_pairs(db: sqlite3.Connection, since: float, until: float, suffix: str = "/shadow") -> list[dict]:
    """A shadow run's control searches between `since` and `until`, each with its shadow's outcome
    (the row logged under its query id + `suffix`; arm None when there is none): generation,
    latency (ms) and result ids of both, and the shadow row's filters (a failure's error)."""
    return [{"generation": int(g), "latency_ms": float(lat), "results": json.loads(res),
             "shadow_arm": arm, "shadow_generation": None if sg is None else int(sg),
             "shadow_latency_ms": None if slat is None else float(slat),
             "shadow_results": json.loads(sres) if sres else [], "shadow_filters": json.loads(sf) if sf else {}}
            for g, lat, res, arm, sg, slat, sres, sf in db.execute(SHADOW_PAIRS, (suffix, since, until))]
