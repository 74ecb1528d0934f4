"""Run the console in the foreground: `python -m productsearch.console --url HOST:GRPC_PORT`.

    python -m productsearch.console --url 127.0.0.1:8001 --port 8080 --images data/demo_catalog/catalog.jsonl

No key on the command line: the operator signs in on the page. `make serve` / `make demo` start
it in the background (productsearch/control/console.py) and `make stop` stops it by PID.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from clients.connection import DEFAULT_URL


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m productsearch.console", description=__doc__.split("\n")[0])
    parser.add_argument("--url", default=DEFAULT_URL, help="the service's gRPC address")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--images", type=Path, action="append", default=[],
                        help="a catalog JSONL whose `image` paths are the default shop's photos (repeatable)")
    parser.add_argument("--timeout", type=float, default=10.0, help="deadline of one service call (s)")
    args = parser.parse_args(argv)
    import uvicorn

    from productsearch.console.app import create_app

    app = create_app(args.url, [p for p in args.images if p.exists()], args.timeout)
    uvicorn.run(app, host=args.host, port=args.port, access_log=False, log_level="warning")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
