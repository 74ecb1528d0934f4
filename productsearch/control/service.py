"""The background service behind `make serve`: one tritonserver and its supervisor, recorded in
run/triton.json (PIDs, ports, repository, TLS, restarts) for `stop`, `status` and the
supervisor's restarts. run/triton.json is read here only (load_state / read_state).
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from productsearch.control.paths import DEFAULT_RUN_DIR, REPO_ROOT
from productsearch.control.processes import clean_stale_shm, pid_alive, stop_pid
from productsearch.control.server import GrpcTls, TritonServer
from productsearch.control.triton_install import LauncherError


def _state_file(run_dir: Path) -> Path:
    return run_dir / "triton.json"


def load_state(run_dir: Path = DEFAULT_RUN_DIR) -> dict | None:
    """run/triton.json as recorded (the server may have died since), or None."""
    try:
        return json.loads(_state_file(run_dir).read_text())
    except (OSError, ValueError):
        return None


def read_state(run_dir: Path = DEFAULT_RUN_DIR) -> dict | None:
    """The running background server's PID and ports, or None if it is not running."""
    state = load_state(run_dir)
    return state if state is not None and pid_alive(int(state["pid"])) else None


def start_supervisor(server: TritonServer, run_dir: Path) -> int:
    """The supervisor process for `server`; its log is run/supervisor.log. It restarts the server
    if it dies (`restart_background`) and exits when `stop_background` stops it."""
    args = [sys.executable, "-m", "productsearch.control.supervisor", "--url", server.grpc_url,
            "--pid", str(server.pid), "--run-dir", str(run_dir), "--restart"]
    if server.client_tls is not None:
        args += server.client_tls.cli_args()
    env = dict(os.environ, PRODUCTSEARCH_ADMIN_KEY=server.key)  # not on the command line
    with open(Path(run_dir) / "supervisor.log", "ab") as log:
        process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO_ROOT,
                                   start_new_session=True)
    return process.pid


def _write_state(run_dir: Path, state: dict) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    tmp = _state_file(run_dir).with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=1))
    os.replace(tmp, _state_file(run_dir))


def server_state(server: TritonServer) -> dict:
    """What `status` shows and what `server_from_state` needs to start the same server again."""
    return {
        "pid": server.pid,
        "host": server.host,
        "grpc_url": server.grpc_url,
        "http_port": server.http_port,
        "grpc_port": server.grpc_port,
        "metrics_port": server.metrics_port,
        "grpc_tls": None if server.tls is None else {
            k: (v if isinstance(v, bool) else str(v)) for k, v in vars(server.tls).items() if v is not None},
        "log_file": str(server.log_file),
        "model_repository": str(Path(server.model_repository).resolve()),
        "load_models": list(server.load_models),
        "extra_args": list(server.extra_args),
        "exit_timeout_s": server.exit_timeout_s,
        "catalog_url": server.catalog_url,
    }


def server_from_state(state: dict) -> TritonServer:
    """The TritonServer that `state` (run/triton.json) describes: same ports, repository, TLS."""
    tls = state.get("grpc_tls")
    return TritonServer(
        model_repository=Path(state["model_repository"]), host=state["host"], http_port=state["http_port"],
        grpc_port=state["grpc_port"], metrics_port=state["metrics_port"], log_file=Path(state["log_file"]),
        load_models=state.get("load_models", []), extra_args=state.get("extra_args", []),
        exit_timeout_s=state.get("exit_timeout_s", 10), catalog_url=state.get("catalog_url"),
        tls=None if tls is None else GrpcTls(**{k: (v if isinstance(v, bool) else Path(v)) for k, v in tls.items()}),
    )


def restore_serving(server: TritonServer) -> int | None:
    """Load the generation recorded as serving (serving.json) into a freshly started server."""
    from productsearch.control.deploy.swap import Deployer  # tritonclient, only needed here

    with Deployer(server.grpc_url, server.model_repository, server.admin_headers, tls=server.client_tls,
                  catalog=server.catalog_url) as deployer:
        return deployer.serving_generation() or deployer.restore()


def start_background(server: TritonServer, run_dir: Path = DEFAULT_RUN_DIR, supervise: bool = True) -> dict:
    """Start `server` (and its supervisor) unless ours already runs; record PIDs and ports for
    `stop`/`status`."""
    state = read_state(run_dir) or _restarting(run_dir)
    if state is not None:
        return state
    clean_stale_shm()
    server.start()
    run_dir.mkdir(parents=True, exist_ok=True)
    state = server_state(server)
    state.update(supervisor_pid=start_supervisor(server, run_dir) if supervise else None, restarts=0)
    _write_state(run_dir, state)
    return state


