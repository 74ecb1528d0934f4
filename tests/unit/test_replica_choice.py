"""The client's replica choice: addresses parsed, calls in turn, a replica that answered
UNAVAILABLE skipped for a while (and used again when every replica is being skipped); a write a swap
fenced retried until its deadline."""
import pytest

from clients import connection
from clients.connection import Connection, replica_urls


def test_addresses_from_a_string_or_a_list():
    assert replica_urls("a:1, b:2,") == ["a:1", "b:2"]
    assert replica_urls(["a:1"]) == ["a:1"]
    with pytest.raises(ValueError):
        replica_urls(" , ")


def test_calls_go_round_robin_and_skip_an_unavailable_replica(monkeypatch):
    now = [100.0]
    monkeypatch.setattr(connection.time, "monotonic", lambda: now[0])
    with Connection("127.0.0.1:1,127.0.0.1:2,127.0.0.1:3") as conn:
        assert [conn.pick() for _ in range(6)] == [0, 1, 2, 0, 1, 2]
        conn.mark_unavailable(1)
        assert 1 not in [conn.pick() for _ in range(6)]
        for replica in (0, 2):
            conn.mark_unavailable(replica)
        assert conn.pick() in (0, 1, 2)  # all skipped: still answer with one
        now[0] += connection.REPLICA_PAUSE_S + 0.1
        assert sorted(conn.pick() for _ in range(3)) == [0, 1, 2]


class Refusal(Exception):
    """What tritonclient raises: a gRPC status and the server's message."""

    def __init__(self, status: str, message: str):
        super().__init__(message)
        self._status, self._message = status, message

    def status(self) -> str:
        return self._status

    def message(self) -> str:
        return self._message


def test_a_write_refused_by_a_swap_fence_is_retried_until_the_deadline_not_just_retries_times():
    policy = connection.RetryPolicy(timeout_s=30, retries=3)
    fenced = Refusal("StatusCode.UNAVAILABLE", "in ensemble 'upsert_products', catalog writes moved from generation 1 "
                                                "to 2 during this request; send it again")
    deadline = connection.time.monotonic() + 30
    assert policy.pause(fenced, 10, deadline) > 0  # the 10th attempt still waits and retries
    with pytest.raises(connection.ServiceError, match="moved from generation 1 to 2"):
        policy.pause(fenced, 10, connection.time.monotonic() + 0.01)  # but never past the deadline
    overloaded = Refusal("StatusCode.UNAVAILABLE", "queue is full")
    assert policy.pause(overloaded, 3, deadline) > 0
    with pytest.raises(connection.ServiceError, match="queue is full"):
        policy.pause(overloaded, 4, deadline)  # other UNAVAILABLE answers: `retries` times
