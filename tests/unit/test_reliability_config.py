"""Reliability and security settings that need no server: queue bounds, retry policy, loopback
binding, TLS flags, the supervisor's probes and restarts, stale shared memory, no secret in git."""
from __future__ import annotations

import mmap
import os
import re
import subprocess
import time
from pathlib import Path

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from clients.search import is_retryable
from productsearch.control.processes import SHM_PREFIX, clean_stale_shm
from productsearch.control.server import GrpcTls, TritonServer
from productsearch.control.triton_install import LauncherError, TritonInstall
from productsearch.control.service import server_state, server_from_state
from productsearch.control.service import Backoff, exit_reason
from productsearch.control.supervisor import probe_inputs

ROOT = Path(__file__).resolve().parents[2]
PYTHON_MODELS = ("query_gate", "text_encoder", "image_encoder", "fusion", "scorer")


@pytest.mark.parametrize("model", PYTHON_MODELS)
def test_every_model_queue_is_bounded_in_time_without_max_queue_size(model):
    config = text_format.Parse((ROOT / "model_repository" / model / "config.pbtxt").read_text(),
                               model_config_pb2.ModelConfig())
    policy = config.dynamic_batching.default_queue_policy
    assert policy.timeout_action == model_config_pb2.ModelQueuePolicy.REJECT
    assert 0 < policy.default_timeout_microseconds <= 10_000_000
    assert policy.allow_timeout_override, "a client's deadline may shorten the wait"
    # max_queue_size crashes Triton 2.51 when a composing model of an ensemble refuses (measured)
    assert policy.max_queue_size == 0


@pytest.mark.parametrize("status, message, retry", [
    ("StatusCode.UNAVAILABLE", "failed to connect to all addresses", True),
    ("StatusCode.UNAVAILABLE", "in ensemble 'search', Request timeout expired", True),
    ("StatusCode.INTERNAL", "in ensemble 'search', Stub process 'text_encoder_0_0' is not healthy.", True),
    ("StatusCode.INTERNAL", "in ensemble 'search', something else broke", False),
    ("StatusCode.INVALID_ARGUMENT", "in ensemble 'search', query is empty", False),
    ("StatusCode.DEADLINE_EXCEEDED", "Deadline Exceeded", False),
    ("StatusCode.RESOURCE_EXHAUSTED", "Received message larger than max", False),
    ("StatusCode.NOT_FOUND", "Request for unknown model: 'search' is not found", True),  # restarting
    ("StatusCode.NOT_FOUND", "Request for unknown model: 'search' has no available versions", True),
    ("StatusCode.NOT_FOUND", "something else", False),
])
def test_retry_policy(status, message, retry):
    assert is_retryable(status, message) is retry


INSTALL = TritonInstall(binary=Path("/bin/tritonserver"), backend_dir=Path("/backends"))


def flag(cmd: list[str], name: str) -> str:
    values = [arg.split("=", 1)[1] for arg in cmd if arg.startswith(f"--{name}=")]
    assert len(values) == 1, name
    return values[0]


def test_the_server_binds_to_loopback_by_default():
    cmd = TritonServer(admin_key="k").command(INSTALL)
    for name in ("grpc-address", "http-address", "metrics-address"):
        assert flag(cmd, name) == "127.0.0.1"
    assert flag(cmd, "grpc-restricted-protocol") == "model-repository,shared-memory,logging,trace,statistics:admin-key=k"
    assert flag(cmd, "http-restricted-api") == "model-repository,shared-memory,logging,trace,statistics:admin-key=k"


def test_the_launcher_cli_defaults_to_loopback(monkeypatch):
    from productsearch.control import launcher

    monkeypatch.delenv("TRITON_HOST", raising=False)
    seen = {}

    def start_background(server, run_dir, supervise=True):  # record what would start, start nothing
        seen["server"] = server
        raise LauncherError("not starting in a unit test")

    monkeypatch.setattr(launcher, "start_background", start_background)
    assert launcher.main(["start", "--run-dir", "/nonexistent-run-dir"]) == 1
    assert seen["server"].host == "127.0.0.1" and seen["server"].http_host == "127.0.0.1"


