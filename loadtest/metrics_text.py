"""Reading Triton's metrics endpoint (Prometheus text format): every sample as (name, labels,
value), and the sum of one family's samples whose labels match. Used by the benchmarks and, through
tests/integration/metrics_scrape.py, by the integration tests."""
from __future__ import annotations

import re
import urllib.request

SAMPLE = re.compile(r'^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>.*)\})? (?P<value>\S+)$')
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def scrape(port: int) -> tuple[str, list[tuple[str, dict, float]]]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    samples = []
    for line in text.splitlines():
        match = SAMPLE.match(line)
        if match and not line.startswith("#"):
            samples.append((match["name"], dict(LABEL.findall(match["labels"] or "")), float(match["value"])))
    return text, samples


def total(samples, name: str, **labels) -> float:
    return sum(v for n, got, v in samples if n == name and all(got.get(k) == str(w) for k, w in labels.items()))
