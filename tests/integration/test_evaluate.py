"""The evaluation harness end to end against the served `search` ensemble (session `triton`
fixture: the demo catalog indexed): a small demo held-out query set, metrics and pictures."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
from PIL import Image

from productsearch.evaluation.search_quality import KINDS, evaluate
from productsearch.demo.queries import make_demo_queries
from tests.conftest import DEMO_CATALOG, ROOT

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def report(triton, tmp_path_factory):
    work = tmp_path_factory.mktemp("evaluate")
    queries = make_demo_queries(DEMO_CATALOG, work / "queries.jsonl")
    # 4 held-out combinations x (text, image, text+image, modifier) = 16 queries
    (work / "small.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries[:16]))
    return evaluate(work / "small.jsonl", triton.grpc_url, k=10, out_dir=work / "out", log=lambda *a: None), work


def test_metrics_in_range_per_kind(report):
    result, _ = report
    summary = result["summary"]
    assert set(summary) == {*KINDS, "overall"}
    assert summary["overall"]["queries"] == 16
    for name, values in summary.items():
        for metric in ("recall@10", "ndcg@10", "mrr"):
            assert 0.0 <= values[metric] <= 1.0, (name, metric, values[metric])
        assert all(0.0 <= v <= 1.0 for v in values["recall_curve"])
        assert values["recall_curve"] == sorted(values["recall_curve"])  # recall@K never drops with K
    assert summary["text"]["ndcg@10"] >= 0.7  # loose floor; the full demo set measures ~0.98


def test_report_files(report):
    result, work = report
    out = work / "out"
    for name, size in (("contact_sheet.png", None), ("recall_at_k.png", (820, 520))):
        with Image.open(out / name) as image:
            image.verify()
        with Image.open(out / name) as image:
            assert image.format == "PNG" and (size is None or image.size == size)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["k"] == 10 and metrics["generation"] >= 1
    rankings = [json.loads(line) for line in (out / "rankings.jsonl").read_text().splitlines()]
    assert len(rankings) == 16
    image_query = next(r for r in rankings if r["kind"] == "image")
    query_product = image_query["image"].rsplit("/", 1)[-1].removesuffix(".png")
    assert query_product not in image_query["ranking"]  # excluded from the ranking it is scored on
    assert "| text |" in (out / "results.md").read_text()


def test_cli(triton, report, tmp_path):
    _, work = report
    done = subprocess.run([sys.executable, "-m", "productsearch.evaluation.search_quality", str(work / "small.jsonl"), "--url",
                           triton.grpc_url, "--limit", "3", "--out", str(tmp_path), "--k", "5"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "nDCG@5" in done.stdout and (tmp_path / "recall_at_k.png").exists()
    check = subprocess.run([sys.executable, "-c", "import sys, productsearch.evaluation.search_quality; print('torch' in sys.modules)"],
                           cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert check.stdout.strip() == "False"
