"""`make evaluate-photos` end to end, CI-sized: 1,000 Fashion-MNIST test photos indexed into
shop `fashion-mnist` of the session server, class-name queries in English and Chinese and photo
queries through the served `search`, P@10 with looser floors than the targets."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from PIL import Image

from productsearch.demo import fashion_mnist as fm
from productsearch.control.generations import read_manifest
from tests.conftest import MODEL_REPOSITORY, ROOT

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def run(triton, tmp_path_factory):
    if not (fm.ROOT / "t10k-images-idx3-ubyte.gz").exists():
        pytest.skip(fm.INSTALL_HINT)
    out = tmp_path_factory.mktemp("photos")
    done = subprocess.run([sys.executable, "-m", "productsearch.evaluation.photo_quality", "--url", triton.grpc_url, "--photos", "1000",
                           "--photo-queries", "100", "--out", str(out)], cwd=ROOT, capture_output=True, text=True,
                          timeout=600, env={**os.environ, "PRODUCTSEARCH_ADMIN_KEY": triton.key})
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout, json.loads((out / "metrics.json").read_text()), out


def test_the_table_and_the_contact_sheet(run):
    stdout, metrics, out = run
    assert "| text_en->photo | 40 |" in stdout and "| text_zh->photo | 30 |" in stdout and "| photo->photo | 100 |" in stdout
    assert metrics["photos"] == 1000
    with Image.open(out / "contact_sheet.png") as image:
        image.verify()


def test_real_photo_quality_meets_loose_floors(run):
    _, metrics, _ = run
    towers = read_manifest(MODEL_REPOSITORY, 1).get("built_by", {}).get("towers", "")
    if "lite0" not in towers:
        pytest.skip("the served generation is not the demo's pretrained towers (demo-minilm does not transfer to photos)")
    summary = metrics["summary"]
    # targets 0.80 / 0.75 / 0.85 on the full 10,000; measured 0.86 / 0.79 / 0.86 (BENCHMARKS.md)
    assert summary["text_en->photo"]["p@10"] >= 0.70
    assert summary["text_zh->photo"]["p@10"] >= 0.60
    assert summary["photo->photo"]["p@10"] >= 0.70
