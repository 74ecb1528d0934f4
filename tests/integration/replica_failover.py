"""The failover check both replica suites run (embedded store and Milvus): replica A killed with
SIGKILL under search load, and a client given both addresses fails no search (retries) and its
writes go on through replica B."""
from __future__ import annotations

import os
import signal
import time

from clients.catalog import CatalogClient
from clients.contract import Product, ReadOptions
from clients.search import SearchClient
from loadtest.search_load import SearchLoad


def kill_a_under_load_and_write_through_b(a, b) -> None:
    both = f"{a.grpc_url},{b.grpc_url}"
    with SearchLoad(both, 4, timeout_s=30, retries=10, backoff_s=0.05) as load:
        time.sleep(3)
        os.killpg(a.pid, signal.SIGKILL)
        killed = time.monotonic()
        with CatalogClient(both, timeout_s=30, retries=10, key=b.key) as writer:
            sequences = [writer.upsert([Product(f"AFTER-KILL-{i}", f"replica survivor {i}", None, {})])[0]
                         for i in range(5)]
        deadline = time.monotonic() + 30  # searches go on: 20 answered after the kill (milvus-lite, on a
        while time.monotonic() < deadline and answered_after_kill(load, killed) < 20:  # busy machine, ~5/s)
            time.sleep(0.2)
    assert not load.failures, load.failures[:3]
    assert answered_after_kill(load, killed) >= 20, "searches went on through the surviving replica"
    assert sequences == sorted(sequences)
    with SearchClient(both, timeout_s=30, retries=10) as client:
        found = client.search("replica survivor 3", top_k=10, read=ReadOptions(min_sequence=sequences[-1]))
    assert "AFTER-KILL-3" in found.ids


def answered_after_kill(load: SearchLoad, killed: float) -> int:
    return sum(1 for call in list(load.calls) if call.ok and call.sent > killed)
