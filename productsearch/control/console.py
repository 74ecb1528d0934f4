"""The search console in the background for `make serve` / `make demo` / `make stop`, stopped by PID.

    python -m productsearch.control.console start [--port 8080]   # idempotent; prints the address
    python -m productsearch.control.console stop

It runs `python -m productsearch.console` (a process of its own: the service never imports the
console) against the running service's gRPC address (run/triton.json), with the demo catalog's
photos, on 127.0.0.1:CONSOLE_PORT (8080); its log is run/console/console.log.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from productsearch.control.paths import DEFAULT_PORTS, DEFAULT_RUN_DIR, DEMO_CATALOG, REPO_ROOT
from productsearch.control.processes import pid_alive, stop_pid, wait_until_answering
from productsearch.control.service import read_state

DEFAULT_CONSOLE_PORT = 8080


def start_console(grpc_url: str, out_dir: Path, port: int, host: str = "127.0.0.1", catalog: Path = DEMO_CATALOG,
                  timeout_s: float = 30.0) -> subprocess.Popen:
    """The console serving on host:port, answering (its sign-in page loads)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    log = open(out_dir / "console.log", "ab")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])))
    env.pop("PRODUCTSEARCH_ADMIN_KEY", None)  # the console holds only the keys operators sign in with
    process = subprocess.Popen([sys.executable, "-m", "productsearch.console", "--url", grpc_url, "--host", host,
                                "--port", str(port), "--images", str(catalog)],
                               stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env, cwd=REPO_ROOT)
    wait_until_answering(process, f"http://{host}:{port}/signin", timeout_s, "the console", out_dir / "console.log")
    return process


def running_console(pid_file: Path) -> int | None:
    pid = int(pid_file.read_text()) if pid_file.exists() else None
    return pid if pid is not None and pid_alive(pid) else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m productsearch.control.console", description=__doc__.split("\n")[0])
    parser.add_argument("action", choices=["start", "stop"])
    parser.add_argument("--run-dir", type=Path, default=DEFAULT_RUN_DIR)
    parser.add_argument("--port", type=int, default=int(os.environ.get("CONSOLE_PORT", DEFAULT_CONSOLE_PORT)))
    args = parser.parse_args(argv)
    out_dir = args.run_dir / "console"
    pid_file = out_dir / "console.pid"
    running = running_console(pid_file)
    if args.action == "stop":
        if running is not None:
            stop_pid(running, timeout_s=10)
            print(f"stopped the console (PID {running})")
        pid_file.unlink(missing_ok=True)
        return 0
    address = f"http://127.0.0.1:{args.port}"
    if running is not None:
        print(f"console already running (PID {running}): {address}")
        return 0
    state = read_state(args.run_dir)
    grpc_url = state["grpc_url"] if state else f"127.0.0.1:{os.environ.get('TRITON_GRPC_PORT', DEFAULT_PORTS['grpc'])}"
    process = start_console(grpc_url, out_dir, args.port)
    pid_file.write_text(str(process.pid))
    print(f"console (PID {process.pid}) on {address} for {grpc_url}: sign in with an API key "
          f"(the admin key is in {args.run_dir / 'admin_key'}); stop: make stop")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
