"""One real NVIDIA `tritonserver` process: its command line (explicit model control, loopback by
default, admin-key-restricted model repository, optional gRPC TLS), start, readiness, stop.
Everything binds to 127.0.0.1 unless `host` says otherwise; with TLS on, HTTP and metrics
(which Triton serves without TLS) stay on 127.0.0.1.
"""
from __future__ import annotations

import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from clients.connection import TlsOptions
from productsearch.control.admin import (ADMIN_HEADER, ADMIN_KEY_ENV, KEY_HEADERS, RESTRICTED_PROTOCOLS, admin_headers,
                                         admin_key)
from productsearch.catalog.store import CATALOG_ENV
from productsearch.control.device_configs import config_name
from productsearch.control.paths import DEFAULT_MODEL_REPOSITORY, DEFAULT_PORTS, DEFAULT_RUN_DIR, REPO_ROOT
from productsearch.control.processes import pid_alive, port_is_free, stop_pid
from productsearch.control.repository import compile_entry_points
from productsearch.control.triton_install import LauncherError, TritonInstall, find_triton, install_stub, server_environment


KEY_PATTERN = "^(" + "|".join(KEY_HEADERS) + ")$"


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

    def client_tls(self) -> TlsOptions:
        """What the local tools (restore, supervisor) present to this server."""
        return TlsOptions(*(str(p) if p else None for p in (self.root_cert, self.client_cert, self.client_key)))


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
    restricted_protocols: str = RESTRICTED_PROTOCOLS  # Triton's protocols that take the admin key
    tls: GrpcTls | None = None  # gRPC over TLS (HTTP and metrics then stay on loopback)
    catalog_url: str | None = None  # the catalog store (None: PRODUCTSEARCH_CATALOG, else beside the repository)
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
            # Only callers with the admin header may load/unload (swap generations), use shared
            # memory, change log or trace settings, read statistics (control/admin.py says why).
            f"--grpc-restricted-protocol={self.restricted_protocols}:{ADMIN_HEADER}={self.key}",
            f"--http-restricted-api={self.restricted_protocols}:{ADMIN_HEADER}={self.key}",
            # API keys travel in these headers (authorization: Bearer, x-api-key, the old
            # catalog-write-key); Triton hands them to the models (ensemble steps included) as
            # request parameters of the same names (runtime/authorize.py).
            f"--grpc-header-forward-pattern={KEY_PATTERN}",
            f"--http-header-forward-pattern={KEY_PATTERN}",
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
        compile_entry_points(self.model_repository)  # no __pycache__ written under Triton's eyes
        env = server_environment(install)
        env[ADMIN_KEY_ENV] = self.key  # the write models check catalog-write-key against it
        if self.catalog_url:
            env[CATALOG_ENV] = self.catalog_url
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
    def client_tls(self) -> TlsOptions | None:
        """TLS options to reach this server's gRPC (None without TLS)."""
        return self.tls.client_tls() if self.tls is not None else None

    @property
    def client_options(self) -> dict:
        """tritonclient keyword arguments to reach this server's gRPC (TLS when it has TLS)."""
        return self.client_tls.client_kwargs() if self.tls is not None else {}

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
