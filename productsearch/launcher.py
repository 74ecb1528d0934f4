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
    pid: int | None = None
    _process: subprocess.Popen | None = field(default=None, repr=False)

    def command(self, install: TritonInstall) -> list[str]:
        cmd = [
            str(install.binary),
            f"--model-repository={Path(self.model_repository).resolve()}",
            f"--backend-directory={install.backend_dir}",
            "--model-control-mode=explicit",
            "--strict-readiness=true",
            f"--http-address={self.host}",
            f"--http-port={self.http_port}",
            f"--grpc-address={self.host}",
            f"--grpc-port={self.grpc_port}",
            f"--metrics-address={self.host}",
            f"--metrics-port={self.metrics_port}",
            f"--exit-timeout-secs={self.exit_timeout_s}",
            "--log-verbose=0",
            # Only callers with the admin header may load/unload (swap generations).
            f"--grpc-restricted-protocol=model-repository:{ADMIN_HEADER}={self.key}",
            f"--http-restricted-api=model-repository:{ADMIN_HEADER}={self.key}",
        ]
        if config_name(self.model_repository):  # GPU configs written by build_models --device gpu
            cmd.append(f"--model-config-name={config_name(self.model_repository)}")
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
            for name, port in (("http", self.http_port), ("grpc", self.grpc_port), ("metrics", self.metrics_port))
            if not port_is_free(port, self.host)
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
        return f"{self.host}:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"{self.host}:{self.grpc_port}"

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


def start_background(server: TritonServer, run_dir: Path = DEFAULT_RUN_DIR) -> dict:
    """Start `server` unless ours already runs; record PID and ports for `stop`/`status`."""
    state = read_state(run_dir)
    if state is not None:
        return state
    server.start()
    state = {
        "pid": server.pid,
        "host": server.host,
        "http_port": server.http_port,
        "grpc_port": server.grpc_port,
        "metrics_port": server.metrics_port,
        "log_file": str(server.log_file),
        "model_repository": str(Path(server.model_repository).resolve()),
    }
    run_dir.mkdir(parents=True, exist_ok=True)
    tmp = _state_file(run_dir).with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=1))
    os.replace(tmp, _state_file(run_dir))
    return state


def stop_background(run_dir: Path = DEFAULT_RUN_DIR) -> bool:
    state = read_state(run_dir)
    _state_file(run_dir).unlink(missing_ok=True)
    if state is None:
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
    args = parser.parse_args(argv)

    if args.action == "status":
        state = read_state(args.run_dir)
        print(json.dumps(state, indent=1) if state else "tritonserver is not running")
        return 0 if state else 3
    if args.action == "stop":
        print("stopped tritonserver" if stop_background(args.run_dir) else "tritonserver was not running")
        return 0
    server = TritonServer(
        model_repository=args.model_repository,
        host=args.host,
        http_port=args.http_port,
        grpc_port=args.grpc_port,
        metrics_port=args.metrics_port,
        log_file=args.run_dir / "triton.log",
        load_models=args.load,
    )
    try:
        state = start_background(server, args.run_dir)
    except LauncherError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    from productsearch.deploy import Deployer  # tritonclient, only needed here

    url = f"{state['host']}:{state['grpc_port']}"
    with Deployer(url, args.model_repository, admin_headers(admin_key(args.run_dir))) as deployer:
        generation = deployer.serving_generation() or deployer.restore()
    print(f"serving generation {generation}" if generation else
          "no indexed generation yet: `make demo` (or `make index`) indexes the catalog")
    print(f"tritonserver running (pid {state['pid']}): gRPC {state['host']}:{state['grpc_port']}, "
          f"HTTP {state['host']}:{state['http_port']}, metrics {state['host']}:{state['metrics_port']}; "
          f"log {state['log_file']}; stop with `make stop`")
    return 0


if __name__ == "__main__":
    sys.exit(main())
