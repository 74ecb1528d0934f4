"""Start and stop the real NVIDIA `tritonserver` on this machine.

Two places provide the binary:
- NVIDIA's container: `tritonserver` on PATH with backends in /opt/tritonserver/backends;
- the `nvidia-pytriton` wheel (the embedded default): the binary, the python backend and one
  python-backend stub per Python version, all inside the installed wheel.

For the wheel, the launcher copies the stub built for the running Python beside the backend
(its RPATH only resolves from there), puts the running interpreter's libdir first on
LD_LIBRARY_PATH (the stub embeds libpython and must get this interpreter's own, or C extensions
fail to import) and the venv's bin first on PATH (the stub finds its site-packages through the
`python3` it sees there).

CLI (used by the Makefile):
    python -m productsearch.launcher start [--load MODEL ...]   # idempotent, background
    python -m productsearch.launcher stop
    python -m productsearch.launcher status

`start` also starts the supervisor (productsearch/supervisor.py: reloads a model whose python
stub process died, starts tritonserver again if it dies) and removes python-backend
shared-memory regions that crashed servers left in /dev/shm. run/triton.json records the
server (PID, ports, repository, restarts) for `stop`, `status` and the supervisor's restarts. Everything binds to 127.0.0.1 unless --host / TRITON_HOST says otherwise. gRPC TLS:
--grpc-tls-cert/--grpc-tls-key (+ --grpc-tls-root, --grpc-tls-mutual; TRITON_GRPC_TLS_* env);
with TLS on, HTTP and metrics (which Triton serves without TLS) stay on 127.0.0.1.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from productsearch.repository import config_name

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODEL_REPOSITORY = REPO_ROOT / "model_repository"
DEFAULT_RUN_DIR = REPO_ROOT / "run"
DEFAULT_PORTS = {"http": 8000, "grpc": 8001, "metrics": 8002}
CONTAINER_BACKENDS = Path("/opt/tritonserver/backends")


ADMIN_HEADER = "admin-key"  # HTTP callers send this header
GRPC_ADMIN_HEADER = f"triton-grpc-protocol-{ADMIN_HEADER}"  # Triton's gRPC prefix for restricted protocols


def admin_key(run_dir: Path = DEFAULT_RUN_DIR) -> str:
    """The secret that callers of the model-repository API (load/unload) must send.

    PRODUCTSEARCH_ADMIN_KEY wins; otherwise a random key is made once in run/admin_key (mode
    0600, git-ignored) and read by the deploy tools on this host. Nothing secret is committed.
    """
    if os.environ.get("PRODUCTSEARCH_ADMIN_KEY"):
        return os.environ["PRODUCTSEARCH_ADMIN_KEY"]
    path = Path(run_dir) / "admin_key"
    if not path.exists():
        import secrets

        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(24))
    return path.read_text().strip()


def admin_headers(key: str | None = None) -> dict[str, str]:
    """gRPC headers (tritonclient.grpc `headers=`) that unlock load/unload on our servers."""
    return {GRPC_ADMIN_HEADER: key or admin_key()}


class LauncherError(RuntimeError):
    """Something prevents tritonserver from starting; the message says what and how to fix it."""


@dataclass(frozen=True)
class TritonInstall:
    """Where the server binary, its backends and its shared libraries are."""

    binary: Path
    backend_dir: Path
    library_dirs: tuple[Path, ...] = ()
    stub_source: Path | None = None  # wheel only: stub for this Python, to copy beside the backend


def find_triton() -> TritonInstall:
    """The pytriton wheel's server if installed, else `tritonserver` on PATH (NVIDIA's container)."""
    import importlib.util

    # Locate the wheel without importing it (its Python API is not used and pulls in more).
    spec = importlib.util.find_spec("pytriton")
    if spec is not None and spec.submodule_search_locations:
        root = Path(list(spec.submodule_search_locations)[0]).resolve() / "tritonserver"
        binary = root / "bin" / "tritonserver"
        version = f"{sys.version_info.major}.{sys.version_info.minor}"
        stub = root / "python_backend_stubs" / version / "triton_python_backend_stub"
        if not binary.exists():
            raise LauncherError(f"nvidia-pytriton is installed but {binary} is missing; reinstall it")
        if not stub.exists():
            raise LauncherError(
                f"nvidia-pytriton ships no python-backend stub for Python {version} "
                f"(looked for {stub}); use a Python it supports (3.8-3.13)"
            )
        return TritonInstall(
            binary=binary,
            backend_dir=root / "backends",
            library_dirs=(root.parent.parent / "nvidia_pytriton.libs",),
            stub_source=stub,
        )
    on_path = shutil.which("tritonserver")
    if on_path:
        return TritonInstall(binary=Path(on_path), backend_dir=CONTAINER_BACKENDS)
    raise LauncherError(
        "no tritonserver found: install the pinned requirements (nvidia-pytriton ships the "
        "server) or run inside NVIDIA's Triton container"
    )


def install_stub(install: TritonInstall) -> None:
    """Copy the stub for the running Python beside the python backend (once)."""
    if install.stub_source is None:
        return
    target = install.backend_dir / "python" / "triton_python_backend_stub"
    if target.exists() and target.read_bytes() == install.stub_source.read_bytes():
        return
    tmp = target.with_suffix(".tmp")
    shutil.copy2(install.stub_source, tmp)
    os.chmod(tmp, 0o755)
    os.replace(tmp, target)


def server_environment(install: TritonInstall) -> dict[str, str]:
    """Environment for tritonserver so its python stubs run this interpreter's venv."""
    env = dict(os.environ)
    libdir = sysconfig.get_config_var("LIBDIR")
    ldlibversion = sysconfig.get_config_var("LDVERSION")
    if install.stub_source is not None:
        if not libdir or not list(Path(libdir).glob(f"libpython{ldlibversion}.so*")):
            raise LauncherError(
                f"libpython{ldlibversion}.so not found in {libdir}: the python backend stub needs "
                "a Python built with --enable-shared (pyenv: PYTHON_CONFIGURE_OPTS=--enable-shared)"
            )
    # Wheel only: in NVIDIA's container the system libdir also holds the driver's libcuda,
    # which must not be put ahead of the container's CUDA compatibility libraries.
    lib_path = [libdir] if libdir and install.stub_source is not None else []
    lib_path += [str(p) for p in install.library_dirs]
    if env.get("LD_LIBRARY_PATH"):
        lib_path.append(env["LD_LIBRARY_PATH"])
    env["LD_LIBRARY_PATH"] = os.pathsep.join(lib_path)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # no __pycache__ in version dirs (reload triggers)
    env["HF_HUB_OFFLINE"] = "1"
    env["TRANSFORMERS_OFFLINE"] = "1"
    env.setdefault("OMP_NUM_THREADS", "1")  # each model sets its own torch threads
    return env


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_ports(count: int) -> list[int]:
    """Ports the OS says are free now (for tests that start their own server)."""
    socks, ports = [], []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            socks.append(sock)
            ports.append(sock.getsockname()[1])
    finally:
        for sock in socks:
            sock.close()
    return ports


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child is not alive
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


