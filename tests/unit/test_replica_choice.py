"""The client's replica choice: addresses parsed, calls in turn, a replica that answered
UNAVAILABLE skipped for a while (and used again when every replica is being skipped)."""
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
