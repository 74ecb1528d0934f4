"""Search analytics of a shop, read through the service (catalog_admin ACTION analytics).

    python -m clients.analytics report --shop S --since 7d            # tables in the terminal
    python -m clients.analytics report --shop S --since 24h --json    # the figures as JSON
    python -m clients.analytics report --shop S --since 30d --html report.html   # a page with charts

Searches, CTR (share of searches clicked), conversion (share with a purchase), MRR of clicks,
revenue per search, zero-result rate: over the window and by day, generation and arm; the top,
zero-result and low-click queries. The page is one self-contained file (inline SVG, no script,
no CDN): it opens offline. Needs a key of scope `write` for the shop (analytics show what its
shoppers searched): PRODUCTSEARCH_API_KEY, else --key-file, else the admin key (PRODUCTSEARCH_ADMIN_KEY
or run/admin_key). Never on the command line.
"""
from __future__ import annotations

import argparse
import calendar
import html
import json
import os
import re
import sys
import time
from pathlib import Path

from clients.catalog import DEFAULT_KEY_FILE, CatalogClient
from clients.connection import ServiceError, add_connection_arguments, tls_from_args

KEY_ENV = "PRODUCTSEARCH_API_KEY"
UNITS = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
COLUMNS = ("searches", "ctr", "conversion", "mrr", "revenue_per_search", "zero_result_rate")


def window_start(text: str, now: float | None = None) -> float:
    """`7d`, `24h`, `90m`, `2w` before now, or a date (2026-12-01)."""
    now = time.time() if now is None else now
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([mhdw])", text.strip())
    if match:
        return now - float(match.group(1)) * UNITS[match.group(2)]
    try:
        return float(calendar.timegm(time.strptime(text.strip(), "%Y-%m-%d")))  # midnight UTC
    except ValueError:
        raise argparse.ArgumentTypeError(f"--since takes 7d, 24h, 90m, 2w or a date YYYY-MM-DD, not {text!r}") from None


def fetch_report(client: CatalogClient, shop: str, since: float, until: float | None = None, top: int = 20) -> dict:
    payload = {"since": since, "top": top, **({"until": until} if until is not None else {})}
    return client.admin("analytics", payload, shop=shop)


def cell(name: str, value) -> str:
    if name in ("ctr", "conversion", "zero_result_rate"):
        return f"{100 * value:.1f}%"
    if name in ("mrr", "revenue_per_search"):
        return f"{value:.3f}"
    return str(value)


def table(rows: list[dict], key: str, columns=COLUMNS) -> list[list[str]]:
    return [[key, *columns]] + [[str(r[key]), *(cell(c, r[c]) for c in columns)] for r in rows]


def sections(report: dict) -> list[tuple[str, list[list[str]]]]:
    summary = report["summary"]
    return [("summary", [list(COLUMNS), [cell(c, summary[c]) for c in COLUMNS]]),
            ("by day", table(report["by_day"], "day")),
            ("by generation", table(report["by_generation"], "generation")),
            ("by arm", table(report["by_arm"], "arm")),
            ("top queries", table(report["top_queries"], "query", ("searches", "ctr", "conversion", "mrr"))),
            ("zero-result queries (what the catalog lacks)", table(report["zero_result_queries"], "query", ("searches",))),
            ("low-click queries (what it ranks badly)", table(report["low_click_queries"], "query",
                                                              ("searches", "ctr", "mrr")))]


def format_text(report: dict) -> str:
    out = [f"shop {report['shop']}: {time.strftime('%Y-%m-%d %H:%M', time.gmtime(report['since']))} .. "
           f"{time.strftime('%Y-%m-%d %H:%M', time.gmtime(report['until']))} UTC"]
    for title, rows in sections(report):
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        out += ["", title] + ["  ".join(v.ljust(w) for v, w in zip(r, widths)) for r in rows]
        if len(rows) == 1:
            out.append("(none)")
    return "\n".join(out)


def bars(title: str, rows: list[dict], key: str, value: str, percent: bool = False) -> str:
    """A horizontal bar chart in inline SVG."""
    if not rows:
        return f"<h3>{html.escape(title)}</h3><p>no data</p>"
    top = max(r[value] for r in rows) or 1
    height = 22 * len(rows) + 10
    parts = [f'<h3>{html.escape(title)}</h3><svg width="640" height="{height}" role="img">']
    for i, r in enumerate(rows):
        width = 420 * r[value] / top
        label = cell(value, r[value]) if percent or value != "searches" else str(r[value])
        parts.append(f'<text x="0" y="{22 * i + 16}" font-size="12">{html.escape(str(r[key]))[:24]}</text>'
                     f'<rect x="150" y="{22 * i + 4}" width="{width:.1f}" height="16" fill="#3b6fb6"/>'
                     f'<text x="{155 + width:.1f}" y="{22 * i + 16}" font-size="12">{html.escape(label)}</text>')
    return "".join(parts) + "</svg>"


def format_html(report: dict) -> str:
    charts = [bars("searches by day", report["by_day"], "day", "searches"),
              bars("CTR by day", report["by_day"], "day", "ctr", True),
              bars("CTR by generation", report["by_generation"], "generation", "ctr", True),
              bars("CTR by arm", report["by_arm"], "arm", "ctr", True),
              bars("top queries", report["top_queries"], "query", "searches")]
    tables = []
    for title, rows in sections(report):
        head = "".join(f"<th>{html.escape(v)}</th>" for v in rows[0])
        body = "".join("<tr>" + "".join(f"<td>{html.escape(v)}</td>" for v in r) + "</tr>" for r in rows[1:])
        tables.append(f"<h2>{html.escape(title)}</h2><table><tr>{head}</tr>{body}</table>")
    style = ("body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>search analytics: "
            f"{html.escape(report['shop'])}</title><style>{style}</style></head><body>"
            f"<pre>{html.escape(format_text(report).splitlines()[0])}</pre>{''.join(charts)}{''.join(tables)}"
            "</body></html>")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m clients.analytics", description="Search analytics of a shop.")
    sub = parser.add_subparsers(dest="command", required=True)
    rep = sub.add_parser("report", help="searches, CTR, conversion, MRR, revenue; by day, generation, arm")
    rep.add_argument("--shop", default="default")
    rep.add_argument("--since", default="7d", help="7d, 24h, 90m, 2w or YYYY-MM-DD (default 7d)")
    rep.add_argument("--top", type=int, default=20, help="queries per list")
    rep.add_argument("--json", action="store_true", help="print the figures as JSON")
    rep.add_argument("--html", type=Path, default=None, help="write a page with charts to this file")
    rep.add_argument("--key-file", default=str(DEFAULT_KEY_FILE), help=f"the key's file (default: ${KEY_ENV}, else "
                     "the admin key)")
    add_connection_arguments(rep)
    args = parser.parse_args(argv)
    try:
        since = window_start(args.since)
    except argparse.ArgumentTypeError as err:
        parser.error(str(err))
    key = os.environ.get(KEY_ENV) or None
    try:
        with CatalogClient(args.url, timeout_s=args.timeout, tls=tls_from_args(args), key=key,
                           key_file=args.key_file) as client:
            report = fetch_report(client, args.shop, since, top=args.top)
    except ServiceError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.html:
        args.html.write_text(format_html(report), encoding="utf-8")
        print(f"wrote {args.html}")
    print(json.dumps(report, indent=2, ensure_ascii=False) if args.json else format_text(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