@dataclass(frozen=True)
class GrpcTls:
    """gRPC over TLS. One CA (`root_cert`) signs the server's certificate and, for mutual TLS,
    the clients' certificates; the local tools (restore, supervisor) trust it and, under mutual
    TLS, present `client_cert`/`client_key`. The server certificate must name the address
    clients dial (e.g. SAN IP:127.0.0.1 for the local tools)."""

    server_cert: Path
    server_key: Path
    root_cert: Path | None = None
    mutual: bool = False
    client_cert: Path | None = None
    client_key: Path | None = None

    def __post_init__(self) -> None:
        if self.mutual and self.root_cert is None:
            raise LauncherError("mutual TLS needs --grpc-tls-root (the CA that signs client certificates)")
        for path in (self.server_cert, self.server_key, self.root_cert, self.client_cert, self.client_key):
            if path is not None and not Path(path).is_file():
                raise LauncherError(f"TLS file not found: {path}")

    def server_args(self) -> list[str]:
        args = ["--grpc-use-ssl=true", f"--grpc-server-cert={Path(self.server_cert).resolve()}",
                f"--grpc-server-key={Path(self.server_key).resolve()}"]
        if self.root_cert is not None:
            args.append(f"--grpc-root-cert={Path(self.root_cert).resolve()}")
        if self.mutual:
            args.append("--grpc-use-ssl-mutual=true")
        return args

    def client_options(self) -> dict:
        """tritonclient InferenceServerClient keyword arguments for the local tools."""
        return dict(ssl=True, root_certificates=str(self.root_cert) if self.root_cert else None,
                    certificate_chain=str(self.client_cert) if self.client_cert else None,
                    private_key=str(self.client_key) if self.client_key else None)

    def supervisor_args(self) -> list[str]:
        args = ["--ssl"]
        for flag, path in (("--root-cert", self.root_cert), ("--client-cert", self.client_cert),
                           ("--client-key", self.client_key)):
            if path is not None:
                args += [flag, str(Path(path).resolve())]
        return args


