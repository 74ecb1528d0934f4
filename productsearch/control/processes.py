"""Processes on this host: free ports, PIDs, waiting for a started server to answer, stopping a
server with its stubs, the python-backend stub processes of a server (model, version, memory),
and the shared memory crashed stubs leave.
"""
from __future__ import annotations

import os
import signal
import socket
import time
from dataclasses import dataclass
from pathlib import Path

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


def wait_until_answering(process, url: str, timeout_s: float, name: str, log_file: Path) -> None:
    """Poll `url` until it answers; if `process` exits first or `timeout_s` passes, kill it and
    raise naming `log_file`."""
    import urllib.request

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(f"{name} did not start; see {log_file}") from None
            time.sleep(0.2)


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


STUB_BINARY = "triton_python_backend_stub"


@dataclass(frozen=True)
class Stub:
    model: str
    version: int
    shm_region: str  # name of its shared-memory region in /dev/shm
    pid: int = 0

    def rss_kb(self) -> int:
        """Its resident memory (VmRSS, kB); 0 if it has gone."""
        try:
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        except (OSError, ValueError):
            pass
        return 0

    def shm_bytes(self) -> int:
        """Bytes of RAM its region holds (tmpfs blocks), 0 if gone."""
        try:
            return os.stat(SHM_DIR / self.shm_region).st_blocks * 512
        except OSError:
            return 0


def stub_processes(server_pid: int) -> dict[int, Stub]:
    """{pid: Stub} of the python backend stubs that tritonserver `server_pid` runs. A stub's
    command line is `triton_python_backend_stub <repo>/<model>/<version>/model.py <shm region> ...`."""
    stubs = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as stat:
                if int(stat.read().rsplit(")", 1)[1].split()[1]) != server_pid:
                    continue
            with open(f"/proc/{entry.name}/cmdline", "rb") as cmdline:
                argv = cmdline.read().decode(errors="replace").split("\0")
        except (OSError, IndexError, ValueError):
            continue
        if len(argv) > 2 and argv[0].endswith(STUB_BINARY):
            script = Path(argv[1])
            if script.parent.name.isdigit():
                stubs[int(entry.name)] = Stub(script.parent.parent.name, int(script.parent.name), argv[2],
                                              int(entry.name))
    return stubs
