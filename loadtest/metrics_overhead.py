"""The scorer's metrics bookkeeping per batch, in process: what one batch of 8 rows costs in
`ScorerMetrics` (Metrics forced on without Triton, so nothing is flushed: the hot path alone).

    python -m loadtest.bench --sections metrics [--runs 5] [--write]
"""
from __future__ import annotations

import argparse
import statistics
import time
import types

import numpy as np

from productsearch.catalog.ranking.batch import Ranked, RowQuery
from productsearch.runtime import scorer_metrics
from loadtest.report import publish
from productsearch.runtime.metrics import Metrics

BATCHES = 20_000


class ForcedOn(Metrics):
    def __init__(self, enabled=True, **base):
        super().__init__(enabled, **base)
        self.enabled = True  # counts as inside Triton; flush() is never called here


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.bench --sections metrics", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--write", action="store_true", help="record the figure in BENCHMARKS.md")
    args = parser.parse_args(argv)
    scorer_metrics.Metrics = ForcedOn
    metrics = scorer_metrics.ScorerMetrics(types.SimpleNamespace(name="scorer", version=1, parameter=lambda key, default: default), "scorer_0_0", {})
    rows = [RowQuery(np.zeros(4, np.float32), 10, kind="text") for _ in range(8)]
    results = [Ranked(np.arange(10), np.zeros(10, np.float32)) for _ in rows]
    runs = []
    for _ in range(args.runs):
        started = time.perf_counter()
        for _ in range(BATCHES):
            with metrics.batch("default") as batch:
                for stage in ("filter", "vector", "lexical", "rank"):
                    with batch.clock(stage):
                        pass
                batch.answered(rows, results)
        runs.append((time.perf_counter() - started) / BATCHES * 1e6)
    table = ("| bookkeeping | us per batch of 8 rows, median (min-max) |\n|---|---:|\n"
             f"| ScorerMetrics: 4 stage clocks + answered() | {statistics.median(runs):.1f} ({min(runs):.1f}-{max(runs):.1f}) |")
    publish("metrics", "The scorer's metrics bookkeeping per batch (in process)", "loadtest.bench --sections metrics", argv,
            f"{args.runs} runs of {BATCHES:,} batches; metrics forced on outside Triton (nothing flushed), so this is "
            "the hot path's own cost; compare it with the scorer's ms per batch above", table, args.write)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