@dataclass
class TritonServer:
    """One tritonserver process in explicit model-control mode, bound to `host`."""

    model_repository: Path = DEFAULT_MODEL_REPOSITORY
    http_port: int = DEFAULT_PORTS["http"]
    grpc_port: int = DEFAULT_PORTS["grpc"]
    metrics_port: int = DEFAULT_PORTS["metrics"]
    host: str = "127.0.0.1"
    log_file: Path = DEFAULT_RUN_DIR / "triton.log"
    load_models: list[str] = field(default_factory=list)
    extra_args: list[str] = field(default_factory=list)
    admin_key: str | None = None  # None: admin_key() (env or run/admin_key)
    exit_timeout_s: int = 10
    tls: GrpcTls | None = None  # gRPC over TLS (HTTP and metrics then stay on loopback)
    pid: int | None = None
    _process: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def http_host(self) -> str:
        """HTTP and metrics: `host`, except loopback under gRPC TLS (Triton's HTTP has no TLS)."""
        return "127.0.0.1" if self.tls is not None else self.host

    def command(self, install: TritonInstall) -> list[str]:
        cmd = [
            str(install.binary),
            f"--model-repository={Path(self.model_repository).resolve()}",
            f"--backend-directory={install.backend_dir}",
            "--model-control-mode=explicit",
            "--strict-readiness=true",
            f"--http-address={self.http_host}",
            f"--http-port={self.http_port}",
            f"--grpc-address={self.host}",
            f"--grpc-port={self.grpc_port}",
            f"--metrics-address={self.http_host}",
            f"--metrics-port={self.metrics_port}",
            f"--exit-timeout-secs={self.exit_timeout_s}",
            "--log-verbose=0",
            # Only callers with the admin header may load/unload (swap generations).
            f"--grpc-restricted-protocol=model-repository:{ADMIN_HEADER}={self.key}",
            f"--http-restricted-api=model-repository:{ADMIN_HEADER}={self.key}",
        ]
        if config_name(self.model_repository):  # GPU configs written by build_models --device gpu
            cmd.append(f"--model-config-name={config_name(self.model_repository)}")
        if self.tls is not None:
            cmd += self.tls.server_args()
        cmd += [f"--load-model={name}" for name in self.load_models]
        return cmd + list(self.extra_args)

    @property
    def key(self) -> str:
        if self.admin_key is None:
            self.admin_key = admin_key(Path(self.log_file).parent)
        return self.admin_key

    @property
    def admin_headers(self) -> dict[str, str]:
        return admin_headers(self.key)

    def start(self, timeout_s: float = 180.0) -> "TritonServer":
        """Start the server and wait until it and the requested models are ready."""
        install = find_triton()
        busy = [
            f"{name} {port}"
            for name, port, host in (("http", self.http_port, self.http_host), ("grpc", self.grpc_port, self.host),
                                     ("metrics", self.metrics_port, self.http_host))
            if not port_is_free(port, host)
        ]
        if busy:
            raise LauncherError(
                f"port(s) already in use on {self.host}: {', '.join(busy)}; stop what holds them "
                "(`make stop` if it is our server) or choose other ports"
            )
        install_stub(install)
        env = server_environment(install)
        Path(self.log_file).parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_file, "ab")
        self._process = subprocess.Popen(
            self.command(install),
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=REPO_ROOT,
            start_new_session=True,  # survives the starting shell for `make serve`
        )
        log.close()
        self.pid = self._process.pid
        try:
            self.wait_ready(timeout_s)
        except Exception:
            self.stop()
            raise
        return self

    @property
    def http_url(self) -> str:
        return f"{self.http_host}:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"{host}:{self.grpc_port}"

    @property
    def client_options(self) -> dict:
        """tritonclient keyword arguments to reach this server's gRPC (TLS when it has TLS)."""
        return self.tls.client_options() if self.tls is not None else {}

    def is_ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://{self.http_url}/v2/health/ready", timeout=2) as r:
                return r.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.pid is not None and not pid_alive(self.pid):
                raise LauncherError(f"tritonserver exited during start-up; see {self.log_file}:\n{self.log_tail()}")
            if self.is_ready():
                return
            time.sleep(0.5)
        raise LauncherError(f"tritonserver not ready after {timeout_s:.0f} s; see {self.log_file}:\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(Path(self.log_file).read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self, timeout_s: float = 60.0) -> None:
        """SIGTERM, wait for the PID to exit (ports free), SIGKILL if it hangs."""
        if self.pid is None:
            return
        stop_pid(self.pid, timeout_s)
        if self._process is not None:
            self._process.wait(timeout=5)
        self.pid = None

    def __enter__(self) -> "TritonServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def stop_pid(pid: int, timeout_s: float = 60.0) -> None:
    """Stop a tritonserver by PID and its process group (python stubs), waiting for exit."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + (timeout_s if sig == signal.SIGTERM else 10)
        while time.monotonic() < deadline:
            if not pid_alive(pid):
                break
            time.sleep(0.2)
        if not pid_alive(pid):
            break
    try:  # stubs left behind by a crash
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


SHM_DIR = Path("/dev/shm")
SHM_PREFIX = "triton_python_backend_shm_region_"


def clean_stale_shm(min_age_s: float = 60.0, shm_dir: Path = SHM_DIR) -> list[str]:
    """Remove python-backend shared-memory regions no process maps any more (crashed servers and
    stubs leave them; each holds 1 MB or more of RAM in /dev/shm). Nothing is removed if the
    memory map of a Triton process cannot be read, nor a region younger than `min_age_s`."""
    try:
        regions = [p for p in shm_dir.iterdir() if p.name.startswith(SHM_PREFIX)]
    except OSError:
        return []
    if not regions:
        return []
    mapped: set[str] = set()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/maps") as maps:
                mapped.update(line.rsplit(None, 1)[-1].split("/")[-1] for line in maps if SHM_PREFIX in line)
        except FileNotFoundError:
            continue  # exited meanwhile
        except OSError:
            try:
                with open(f"/proc/{entry.name}/cmdline", "rb") as cmdline:
                    command = cmdline.read()
            except OSError:
                command = b"triton"  # unknown: assume it might be one
            if b"triton" in command:
                return []  # a Triton process we cannot inspect might map one: remove nothing
    removed = []
    now = time.time()
    for region in regions:
        try:
            if region.name not in mapped and now - region.stat().st_mtime > min_age_s:
                region.unlink()
                removed.append(region.name)
        except OSError:
            continue
    return removed


# ---------------------------------------------------------------- background service (Makefile)

def _state_file(run_dir: Path) -> Path:
    return run_dir / "triton.json"


def read_state(run_dir: Path = DEFAULT_RUN_DIR) -> dict | None:
    """The running background server's PID and ports, or None if it is not running."""
    try:
        state = json.loads(_state_file(run_dir).read_text())
    except (OSError, ValueError):
        return None
    return state if pid_alive(int(state["pid"])) else None


def start_supervisor(server: TritonServer, run_dir: Path) -> int:
    """The supervisor process for `server`; its log is run/supervisor.log. It restarts the server
    if it dies (`restart_background`) and exits when `stop_background` stops it."""
    args = [sys.executable, "-m", "productsearch.supervisor", "--url", server.grpc_url,
            "--pid", str(server.pid), "--run-dir", str(run_dir), "--restart"]
    if server.tls is not None:
        args += server.tls.supervisor_args()
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
    }


