"""`python -m productsearch.control.serialized_milvus_lite --data-dir D --host H --port P`: milvus-lite's
gRPC server (what `python -m milvus_lite server` runs) with its writes made one at a time.

Why: milvus-lite's engine is single-writer per collection (its adapter/grpc/server.py says so: "concurrent
writes against the same Collection are not [safe]"), but its gRPC server runs requests on a thread pool.
Two replicas and their clients write at once, so two Upserts append to the same WAL stream together:
their bytes interleave (and sequence numbers are handed out twice). Nothing shows while the server
lives (the rows are in memory), but after a kill -9 the WAL replay stops at the first broken batch
("WAL recovery stopped at batch boundary N ... Invalid UTF8 sequence") and every write acknowledged
after it is gone. Here each RPC that changes a collection holds one lock, and opening a collection
(its WAL replay on first use after a restart) holds another, so two requests cannot open it twice.
Reads stay concurrent: the engine reads snapshots and is safe beside its one writer.
"""
from __future__ import annotations

import argparse
import functools
import threading
from concurrent import futures

# the RPCs that change a collection, its indexes, partitions, aliases or load state
WRITE_RPCS = ("CreateCollection", "DropCollection", "Insert", "Upsert", "Delete", "CreateIndex", "DropIndex",
              "LoadCollection", "ReleaseCollection", "CreatePartition", "DropPartition", "Flush", "TruncateCollection",
              "CreateDatabase", "DropDatabase", "AlterDatabase", "RenameCollection", "CreateAlias", "AlterAlias",
              "DropAlias", "AlterCollection", "LoadPartitions", "ReleasePartitions", "ManualCompaction")
MAX_MESSAGE_BYTES = 256 * 1024 * 1024  # as milvus-lite's own server (Milvus standalone's limit)


def holding(lock, method):
    """`method`, called with `lock` held."""
    @functools.wraps(method)
    def call(*args, **kwargs):
        with lock:
            return method(*args, **kwargs)
    return call


def serialized_servicer(db):
    """milvus-lite's servicer over `db` with WRITE_RPCS one at a time and collections opened once."""
    from milvus_lite.adapter.grpc.servicer import MilvusServicer

    db.get_collection = holding(threading.RLock(), db.get_collection)
    servicer = MilvusServicer(db)
    writes = threading.Lock()
    for name in WRITE_RPCS:
        if hasattr(servicer, name):
            setattr(servicer, name, holding(writes, getattr(servicer, name)))
    return servicer


def serve(data_dir: str, host: str, port: int, workers: int = 10) -> None:
    """Serve until killed (SIGTERM or SIGKILL: the WAL brings every acknowledged write back)."""
    import grpc
    from milvus_lite.db import MilvusLite
    from pymilvus.grpc_gen import milvus_pb2_grpc

    db = MilvusLite(data_dir)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers),
                         options=[("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                                  ("grpc.max_send_message_length", MAX_MESSAGE_BYTES)])
    milvus_pb2_grpc.add_MilvusServiceServicer_to_server(serialized_servicer(db), server)
    server.add_insecure_port(f"{host}:{port}")
    server.start()
    print(f"milvus-lite (serialized writes) listening on {host}:{port} (data_dir={data_dir!r})", flush=True)
    try:
        server.wait_for_termination()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop(grace=5)
        db.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m productsearch.control.serialized_milvus_lite", description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=19530)
    parser.add_argument("--workers", type=int, default=10)
    args = parser.parse_args(argv)
    serve(args.data_dir, args.host, args.port, args.workers)


if __name__ == "__main__":
    main()
