"""Client threads that search in a loop until stopped, keeping every call's outcome.

Shared by the benchmarks and the hot-swap, replica and recovery tests: each looks
at the same record (when a call was sent and answered, what it returned or why it failed).
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from clients.search import SearchClient, SearchError
from clients.contract import SearchResult

QUERIES = ("red mug", "blue striped t-shirt", "black sneakers", "green hat", "pink polka-dot dress")


@dataclass(frozen=True)
class Call:
    sent: float  # time.monotonic()
    received: float
    result: SearchResult | None  # None when it failed
    error: str | None = None  # "StatusCode.X: message" (SearchError), else the exception's repr
    query: str | tuple = ""  # the words, or (words, photo)

    @property
    def ok(self) -> bool:
        return self.error is None


class SearchLoad:
    """`clients` threads, each with its own SearchClient(url, **client_args), walking through
    `queries` (words, or (words, photo) pairs): thread i sends queries i, i + clients, i + 2 clients ...
    (cycling), so a long query set is sent whole and no thread repeats one text while others wait. A failed client waits `pause_on_failure_s` before it
    tries again (a server that is down refuses at once: without a pause the clients spin)."""

    def __init__(self, url: str, clients: int, queries=QUERIES, top_k: int = 10, pause_on_failure_s: float = 0.0,
                 filters=None, relevance=None, **client_args):
        self.url, self.queries, self.top_k, self.filters, self.relevance = url, list(queries), top_k, filters, relevance
        self.pause_on_failure_s, self.client_args = pause_on_failure_s, client_args
        self.calls: list[Call] = []
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self.run, args=(i,)) for i in range(clients)]

    @property
    def answers(self) -> list[Call]:
        return [call for call in list(self.calls) if call.ok]

    @property
    def failures(self) -> list[Call]:
        return [call for call in list(self.calls) if not call.ok]

    def run(self, index: int) -> None:
        with SearchClient(self.url, **self.client_args) as client:
            position = index
            while not self.stop.is_set():
                sent = time.monotonic()
                query = self.queries[position % len(self.queries)]
                position += len(self.threads)
                text, image = query if isinstance(query, tuple) else (query, None)
                try:
                    result = client.search(text or None, image, top_k=self.top_k, filters=self.filters,
                                           relevance=self.relevance)
                except Exception as err:  # noqa: BLE001 - every failure is part of the record
                    message = str(err) if isinstance(err, SearchError) else repr(err)
                    self.calls.append(Call(sent, time.monotonic(), None, message, query))
                    self.stop.wait(self.pause_on_failure_s)
                    continue
                self.calls.append(Call(sent, time.monotonic(), result, query=query))

    def __enter__(self) -> "SearchLoad":
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join()