def _restarting(run_dir: Path, timeout_s: float = 300.0) -> dict | None:
    """If the supervisor is starting a dead server again, wait for it and return the new state."""
    state = load_state(run_dir)
    if state is None:
        return None
    supervisor = state.get("supervisor_pid")
    deadline = time.monotonic() + timeout_s
    while supervisor and pid_alive(int(supervisor)) and time.monotonic() < deadline:
        state = read_state(run_dir)
        if state is not None:
            return state
        time.sleep(0.5)
    return read_state(run_dir)


def restart_background(run_dir: Path = DEFAULT_RUN_DIR, log=print) -> TritonServer | None:
    """Start the recorded server again after it died (crash, or killed by the wedge watchdog):
    same ports and repository, the serving generation restored, run/triton.json updated. Called by
    the supervisor (whose child the new server is). None when the service was stopped meanwhile
    (`stop_background` removes run/triton.json first)."""
    state = load_state(run_dir)
    if state is None:
        return None
    old_pid = int(state["pid"])
    if pid_alive(old_pid):
        raise LauncherError(f"tritonserver (pid {old_pid}) is still running")
    try:  # python stubs a crashed server leaves behind, and their shared memory
        os.killpg(old_pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    clean_stale_shm(min_age_s=0)
    server = server_from_state(state)
    try:
        server.start()
        generation = restore_serving(server)
        if not _state_file(run_dir).exists():  # stopped while we were starting
            server.stop()
            return None
        state.update(server_state(server), restarts=int(state.get("restarts", 0)) + 1,
                     last_restart=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
        _write_state(run_dir, state)
    except BaseException:
        server.stop()
        raise
    log(f"supervisor: tritonserver started again (pid {server.pid}), serving generation {generation}")
    return server


def stop_background(run_dir: Path = DEFAULT_RUN_DIR) -> bool:
    """Stop the supervisor (so that it does not restart the server), then the server."""
    state = load_state(run_dir)
    _state_file(run_dir).unlink(missing_ok=True)
    if state is None:
        return False
    if state.get("supervisor_pid") and pid_alive(int(state["supervisor_pid"])):
        stop_pid(int(state["supervisor_pid"]), timeout_s=30)  # first, or it would restart the server
    state = load_state(run_dir) or state  # the supervisor may have restarted the server meanwhile
    _state_file(run_dir).unlink(missing_ok=True)
    if not pid_alive(int(state["pid"])):
        return False
    stop_pid(int(state["pid"]))
    return True


class Backoff:
    """Seconds to wait before the next restart: none after a calm spell of `calm_s`, then 2, 4,
    8 ... up to `max_s` while restarts keep coming sooner than that."""

    def __init__(self, max_s: float = 60.0, calm_s: float = 60.0):
        self.max_s, self.calm_s = max_s, calm_s
        self._streak, self._last = 0, -1e9

    def next(self) -> float:
        """The delay for this restart; counts it."""
        self._streak = self._streak + 1 if time.monotonic() - self._last < self.calm_s else 0
        self._last = time.monotonic()
        return 0.0 if self._streak == 0 else min(self.max_s, 2.0 ** self._streak)


def restart_with_retries(run_dir: Path, log, backoff: Backoff):
    """launcher.restart_background until it succeeds (a port still held, a slow start) or the
    service is stopped."""
    while True:
        try:
            return restart_background(run_dir, log)
        except Exception as err:  # noqa: BLE001 - logged; tried again after the backoff
            delay = backoff.next() or 2.0
            log(f"supervisor: starting tritonserver failed ({type(err).__name__}: {err}); again in {delay:.0f} s")
            time.sleep(delay)


def exit_reason(run_dir: Path) -> str:
    """How the server went, from the end of its log (Triton logs "Signal (11) received.")."""
    try:
        tail = Path((load_state(run_dir) or {})["log_file"]).read_text(errors="replace").splitlines()[-200:]
    except (OSError, KeyError):
        tail = []
    signals = [line.strip() for line in tail if re.match(r"\s*Signal \(\d+\) received", line)]
    return f"tritonserver died ({signals[-1]} in its log)" if signals else "tritonserver died"
