"""Memory of a running tritonserver and its python-backend stubs, for tests (psutil, /proc)."""
from __future__ import annotations

import psutil


def server_memory_mb(pid: int) -> dict[str, float]:
    """RSS and PSS (shared pages split between their users) of tritonserver and its stubs, and
    the RAM their python-backend shared-memory regions hold in /dev/shm, in MB."""
    from productsearch.control.processes import stub_processes

    server = psutil.Process(pid)
    rss = pss = 0
    for process in [server, *server.children(recursive=True)]:
        try:
            info = process.memory_full_info()
        except psutil.Error:
            continue
        rss, pss = rss + info.rss, pss + info.pss
    shm = sum(stub.shm_bytes() for stub in stub_processes(pid).values())
    return {"rss": round(rss / 2**20, 1), "pss": round(pss / 2**20, 1), "shm": round(shm / 2**20, 1)}
