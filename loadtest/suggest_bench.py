"""The `suggest` bench section: served suggestion latency with NVIDIA's perf_analyzer at
concurrency 1 (the target is p50 under 5 ms, issue 28), over prefixes of real demo titles
(Latin: 3-6 letters of a title's first word; Chinese: its first 1-2 characters), each round one
perf_analyzer run; reported as the median (min-max) of the rounds."""
from __future__ import annotations

import csv
import json
import statistics
import subprocess
import tempfile
from pathlib import Path

from loadtest.perf_analyzer import BINARY, environment, install
from loadtest.workload import DEMO_CATALOG

TOP_K = 10
PREFIXES = 200


def prefixes(catalog: Path = DEMO_CATALOG, limit: int = PREFIXES) -> list[str]:
    found: dict[str, None] = {}
    for i, line in enumerate(catalog.read_text().splitlines()):
        title = json.loads(line)["title"]
        word = title.split()[0]
        found.setdefault(word[:1 + i % 2] if not word[:1].isascii() else word[:3 + i % 4].casefold(), None)
        if len(found) >= limit:
            break
    return list(found)


def spread(values: list[float], digits: int = 2) -> str:
    return f"{statistics.median(values):.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def suggest_section(server, rounds: int, log=print, window_ms: int = 3000) -> str:
    if not BINARY.exists():
        install()
    texts = prefixes()
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "suggest.json"
        data.write_text(json.dumps({"data": [{"PREFIX": [p], "TOP_K": [TOP_K]} for p in texts]}, ensure_ascii=False))
        for round_no in range(rounds):
            report = Path(tmp) / f"pa{round_no}.csv"
            done = subprocess.run([str(BINARY), "-m", "suggest", "-u", server.grpc_url, "-i", "grpc", "--input-data",
                                   str(data), "--concurrency-range", "1:1", "--measurement-interval", str(window_ms),
                                   "--stability-percentage", "50", "--max-trials", "10", "--percentile", "50",
                                   "-f", str(report)], env=environment(), capture_output=True, text=True)
            if done.returncode != 0 or not report.exists() or "error" in done.stdout.lower():
                raise RuntimeError(f"perf_analyzer failed (rc {done.returncode}): {(done.stdout + done.stderr)[-800:]}")
            row = next(csv.DictReader(report.open()))
            runs.append({"req/s": float(row["Inferences/Second"]), "p50": float(row["p50 latency"]) / 1000,
                         "p90": float(row["p90 latency"]) / 1000, "p99": float(row["p99 latency"]) / 1000})
            log(f"round {round_no + 1}: p50 {runs[-1]['p50']:.2f} ms, {runs[-1]['req/s']:.0f} req/s")
    lines = ["| concurrency | p50 ms | p90 ms | p99 ms | req/s |", "|---:|---:|---:|---:|---:|",
             f"| 1 | {spread([r['p50'] for r in runs])} | {spread([r['p90'] for r in runs])} | "
             f"{spread([r['p99'] for r in runs])} | {spread([r['req/s'] for r in runs], 0)} |", "",
             f"perf_analyzer -m suggest over {len(texts)} prefixes of demo titles (Latin 3-6 letters, Chinese 1-2 "
             f"characters), TOP_K {TOP_K}, {window_ms} ms windows, the demo catalog ({rounds} rounds, median (min-max))."]
    return "\n".join(lines)
