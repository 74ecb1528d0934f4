"""Metric functions of the evaluation harness on hand-made rankings (known values), and the
query-set reader and demo set generator on a tiny catalog."""
from __future__ import annotations

import json
import math

import pytest

from productsearch.demo.queries import MODIFIER_TEXT_WEIGHT, make_demo_queries
from productsearch.evaluation.search_quality import load_queries, ndcg_at_k, recall_at_k, reciprocal_rank, summarize


def test_recall_at_k():
    ranked = ["a", "x", "b", "y", "c"]
    assert recall_at_k(ranked, {"a", "b", "c"}, 1) == pytest.approx(1 / 3)
    assert recall_at_k(ranked, {"a", "b", "c"}, 3) == pytest.approx(2 / 3)
    assert recall_at_k(ranked, {"a", "b", "c"}, 10) == 1.0
    assert recall_at_k(ranked, {"z"}, 5) == 0.0
    assert recall_at_k(ranked, set(), 5) == 0.0


def test_ndcg_at_k():
    # perfect ranking
    assert ndcg_at_k(["a", "b", "x"], {"a", "b"}, 3) == pytest.approx(1.0)
    # hits at ranks 2 and 4 of two relevant: (1/log2 3 + 1/log2 5) / (1 + 1/log2 3)
    expected = (1 / math.log2(3) + 1 / math.log2(5)) / (1 + 1 / math.log2(3))
    assert ndcg_at_k(["x", "a", "y", "b"], {"a", "b"}, 4) == pytest.approx(expected)
    # cut-off: only rank 2 counts at k=2
    assert ndcg_at_k(["x", "a", "y", "b"], {"a", "b"}, 2) == pytest.approx((1 / math.log2(3)) / (1 + 1 / math.log2(3)))
    # more relevant than k: the ideal DCG has k hits, so a full top-k of hits scores 1
    assert ndcg_at_k(["a", "b"], {"a", "b", "c", "d"}, 2) == pytest.approx(1.0)
    assert ndcg_at_k(["x", "y"], {"a"}, 2) == 0.0


def test_reciprocal_rank_and_summary():
    assert reciprocal_rank(["a", "b"], {"a"}) == 1.0
    assert reciprocal_rank(["x", "y", "a"], {"a"}) == pytest.approx(1 / 3)
    assert reciprocal_rank(["x", "y"], {"a"}) == 0.0
    rows = [
        {"kind": "text", "recall": 1.0, "ndcg": 1.0, "rr": 1.0, "recall_curve": [0.5, 1.0]},
        {"kind": "text", "recall": 0.0, "ndcg": 0.0, "rr": 0.5, "recall_curve": [0.0, 0.0]},
        {"kind": "image", "recall": 0.5, "ndcg": 0.25, "rr": 0.25, "recall_curve": [0.5, 0.5]},
    ]
    summary = summarize(rows, 10)
    assert set(summary) == {"text", "image", "overall"}
    assert summary["text"]["recall@10"] == 0.5 and summary["text"]["mrr"] == 0.75
    assert summary["overall"]["queries"] == 3
    assert summary["overall"]["ndcg@10"] == pytest.approx(1.25 / 3)
    assert summary["text"]["recall_curve"] == [0.25, 0.5]


def test_demo_queries_exclude_the_query_product(tmp_path):
    catalog = tmp_path / "catalog" / "catalog.jsonl"
    (catalog.parent / "images").mkdir(parents=True)
    products = []
    for i in range(7):
        combo = ("hat", "red", "striped") if i < 3 else ("bag", "blue", "plain") if i < 6 else ("hat", "blue", "striped")
        (catalog.parent / "images" / f"P{i}.png").write_bytes(b"png")
        products.append({"id": f"P{i}", "category": combo[0], "color": combo[1], "pattern": combo[2],
                         "image": f"images/P{i}.png", "heldout": i < 3})
    catalog.write_text("".join(json.dumps(p) + "\n" for p in products))
    out = tmp_path / "queries" / "demo.jsonl"
    queries = make_demo_queries(catalog, out)
    assert [q["id"].split(":")[0] for q in queries] == ["text", "image", "text+image", "modifier"]
    text, image, both, modifier = load_queries(out)
    assert text["text"] == "red striped hat" and text["relevant"] == ["P0", "P1", "P2"]
    assert image["kind"] == "image" and image["exclude"] == [image["query_product"]]
    assert image["query_product"] not in image["relevant"] and len(image["relevant"]) == 2
    assert both["kind"] == "text+image" and both["text"] == "red hat" and both["relevant"] == ["P0", "P1", "P2"]
    assert image["image_path"].endswith(f"{image['query_product']}.png")
    # the blue striped hat's photo, asked for in red: the red striped hats are relevant
    assert modifier["kind"] == "modifier" and modifier["text"] == "like this, but in red"
    assert modifier["query_product"] == "P6" and modifier["exclude"] == ["P6"] and modifier["relevant"] == ["P0", "P1", "P2"]
    assert modifier["text_weight"] == MODIFIER_TEXT_WEIGHT


def test_load_queries_rejects_bad_sets(tmp_path):
    bad = tmp_path / "q.jsonl"
    bad.write_text(json.dumps({"id": "a", "relevant": ["P1"]}) + "\n")
    with pytest.raises(ValueError, match="neither text nor image"):
        load_queries(bad)
    bad.write_text(json.dumps({"id": "a", "text": "hat", "relevant": []}) + "\n")
    with pytest.raises(ValueError, match="relevant"):
        load_queries(bad)
    bad.write_text(json.dumps({"id": "a", "image": "missing.png", "relevant": ["P1"]}) + "\n")
    with pytest.raises(ValueError, match="not found"):
        load_queries(bad)
