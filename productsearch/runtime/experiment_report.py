"""An experiment's report: per arm searches, CTR, conversion and zero-result rate with 95% Wilson
intervals and p50/p99 scorer latency, the treatment - control differences and a verdict per
metric, from the shop's search log and events between the experiment's start and end.

One computation for both readers: the deploy CLI (`experiment report`, on the server's files)
and catalog_admin's `experiment_report` action (a write key: the same search log and events the
`analytics` action reads), which the console's Compare page shows beside the arms."""
from __future__ import annotations

import time
from pathlib import Path

from productsearch.catalog.analytics import arm_outcomes, shadow_pairs
from productsearch.catalog.events import EventStore, events_path
from productsearch.core.ab_statistics import difference, quantile, verdict, wilson
from productsearch.runtime import shadow_report
from productsearch.runtime.experiments import CONTROL, TREATMENT, read_experiments


def arm_summary(cell: dict) -> dict:
    n = cell["searches"]
    rate = lambda k: round(cell[k] / n, 4) if n else 0.0  # noqa: E731
    ci = lambda k: [round(v, 4) for v in wilson(cell[k], n)]  # noqa: E731
    return {"searches": n, "ctr": rate("clicked"), "ctr_ci": ci("clicked"), "conversion": rate("purchased"),
            "conversion_ci": ci("purchased"), "zero_result_rate": rate("zero_result"),
            "zero_result_ci": ci("zero_result"), "clicked": cell["clicked"], "purchased": cell["purchased"],
            "zero_result": cell["zero_result"],
            "p50_ms": round(quantile(cell["latencies_ms"], 0.5) or 0.0, 2),
            "p99_ms": round(quantile(cell["latencies_ms"], 0.99) or 0.0, 2)}


def summarize(experiment: dict, outcomes: dict[tuple[str, int], dict]) -> dict:
    """Per arm figures with 95% intervals, the treatment - control differences and verdicts."""
    empty = {"searches": 0, "zero_result": 0, "clicked": 0, "purchased": 0, "latencies_ms": []}
    cells = {CONTROL: outcomes.get((CONTROL, int(experiment["control"])), empty),
             TREATMENT: outcomes.get((TREATMENT, int(experiment["treatment"])), empty)}
    c, t = cells[CONTROL], cells[TREATMENT]
    name = f"generation {experiment['treatment']}"
    differences, verdicts = {}, {}
    for metric, key in (("CTR", "clicked"), ("conversion", "purchased"), ("zero-result rate", "zero_result")):
        diff = difference(c[key], c["searches"], t[key], t["searches"])
        differences[metric] = {"difference": round(diff.delta, 4), "ci": [round(diff.low, 4), round(diff.high, 4)],
                               "p": diff.p_value}
        line = verdict(metric, name, c[key], c["searches"], t[key], t["searches"], float(experiment["share"]))
        if key == "zero_result":  # fewer zero-result searches is the better arm
            line = line.replace(f"{name} better", "@@").replace("control better", f"{name} better").replace(
                "@@", "control better")
        verdicts[metric] = line
    return {"experiment": experiment, "arms": {arm: arm_summary(cell) for arm, cell in cells.items()},
            "differences": differences, "verdicts": verdicts}


def shop_report(catalog: str, repository: Path, shop: str) -> dict | None:
    """The report of the shop's latest experiment (running, or stopped until the next); None when
    the shop has had none."""
    experiment = read_experiments(repository).get(shop)
    if experiment is None:
        return None
    events = EventStore(events_path(catalog, shop, repository), durable=False)
    window = float(experiment["started_at"]), float(experiment.get("ended_at") or time.time() + 1)
    try:
        if experiment.get("shadow"):  # nobody routed: the two generations' answers compared
            return shadow_report.summarize(experiment, shadow_pairs(events.db, *window))
        outcomes = arm_outcomes(events.db, *window)
    finally:
        events.close()
    return summarize(experiment, outcomes)
