"""The metrics_served section of loadtest.bench: what the service's own metrics cost a served
search, measured with perf_analyzer against the bench's private server.

    python -m loadtest.bench --sections metrics_served --rounds 3 --write

The models that count on the search path (query_gate, scorer) run with their config parameter
`metrics` "1" (as shipped) or "0" (runtime/metrics.py: off), the server restarted for each run
(loadtest/served_switch.py).
"""
from __future__ import annotations

from loadtest.served_switch import switch_section
from loadtest.workload import Workload

COUNTING_MODELS = ("query_gate", "scorer")  # the search path's models with metrics of their own
VARIANTS = {"metrics on (as shipped)": "1", "metrics off": "0"}


def metrics_served_section(server, workload: Workload, rounds: int, log=print) -> str:
    return switch_section(server, workload, rounds, COUNTING_MODELS, "metrics", VARIANTS,
                          "throughput with metrics within 3% of without", log=log)
