"""Client threads that write to the catalog in a loop until stopped (upserts of new products,
price updates, deletes of their own products), keeping every acknowledged write with its
SEQUENCE - the record a consistency check replays. Shared by the live-catalog tests and
benchmarks.
"""
from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass

from clients.catalog import CatalogClient
from clients.contract import Product


@dataclass(frozen=True)
class Write:
    op: str  # upsert | update | delete
    id: str
    sequence: int
    sent: float
    acked: float
    price: float | None = None


class WriteLoad:
    """`writers` threads; writer w upserts products "<prefix>w-<n>" (title and image from
    `templates`, a list of Product), changes their prices and deletes some, `rate` writes a second
    each (0: as fast as it can). Failures are kept too."""

    def __init__(self, url: str, key: str, templates: list[Product], writers: int = 4, rate: float = 2.0,
                 prefix: str = "W", seed: int = 0, **client_args):
        self.url, self.key, self.templates, self.rate, self.prefix = url, key, templates, rate, prefix
        self.seed, self.client_args = seed, client_args
        self.writes: list[Write] = []
        self.failures: list[tuple[str, str, str]] = []  # (op, id, error)
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self.run, args=(i,)) for i in range(writers)]

    def run(self, index: int) -> None:
        rng = random.Random(f"{self.seed}:{index}")
        live: list[str] = []
        count = 0
        with CatalogClient(self.url, key=self.key, **self.client_args) as client:
            while not self.stop.is_set():
                started = time.monotonic()
                roll = rng.random()
                if not live or roll < 0.5:
                    template = rng.choice(self.templates)
                    pid, price = f"{self.prefix}{index}-{count}", round(rng.uniform(5, 200), 2)
                    count += 1
                    op, call = "upsert", lambda: client.upsert([Product(pid, template.title, template.image,
                                                                         {**(template.fields or {}), "price": price})])
                elif roll < 0.85:
                    pid, price = rng.choice(live), round(rng.uniform(5, 200), 2)
                    op, call = "update", lambda: client.update_fields({pid: {"price": price}})
                else:
                    pid, price = live.pop(rng.randrange(len(live))), None
                    op, call = "delete", lambda: client.delete([pid])
                try:
                    sequence = call()[0]
                except Exception as err:  # noqa: BLE001 - every failure is part of the record
                    self.failures.append((op, pid, str(err)))
                    if op == "delete":
                        live.append(pid)
                else:
                    self.writes.append(Write(op, pid, sequence, started, time.monotonic(), price))
                    if op == "upsert":
                        live.append(pid)
                if self.rate:
                    self.stop.wait(max(0.0, 1.0 / self.rate - (time.monotonic() - started)))

    def state_at(self, sequence: int) -> dict[str, float | None]:
        """id -> price of every product these writers made that exists after `sequence`."""
        state: dict[str, float | None] = {}
        for write in sorted(self.writes, key=lambda w: w.sequence):
            if write.sequence > sequence:
                break
            if write.op == "delete":
                state.pop(write.id, None)
            else:
                state[write.id] = write.price
        return state

    def prices_seen_between(self, pid: str, sequence: int, ended: float) -> list[float | None]:
        """The prices (None: absent) product `pid` may show to a read that started at `sequence`
        and returned at `ended` (time.monotonic()) on a store that reads its latest state but
        names no snapshot (Milvus at Strong consistency): its state at `sequence`, then the
        state after each later write sent before the read returned."""
        writes = sorted((w for w in self.writes if w.id == pid), key=lambda w: w.sequence)
        before = [w for w in writes if w.sequence <= sequence]
        seen = [before[-1].price if before and before[-1].op != "delete" else None]
        seen += [w.price if w.op != "delete" else None for w in writes if w.sequence > sequence and w.sent < ended]
        return seen

    def __enter__(self) -> "WriteLoad":
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join()
