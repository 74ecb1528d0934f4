"""Concurrent writes to one collection of the local Milvus server survive kill -9 (its WAL stays whole):
milvus-lite's own server interleaved concurrent WAL appends and lost acknowledged writes on restart."""
from __future__ import annotations

import os
import signal
import threading

import pytest

from productsearch.control.milvus_lite import MilvusLiteServer

pytestmark = pytest.mark.integration


def test_concurrent_acknowledged_writes_survive_kill_9(tmp_path):
    from pymilvus import DataType, MilvusClient

    server = MilvusLiteServer(tmp_path / "data").start()
    try:
        client = MilvusClient(f"http://127.0.0.1:{server.port}")
        schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("pk", DataType.VARCHAR, is_primary=True, max_length=64)
        schema.add_field("title", DataType.VARCHAR, max_length=256)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=4)
        params = client.prepare_index_params()
        params.add_index("vector", index_type="FLAT", metric_type="IP")
        client.create_collection("writes", schema=schema, index_params=params, consistency_level="Strong")
        acked, errors = [], []

        def write(writer: int) -> None:
            own = MilvusClient(f"http://127.0.0.1:{server.port}")
            for n in range(25):
                pk = f"w{writer}-{n}"
                try:
                    own.upsert("writes", [{"pk": pk, "title": f"product {pk} " * 8, "vector": [writer, n, 1.0, 0.5]}])
                    acked.append(pk)
                except Exception as err:  # noqa: BLE001 - reported below
                    errors.append(f"{pk}: {err}")

        threads = [threading.Thread(target=write, args=(w,)) for w in range(6)]
        [t.start() for t in threads]
        [t.join() for t in threads]
        assert not errors, errors[:3]
        os.killpg(server.pid, signal.SIGKILL)
        server.restart()
        client.load_collection("writes")
        found = {row["pk"] for row in client.query("writes", filter='pk != ""', output_fields=["pk"], limit=1000)}
        assert sorted(set(acked) - found) == [] and len(acked) == 150
    finally:
        server.stop()
