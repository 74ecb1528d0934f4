"""The events sections of loadtest.bench: what the search log costs a served search, and how many
shopper events `record_events` takes per second on this machine.

    python -m loadtest.bench --sections events_served,events_ingest --rounds 3 --write

events_served: the scorer's config parameter `search_log` on (as shipped: every answered search
is a row of its shop's `searches` table) or off, the server restarted per run, perf_analyzer
text search (loadtest/served_switch.py). events_ingest: real searches first (their query ids
and result lists), then every (query id, event, product) once - click, add_to_cart and
purchase on each result - sent by THREADS clients in requests of EventsClient's 256 rows;
events/s over the whole send, every status checked, and the server's CPU per event.
"""
from __future__ import annotations

import statistics
import threading
import time

from clients.events import Event, EventsClient
from clients.search import SearchClient
from loadtest.served_switch import switch_section
from loadtest.serving_profile import TICK, cpu_ticks, spread
from loadtest.workload import Workload

THREADS = 4
SEARCHES = 1000  # per round: x 10 results x 3 events = 30,000 events
EVENTS = ("click", "add_to_cart", "purchase")


def events_served_section(server, workload: Workload, rounds: int, log=print) -> str:
    return switch_section(server, workload, rounds, ("scorer",), "search_log",
                          {"search log on (as shipped)": "on", "search log off": "off"},
                          "throughput with the search log within 5% of without", log=log)


def answers(server, workload: Workload, count: int, offset: int) -> list[tuple[str, list[str]]]:
    """(query id, result ids) of `count` real text searches."""
    out = []
    with SearchClient(server.grpc_url, timeout_s=30, key=server.key, key_file=None) as client:
        for i in range(count):
            result = client.search(workload.texts[(offset + i) % len(workload.texts)], top_k=10,
                                   user=f"bench-user-{i % 500}")
            out.append((result.query_id, result.ids))
    return out


def send(server, events: list[Event]) -> float:
    """All `events` by THREADS clients (contiguous shares); seconds. Every status must be accepted."""
    shares = [events[i::THREADS] for i in range(THREADS)]
    failures: list[str] = []

    def run(share: list[Event]) -> None:
        with EventsClient(server.grpc_url, timeout_s=60, key=server.key) as client:
            statuses = client.record(share)
        failures.extend(s for s in statuses if s != "recorded")

    threads = [threading.Thread(target=run, args=(share,)) for share in shares]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    if failures:
        raise RuntimeError(f"{len(failures)} events not recorded, e.g. {failures[:3]}")
    return seconds


def events_ingest_section(server, workload: Workload, rounds: int, log=print) -> str:
    rates, cpu_per_event = [], []
    time.sleep(0.5)  # the search log's flush: the query ids must be written before their events
    for round_ in range(rounds):
        found = answers(server, workload, SEARCHES, round_ * SEARCHES)
        time.sleep(0.5)
        events = [Event(query_id, kind, pid, position=rank + 1, value=9.5 if kind == "purchase" else 0.0,
                        user="bench-shopper")
                  for query_id, ids in found for rank, pid in enumerate(ids) for kind in EVENTS]
        before = cpu_ticks(server.pid)
        seconds = send(server, events)
        after = cpu_ticks(server.pid)
        cpu_s = (sum(after.values()) - sum(before.get(name, 0) for name in after)) / TICK
        rates.append(len(events) / seconds)
        cpu_per_event.append(cpu_s * 1e6 / len(events))
        log(f"round {round_ + 1}: {len(events)} events in {seconds:.2f} s = {rates[-1]:.0f} events/s, "
            f"{cpu_per_event[-1]:.0f} server CPU-us per event")
    return "\n".join([
        "| record_events | events/s | server CPU-us per event |", "|---|---:|---:|",
        f"| {THREADS} clients, 256 events per request | {spread(rates)} | {spread(cpu_per_event)} |", "",
        f"Per round: {SEARCHES} real text searches of the workload, then each result's click, add_to_cart and "
        f"purchase once ({SEARCHES * 10 * len(EVENTS)} distinct events), every status `recorded` (each request "
        f"fsynced before it answers); {rounds} rounds, median (min-max). Target: >= 5,000 events/s on the 2 cores."])