def test_tls_flags_and_http_kept_on_loopback(tmp_path):
    for name in ("server.crt", "server.key", "ca.crt", "client.crt", "client.key"):
        (tmp_path / name).write_text("pem")
    tls = GrpcTls(tmp_path / "server.crt", tmp_path / "server.key", tmp_path / "ca.crt", mutual=True,
                  client_cert=tmp_path / "client.crt", client_key=tmp_path / "client.key")
    server = TritonServer(host="0.0.0.0", admin_key="k", tls=tls)
    cmd = server.command(INSTALL)
    assert flag(cmd, "grpc-use-ssl") == "true" and flag(cmd, "grpc-use-ssl-mutual") == "true"
    assert flag(cmd, "grpc-server-cert") == str(tmp_path / "server.crt")
    assert flag(cmd, "grpc-root-cert") == str(tmp_path / "ca.crt")
    assert flag(cmd, "grpc-address") == "0.0.0.0"
    assert flag(cmd, "http-address") == flag(cmd, "metrics-address") == "127.0.0.1", "HTTP has no TLS"
    assert server.client_options == dict(ssl=True, root_certificates=str(tmp_path / "ca.crt"),
                                         certificate_chain=str(tmp_path / "client.crt"),
                                         private_key=str(tmp_path / "client.key"))
    with pytest.raises(LauncherError, match="mutual TLS needs"):
        GrpcTls(tmp_path / "server.crt", tmp_path / "server.key", mutual=True)
    with pytest.raises(LauncherError, match="not found"):
        GrpcTls(tmp_path / "missing.crt", tmp_path / "server.key")


def test_a_restarted_server_is_started_exactly_as_the_recorded_one(tmp_path):
    """run/triton.json holds what the supervisor needs to start the same server after a crash."""
    import json

    for name in ("server.crt", "server.key", "ca.crt"):
        (tmp_path / name).write_text("pem")
    tls = GrpcTls(tmp_path / "server.crt", tmp_path / "server.key", tmp_path / "ca.crt", mutual=True)
    server = TritonServer(model_repository=tmp_path / "repo", host="0.0.0.0", http_port=18000, grpc_port=18001,
                          metrics_port=18002, log_file=tmp_path / "run" / "triton.log", load_models=["scorer"],
                          extra_args=["--log-info=true"], admin_key="k", tls=tls)
    again = server_from_state(json.loads(json.dumps(server_state(server))))
    again.admin_key = "k"
    assert again.command(INSTALL) == server.command(INSTALL)


