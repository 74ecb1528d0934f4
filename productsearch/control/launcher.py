"""`make serve` / `make stop` / `make status`: the background Triton service from the command line.

    python -m productsearch.control.launcher start [--load MODEL ...]   # idempotent, background
    python -m productsearch.control.launcher stop
    python -m productsearch.control.launcher status
    python -m productsearch.control.launcher url       # the running server's gRPC address
    python -m productsearch.control.launcher tls-args  # tritonserver's gRPC TLS flags, one a line (none: TLS off)

`start` starts tritonserver (control/server.py) and its supervisor (control/supervisor.py:
reloads a model whose python stub process died, starts tritonserver again if it dies), removes
shared-memory regions crashed servers left in /dev/shm, and restores the serving generation.
gRPC TLS: --grpc-tls-cert/--grpc-tls-key (+ --grpc-tls-root, --grpc-tls-mutual; TRITON_GRPC_TLS_* env).
`tls-args` prints the flags those options give tritonserver, checked (files exist, mutual has its
CA), for the containers that exec tritonserver themselves (docker-compose.yml, Kubernetes).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from productsearch.control.paths import DEFAULT_MODEL_REPOSITORY, DEFAULT_PORTS, DEFAULT_RUN_DIR
from productsearch.control.server import GrpcTls, TritonServer
from productsearch.control.service import read_state, restore_serving, server_from_state, start_background, stop_background
from productsearch.control.triton_install import LauncherError


def grpc_tls_from_args(args: argparse.Namespace) -> GrpcTls | None:
    """The gRPC TLS the --grpc-tls-* options (or TRITON_GRPC_TLS_*) ask for; None for plain gRPC."""
    if not (args.grpc_tls_cert or args.grpc_tls_key):
        return None
    if not (args.grpc_tls_cert and args.grpc_tls_key):
        raise LauncherError("gRPC TLS needs both --grpc-tls-cert and --grpc-tls-key")
    return GrpcTls(args.grpc_tls_cert, args.grpc_tls_key, args.grpc_tls_root, args.grpc_tls_mutual,
                   args.grpc_tls_client_cert, args.grpc_tls_client_key)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m productsearch.control.launcher", description=__doc__.split("\n")[0])
    parser.add_argument("action", choices=["start", "stop", "status", "url", "tls-args"])
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

    if args.action == "url":
        state = read_state(args.run_dir)
        print(state["grpc_url"] if state else f"127.0.0.1:{args.grpc_port}")
        return 0
    if args.action == "status":
        state = read_state(args.run_dir)
        print(json.dumps(state, indent=1) if state else "tritonserver is not running")
        return 0 if state else 3
    if args.action == "stop":
        print("stopped tritonserver" if stop_background(args.run_dir) else "tritonserver was not running")
        return 0
    try:
        grpc_tls = grpc_tls_from_args(args)
        if args.action == "tls-args":
            for flag in grpc_tls.server_args() if grpc_tls else []:
                print(flag)
            return 0
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
