"""The scorer's metrics bookkeeping per batch, in process: what one batch of 8 rows costs in
`ScorerMetrics` (Metrics forced on without Triton, so nothing is flushed: the hot path alone).

    python -m loadtest.metrics_overhead
"""
from __future__ import annotations

import statistics
import time
import types

import numpy as np

from productsearch.catalog.ranking.batch import Ranked, RowQuery
from productsearch.runtime import scorer_metrics
from productsearch.runtime.metrics import Metrics

BATCHES, RUNS = 20_000, 5


class ForcedOn(Metrics):
    def __init__(self, **base):
        super().__init__(**base)
        self.enabled = True  # counts as inside Triton; flush() is never called here


def main() -> None:
    scorer_metrics.Metrics = ForcedOn
    metrics = scorer_metrics.ScorerMetrics(types.SimpleNamespace(name="scorer", version=1), "scorer_0_0", {})
    rows = [RowQuery(np.zeros(4, np.float32), 10, kind="text") for _ in range(8)]
    results = [Ranked(np.arange(10), np.zeros(10, np.float32)) for _ in rows]
    runs = []
    for _ in range(RUNS):
        started = time.perf_counter()
        for _ in range(BATCHES):
            with metrics.batch("default") as batch:
                for stage in ("filter", "vector", "lexical", "rank"):
                    with batch.clock(stage):
                        pass
                batch.answered(rows, results)
        runs.append((time.perf_counter() - started) / BATCHES * 1e6)
    print(f"us per batch of 8 rows: median {statistics.median(runs):.1f} (min {min(runs):.1f}, max {max(runs):.1f}) "
          f"over {RUNS} runs")


if __name__ == "__main__":
    main()
