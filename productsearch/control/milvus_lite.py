"""A local `milvus-lite server` (milvus-lite's gRPC server over one data folder) that several
processes share as one Milvus: what the tests and benchmarks of the Milvus catalog run against
here (milvus-lite locks an embedded data folder to one process, so replicas cannot share a file).
It runs control/serialized_milvus_lite.py: milvus-lite's server with writes one at a time (its engine is
single-writer; concurrent writes broke its WAL and lost acknowledged writes on a kill -9).
In production the same client code talks to Milvus standalone or a cluster (`milvus://host:19530`).
"""
from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from productsearch.control.processes import free_ports, stop_pid


@dataclass
class MilvusLiteServer:
    data_dir: Path
    port: int = 0  # 0: a free port
    log_file: Path | None = None
    process: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"milvus://127.0.0.1:{self.port}"

    def catalog_url(self, images: Path) -> str:
        return f"{self.url}?images={images}"

    def start(self, timeout_s: float = 60.0) -> "MilvusLiteServer":
        self.port = self.port or free_ports(1)[0]
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_file or self.data_dir.parent / "milvus-lite.log", "ab")
        command = [sys.executable, "-m", "productsearch.control.serialized_milvus_lite", "--data-dir", str(self.data_dir),
                   "--host", "127.0.0.1", "--port", str(self.port)]
        self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"milvus-lite server exited with {self.process.returncode} (log: {log.name})")
            try:
                from pymilvus import MilvusClient

                MilvusClient(f"http://127.0.0.1:{self.port}", timeout=2).list_collections()
                return self
            except Exception:  # noqa: BLE001 - not listening yet
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"milvus-lite server did not answer on port {self.port} within {timeout_s:g} s")

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            stop_pid(self.process.pid, timeout_s=30)
            self.process.wait(timeout=30)
        self.process = None

    def restart(self, timeout_s: float = 60.0) -> "MilvusLiteServer":
        """After a crash or kill: the dead process reaped, a new one on the same port and data folder."""
        if self.process is not None:
            self.process.wait(timeout=30)
            self.process = None
        return self.start(timeout_s)