def test_restarts_back_off_while_they_come_quickly(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    backoff = Backoff(max_s=10, calm_s=60)
    assert [backoff.next() for _ in range(5)] == [0, 2, 4, 8, 10]
    now[0] += 61  # a calm minute: the next restart is immediate again
    assert backoff.next() == 0 and backoff.next() == 2


def test_the_supervisor_reads_the_crash_signal_from_the_server_log(tmp_path):
    import json

    log = tmp_path / "triton.log"
    log.write_text("I1127 loading: scorer:1\nSignal (11) received.\n 0# 0x00 in tritonserver\n")
    (tmp_path / "triton.json").write_text(json.dumps({"log_file": str(log)}))
    assert exit_reason(tmp_path) == "tritonserver died (Signal (11) received. in its log)"
    log.write_text("I1127 loading: scorer:1\n")
    assert exit_reason(tmp_path) == "tritonserver died"


def test_supervisor_probe_is_the_smallest_valid_request():
    import tritonclient.grpc as grpcclient

    config = {"max_batch_size": 64, "input": [
        {"name": "QUERY_EMBEDDING", "data_type": "TYPE_FP32", "dims": ["-1"]},
        {"name": "TOP_K", "data_type": "TYPE_INT32", "dims": ["1"]},
        {"name": "TEXT", "data_type": "TYPE_STRING", "dims": ["1"]},
        {"name": "TEXT_WEIGHT", "data_type": "TYPE_FP32", "dims": ["1"], "optional": True}]}
    inputs = probe_inputs(config, grpcclient)
    assert [(t.name(), t.shape(), t.datatype()) for t in inputs] == [
        ("QUERY_EMBEDDING", [1, 1], "FP32"), ("TOP_K", [1, 1], "INT32"), ("TEXT", [1, 1], "BYTES")]


def test_stale_shared_memory_regions_are_removed_and_live_ones_kept(tmp_path):
    stale, fresh, live = (tmp_path / f"{SHM_PREFIX}{name}" for name in ("stale", "fresh", "live"))
    for path in (stale, fresh, live):
        path.write_bytes(b"\0" * 4096)
    old = time.time() - 3600
    os.utime(stale, (old, old))
    os.utime(live, (old, old))
    with open(live, "r+b") as handle, mmap.mmap(handle.fileno(), 4096):  # mapped: in use
        removed = clean_stale_shm(min_age_s=60, shm_dir=tmp_path)
    assert removed == [stale.name]
    assert fresh.exists() and live.exists() and not stale.exists()


def test_no_secret_is_tracked_by_git():
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    assert not [f for f in files if f.startswith("run/") or f.endswith((".key", ".pem"))]
    pem_key = re.compile(rb"-----BEGIN [A-Z ]*PRIVATE KEY-----")
    for name in files:
        path = ROOT / name
        if path.is_file() and path.stat().st_size < 2_000_000:
            assert not pem_key.search(path.read_bytes()), name
    ignored = subprocess.run(["git", "check-ignore", "run/admin_key"], cwd=ROOT, capture_output=True, text=True)
    assert ignored.returncode == 0, "run/ (the admin key) is git-ignored"


@pytest.mark.parametrize("text, image, message", [
    (b"", b"", "query is empty"),
    (b"x" * 16385, b"", "text is too long"),
    (b"\xff", b"", "not valid UTF-8"),
    (b"red", b"\0" * (10 * 2**20 + 1), "image is too large"),
])
def test_the_query_gate_refuses_before_any_encoder(text, image, message):
    import numpy as np

    from productsearch.runtime.model_io import RequestError
    from productsearch.runtime.query_gate import check_rows

    with pytest.raises(RequestError, match=message):
        check_rows(np.array([[text]], dtype=object), np.array([[image]], dtype=object))
    check_rows(np.array([[b"red mug"], [b""]], dtype=object), np.array([[b""], [b"\x89PNG..."]], dtype=object))


@pytest.mark.parametrize("ensemble", ["search", "encode_product"])
def test_the_query_gate_is_the_only_first_step_of_each_ensemble(ensemble):
    """Triton 2.51 can deadlock when a step of a multi-step first pass fails fast (query_gate.py)."""
    config = text_format.Parse((ROOT / "model_repository" / ensemble / "config.pbtxt").read_text(),
                               model_config_pb2.ModelConfig())
    inputs = {i.name for i in config.input}
    first = [s.model_name for s in config.ensemble_scheduling.step if set(s.input_map.values()) <= inputs]
    assert first == ["query_gate"]
    gate = next(s for s in config.ensemble_scheduling.step if s.model_name == "query_gate")
    for step in config.ensemble_scheduling.step:
        if step.model_name in ("text_encoder", "image_encoder"):
            assert set(step.input_map.values()) <= set(gate.output_map.values())


def test_recommend_is_one_step_so_it_cannot_deadlock_either():
    config = text_format.Parse((ROOT / "model_repository" / "recommend" / "config.pbtxt").read_text(),
                               model_config_pb2.ModelConfig())
    assert [s.model_name for s in config.ensemble_scheduling.step] == ["scorer"]
