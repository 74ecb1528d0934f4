"""The report of a shadow experiment: how far generation N's unseen answers agree with the
serving M's, and how fast each generation scored them, from the shop's search log.

Each control search of the experiment's window is paired with its shadow row (catalog/analytics.py
`shadow_pairs`): N's answer (arm `shadow`), or why there is none - N failed (`shadow_failed`, with
its error), the scorer's shadow queue was full (`shadow_dropped`), or no row (a request mixing
shops, which is not shadowed, or a row not written yet). Figures: per generation, searches and p50
/ p99 scorer latency (each measured inside its own scorer, as the search log always does);
overlap@10 (core/ab_statistics.py `overlap_at`) averaged over the compared searches with its 95%
interval; the counts of searches not compared and the most frequent errors.
"""
from __future__ import annotations

from collections import Counter

from productsearch.core.ab_statistics import mean_interval, overlap_at, quantile
from productsearch.runtime.experiments import SHADOW, SHADOW_DROPPED, SHADOW_FAILED

TOP = 10  # overlap@10


def latency_cell(generation: int, role: str, latencies: list[float]) -> dict:
    return {"generation": generation, "role": role, "searches": len(latencies),
            "p50_ms": round(quantile(latencies, 0.5) or 0.0, 2), "p99_ms": round(quantile(latencies, 0.99) or 0.0, 2)}


def summarize(experiment: dict, pairs: list[dict]) -> dict:
    control, shadow = int(experiment["control"]), int(experiment["treatment"])
    searches = [p for p in pairs if p["generation"] == control]
    compared = [p for p in searches if p["shadow_arm"] == SHADOW and p["shadow_generation"] == shadow]
    overlaps = [overlap_at(p["results"], p["shadow_results"], TOP) for p in compared]
    failed = [p for p in searches if p["shadow_arm"] == SHADOW_FAILED]
    dropped = sum(1 for p in searches if p["shadow_arm"] == SHADOW_DROPPED)
    errors = Counter(str(p["shadow_filters"].get("error", "")) for p in failed)
    mean = sum(overlaps) / len(overlaps) if overlaps else 0.0
    return {"experiment": experiment,
            "generations": [latency_cell(control, "control", [p["latency_ms"] for p in searches]),
                            latency_cell(shadow, "shadow", [p["shadow_latency_ms"] for p in compared])],
            "overlap_at_10": {"mean": round(mean, 4), "ci": [round(v, 4) for v in mean_interval(overlaps)],
                              "compared": len(compared)},
            "searches": len(searches), "compared": len(compared), "failed": len(failed), "dropped": dropped,
            "not_shadowed": len(searches) - len(compared) - len(failed) - dropped,
            "errors": [{"error": e, "searches": n} for e, n in errors.most_common(3)]}


def format_report(result: dict) -> str:
    experiment = result["experiment"]
    overlap = result["overlap_at_10"]
    lines = [f"shadow experiment {experiment['id']} ({experiment.get('outcome', 'running')}): shop "
             f"{experiment['shop']}, generation {experiment['treatment']} in the shadow of serving generation "
             f"{experiment['control']}", "",
             f"{'generation':>10} {'role':<8} {'searches':>9} {'p50 ms':>8} {'p99 ms':>8}"]
    lines += [f"{g['generation']:>10} {g['role']:<8} {g['searches']:>9} {g['p50_ms']:>8.2f} {g['p99_ms']:>8.2f}"
              for g in result["generations"]]
    lines += ["", f"overlap@10: {overlap['mean']:.4f} [95% CI {overlap['ci'][0]:.4f}, {overlap['ci'][1]:.4f}] over "
                  f"{overlap['compared']} of {result['searches']} searches",
              f"not compared: {result['failed']} generation {experiment['treatment']} failed, {result['dropped']} "
              f"dropped (shadow queue full), {result['not_shadowed']} not shadowed or not logged yet"]
    lines += [f"  {e['searches']} x {e['error']}" for e in result["errors"]]
    return "\n".join(lines)