def server_from_state(state: dict) -> TritonServer:
    """The TritonServer that `state` (run/triton.json) describes: same ports, repository, TLS."""
    tls = state.get("grpc_tls")
    return TritonServer(
        model_repository=Path(state["model_repository"]), host=state["host"], http_port=state["http_port"],
        grpc_port=state["grpc_port"], metrics_port=state["metrics_port"], log_file=Path(state["log_file"]),
        load_models=state.get("load_models", []), extra_args=state.get("extra_args", []),
        exit_timeout_s=state.get("exit_timeout_s", 10),
        tls=None if tls is None else GrpcTls(**{k: (v if isinstance(v, bool) else Path(v)) for k, v in tls.items()}),
    )


def restore_serving(server: TritonServer) -> int | None:
    """Load the generation recorded as serving (serving.json) into a freshly started server."""
    from productsearch.deploy import Deployer  # tritonclient, only needed here

    with Deployer(server.grpc_url, server.model_repository, server.admin_headers,
                  client_options=server.client_options) as deployer:
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
    try:
        state = json.loads(_state_file(run_dir).read_text())
    except (OSError, ValueError):
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
    try:
        state = json.loads(_state_file(run_dir).read_text())
    except (OSError, ValueError):
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
    try:
        state = json.loads(_state_file(run_dir).read_text())
    except (OSError, ValueError):
        state = None
    _state_file(run_dir).unlink(missing_ok=True)
    if state is None:
        return False
    if state.get("supervisor_pid") and pid_alive(int(state["supervisor_pid"])):
        stop_pid(int(state["supervisor_pid"]), timeout_s=30)  # first, or it would restart the server
    try:  # the supervisor may have restarted the server meanwhile
        state = json.loads(_state_file(run_dir).read_text()) if _state_file(run_dir).exists() else state
    except (OSError, ValueError):
        pass
    _state_file(run_dir).unlink(missing_ok=True)
    if not pid_alive(int(state["pid"])):
        return False
    stop_pid(int(state["pid"]))
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m productsearch.launcher", description=__doc__.split("\n")[0])
    parser.add_argument("action", choices=["start", "stop", "status"])
    parser.add_argument("--model-repository", type=Path, default=DEFAULT_MODEL_REPOSITORY)
    parser.add_argument("--host", default=os.environ.get("TRITON_HOST", "127.0.0.1"))
    parser.add_argument("--http-port", type=int, default=int(os.environ.get("TRITON_HTTP_PORT", DEFAULT_PORTS["http"])))
    parser.add_argument("--grpc-port", type=int, default=int(os.environ.get("TRITON_GRPC_PORT", DEFAULT_PORTS["grpc"])))
    parser.add_argument("--metrics-port", type=int, default=int(os.environ.get("TRITON_METRICS_PORT", DEFAULT_PORTS["metrics"])))
    parser.add_argument("--load", action="append", default=[],
                        help="extra model to load at start (repeatable); the serving generation is restored anyway")
    parser.add_argument("--run-dir", type=Path, default=DEFAULT_RUN_DIR)
    parser.add_argument("--no-supervisor", action="store_true", help="do not start the stub supervisor")
    env = os.environ.get
    tls = parser.add_argument_group("gRPC TLS (HTTP and metrics then stay on 127.0.0.1)")
    tls.add_argument("--grpc-tls-cert", type=Path, default=env("TRITON_GRPC_TLS_CERT"), help="server certificate (PEM)")
    tls.add_argument("--grpc-tls-key", type=Path, default=env("TRITON_GRPC_TLS_KEY"), help="server key (PEM)")
    tls.add_argument("--grpc-tls-root", type=Path, default=env("TRITON_GRPC_TLS_ROOT"),
                     help="CA certificate: signs client certificates (mutual) and is trusted by the local tools")
    tls.add_argument("--grpc-tls-mutual", action="store_true", default=env("TRITON_GRPC_TLS_MUTUAL") == "1",
                     help="require client certificates signed by --grpc-tls-root")
    tls.add_argument("--grpc-tls-client-cert", type=Path, default=env("TRITON_GRPC_TLS_CLIENT_CERT"),
                     help="mutual TLS: the certificate the local tools present")
    tls.add_argument("--grpc-tls-client-key", type=Path, default=env("TRITON_GRPC_TLS_CLIENT_KEY"))
    args = parser.parse_args(argv)

    if args.action == "status":
        state = read_state(args.run_dir)
        print(json.dumps(state, indent=1) if state else "tritonserver is not running")
        return 0 if state else 3
    if args.action == "stop":
        print("stopped tritonserver" if stop_background(args.run_dir) else "tritonserver was not running")
        return 0
    try:
        grpc_tls = None
        if args.grpc_tls_cert or args.grpc_tls_key:
            if not (args.grpc_tls_cert and args.grpc_tls_key):
                raise LauncherError("gRPC TLS needs both --grpc-tls-cert and --grpc-tls-key")
            grpc_tls = GrpcTls(args.grpc_tls_cert, args.grpc_tls_key, args.grpc_tls_root, args.grpc_tls_mutual,
                               args.grpc_tls_client_cert, args.grpc_tls_client_key)
        server = TritonServer(
            model_repository=args.model_repository,
            host=args.host,
            http_port=args.http_port,
            grpc_port=args.grpc_port,
            metrics_port=args.metrics_port,
            log_file=args.run_dir / "triton.log",
            load_models=args.load,
            tls=grpc_tls,
        )
        state = start_background(server, args.run_dir, supervise=not args.no_supervisor)
    except LauncherError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    try:
        generation = restore_serving(server_from_state(state) if server.pid is None else server)
    except Exception as err:  # noqa: BLE001 - DeployError, or the server refused: say so in one line
        print(f"error: tritonserver runs (pid {state['pid']}, log {state['log_file']}) but the serving generation "
              f"could not be restored: {err}", file=sys.stderr)
        return 1
    print(f"serving generation {generation}" if generation else
          "no indexed generation yet: `make demo` (or `make index`) indexes the catalog")
    print(f"tritonserver running (pid {state['pid']}): gRPC {state['host']}:{state['grpc_port']}, "
          f"HTTP {state['host']}:{state['http_port']}, metrics {state['host']}:{state['metrics_port']}; "
          f"log {state['log_file']}; stop with `make stop`")
    return 0


if __name__ == "__main__":
    sys.exit(main())
