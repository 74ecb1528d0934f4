"""Shopper events client: tell the service what shoppers did with its answers.

    from clients.events import EventsClient, Event
    with EventsClient("localhost:8001", key=SEARCH_KEY) as events:
        statuses = events.record([Event(result.query_id, "click", result.ids[0], user="u-17")])

Each event names the `query_id` of the search (or recommendation) whose answer the shopper acted
on, and a product of that answer. Every event is answered on its own: "recorded", "duplicate"
(sent before: resending after a timeout is safe, events are idempotent on query id, event and
product) or an error that starts with its status (INVALID_ARGUMENT, NOT_FOUND,
PERMISSION_DENIED, UNAUTHENTICATED, UNAVAILABLE: send that one again). Events need a key of
scope `search` (or above) for their shop. `record` returns once every recorded event is durable.
"""
from __future__ import annotations

from pathlib import Path

from clients.connection import DEFAULT_URL, Connection, TlsOptions
from clients.contract import RECORD_EVENTS, Event, event_inputs, key_headers

__all__ = ["Event", "EventsClient", "ACCEPTED"]
ACCEPTED = ("recorded", "duplicate")
MAX_ROWS = 256  # the model's max_batch_size: longer lists are sent in chunks


class EventsClient(Connection):
    """Calls `record_events`. The retry policy resends whole requests (safe: idempotent)."""

    def __init__(self, url: str | list[str] = DEFAULT_URL, timeout_s: float = 10.0, retries: int = 3,
                 backoff_s: float = 0.1, tls: TlsOptions | None = None, max_backoff_s: float = 1.0,
                 key: str | None = None, key_file: str | Path | None = None):
        super().__init__(url, timeout_s, retries, backoff_s, tls, max_backoff_s)
        if key is None and key_file is not None:
            key = Path(key_file).read_text().strip()
        self.key = key

    def record(self, events: list[Event]) -> list[str]:
        """One STATUS per event, in order."""
        statuses: list[str] = []
        for start in range(0, len(events), MAX_ROWS):
            chunk = list(events[start:start + MAX_ROWS])
            result = self.infer(RECORD_EVENTS, event_inputs(chunk), ["STATUS"], headers=key_headers(self.key))
            statuses += [v.decode() for v in result.as_numpy("STATUS").reshape(-1)]
        return statuses
