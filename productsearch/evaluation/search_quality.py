"""Retrieval-quality harness: runs a query set through the SERVED `search` ensemble over gRPC.

    python -m productsearch.demo.queries data/demo_queries.jsonl    # demo held-out set (server side)
    python -m productsearch.evaluation.search_quality data/demo_queries.jsonl --url localhost:8001 --catalog data/demo_catalog/catalog.jsonl
    python -m productsearch.evaluation.search_quality my_queries.jsonl --k 10 --out run/evaluate

A query set is a JSONL file, one query a line:

    {"id": "q1", "text": "red striped t-shirt", "relevant": ["P00042", "P00043"]}
    {"id": "q2", "image": "photos/shoe.jpg", "relevant": ["P01234"], "exclude": ["P00007"]}

`text` and/or `image` (a path, relative to the query file's folder unless absolute); `relevant`:
the product ids that count as hits (binary relevance); `exclude` (optional): ids removed from
the ranking before scoring (e.g. the product whose own photo is the query); `text_weight`
(optional): the request's TEXT_WEIGHT; `filters` (optional): {"categories": [...], "price_min":
.., "price_max": .., "exclude_ids": [...]} sent as the request's filters. The query kind is
text, image or text+image from which fields are present, unless `kind` names one of KINDS.

Metrics per query, averaged per kind and overall (every query weighs the same):
Recall@K = relevant ids in the top K / all relevant ids; nDCG@K with binary gains
(DCG = sum 1/log2(rank+1), ideal DCG from min(|relevant|, K) hits); MRR = 1/rank of the first
relevant id within the retrieved depth (max(K, 50), 0 if none there).

Writes into --out: metrics.json, results.md (the table), rankings.jsonl (every query's ranking),
contact_sheet.png (queries with their top results, green = relevant) and recall_at_k.png
(Recall@K for K = 1..50, one line per kind). Client-side only: tritonclient, numpy and PIL; no
torch. The catalog file (--catalog) is only read to draw result thumbnails.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

from clients.connection import TlsOptions, add_connection_arguments, tls_from_args
from clients.contract import Filters
from productsearch.evaluation.report import KINDS, PLOT_MAX_K, contact_sheet, recall_plot
from clients.search import SearchClient, SearchError

DEFAULT_OUT = Path("run") / "evaluate"

# ---------------------------------------------------------------------------------------------
# Metrics (binary relevance)
# ---------------------------------------------------------------------------------------------

def recall_at_k(ranked: list[str], relevant: set[str], k: int) -> float:
    """Fraction of the relevant ids found in the top k (0 when nothing is relevant)."""
    if not relevant:
        return 0.0
    return len(relevant.intersection(ranked[:k])) / len(relevant)


def ndcg_at_k(ranked: list[str], relevant: set[str], k: int) -> float:
    """Binary-gain nDCG@k: DCG = sum over hits of 1/log2(rank+1), over the ideal DCG."""
    if not relevant:
        return 0.0
    dcg = sum(1.0 / math.log2(rank + 2) for rank, pid in enumerate(ranked[:k]) if pid in relevant)
    ideal = sum(1.0 / math.log2(rank + 2) for rank in range(min(len(relevant), k)))
    return dcg / ideal


def reciprocal_rank(ranked: list[str], relevant: set[str]) -> float:
    """1/rank of the first relevant id in `ranked` (0 if none is there)."""
    for rank, pid in enumerate(ranked, 1):
        if pid in relevant:
            return 1.0 / rank
    return 0.0


def query_kind(query: dict) -> str:
    if query.get("kind") is not None:
        if query["kind"] not in KINDS:
            raise ValueError(f"query {query.get('id')!r}: kind must be one of {', '.join(KINDS)}")
        return query["kind"]
    has_text, has_image = bool(query.get("text")), bool(query.get("image"))
    if has_text and has_image:
        return "text+image"
    if has_text:
        return "text"
    if has_image:
        return "image"
    raise ValueError(f"query {query.get('id')!r} has neither text nor image")


def summarize(rows: list[dict], k: int) -> dict:
    """Mean metrics per kind and overall; `rows` hold kind, recall, ndcg, rr and the recall curve."""
    groups = {kind: [r for r in rows if r["kind"] == kind] for kind in KINDS}
    groups = {kind: g for kind, g in groups.items() if g}
    groups["overall"] = rows
    out = {}
    for name, group in groups.items():
        n = len(group)
        if not n:
            continue
        depth = min(len(r["recall_curve"]) for r in group)
        out[name] = {
            "queries": n,
            f"recall@{k}": sum(r["recall"] for r in group) / n,
            f"ndcg@{k}": sum(r["ndcg"] for r in group) / n,
            "mrr": sum(r["rr"] for r in group) / n,
            "recall_curve": [sum(r["recall_curve"][i] for r in group) / n for i in range(depth)],
        }
    return out


# ---------------------------------------------------------------------------------------------
# Query sets
# ---------------------------------------------------------------------------------------------

def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def load_queries(path: Path) -> list[dict]:
    """Queries with image paths resolved (relative to the query file's folder) and validated."""
    path = Path(path)
    queries = read_jsonl(path)
    seen = set()
    for number, query in enumerate(queries, 1):
        query.setdefault("id", f"q{number}")
        if query["id"] in seen:
            raise ValueError(f"{path}:{number}: duplicate query id {query['id']!r}")
        seen.add(query["id"])
        if not isinstance(query.get("relevant"), list) or not query["relevant"]:
            raise ValueError(f"{path}:{number}: 'relevant' must be a non-empty list of product ids")
        query["kind"] = query_kind(query)
        if query.get("image"):
            image = Path(query["image"])
            query["image_path"] = str(image if image.is_absolute() else path.parent / image)
            if not Path(query["image_path"]).is_file():
                raise ValueError(f"{path}:{number}: image {query['image_path']} not found")
    return queries


# ---------------------------------------------------------------------------------------------
# Running
# ---------------------------------------------------------------------------------------------

def run_queries(client: SearchClient, queries: list[dict], k: int, log=print) -> tuple[list[dict], int | None]:
    """Search every query (depth max(k, 50) plus the excluded ids) and score it."""
    depth = max(k, PLOT_MAX_K)
    rows, generation = [], None
    started = time.monotonic()
    for number, query in enumerate(queries, 1):
        exclude = set(query.get("exclude") or [])
        image = Path(query["image_path"]).read_bytes() if query.get("image_path") else None
        filters = Filters(**query["filters"]) if query.get("filters") else None
        result = client.search(text=query.get("text") or None, image=image, top_k=depth + len(exclude),
                               text_weight=query.get("text_weight"), filters=filters)
        generation = result.generation
        ranked = [(pid, score) for pid, score in zip(result.ids, result.scores) if pid not in exclude][:depth]
        ids = [pid for pid, _ in ranked]
        relevant = set(query["relevant"]) - exclude
        rows.append({
            "id": query["id"], "kind": query["kind"], "text": query.get("text"), "image": query.get("image"),
            "image_path": query.get("image_path"), "relevant": sorted(relevant),
            "ranking": ids, "scores": [round(s, 5) for _, s in ranked],
            "recall": recall_at_k(ids, relevant, k), "ndcg": ndcg_at_k(ids, relevant, k),
            "rr": reciprocal_rank(ids, relevant),
            "recall_curve": [recall_at_k(ids, relevant, i) for i in range(1, depth + 1)],
        })
        if number % 50 == 0:
            log(f"  {number}/{len(queries)} queries ({time.monotonic() - started:.0f} s)")
    return rows, generation


def format_results(summary: dict, k: int) -> str:
    lines = [f"| kind | queries | Recall@{k} | nDCG@{k} | MRR |", "|---|---:|---:|---:|---:|"]
    for name in (*KINDS, "overall"):
        if name in summary:
            s = summary[name]
            lines.append(f"| {name} | {s['queries']} | {s[f'recall@{k}']:.3f} | {s[f'ndcg@{k}']:.3f} | {s['mrr']:.3f} |")
    return "\n".join(lines)


def catalog_images(catalog_path: Path | None) -> dict[str, str]:
    if not catalog_path or not Path(catalog_path).exists():
        return {}
    catalog_path = Path(catalog_path)
    return {p["id"]: str(catalog_path.parent / p["image"]) for p in read_jsonl(catalog_path) if p.get("image")}


def evaluate(queries_path: Path, url: str, k: int = 10, out_dir: Path = DEFAULT_OUT,
             catalog: Path | None = None, sheet_limit: int = 24, limit: int | None = None,
             timeout_s: float = 30.0, log=print, tls: TlsOptions | None = None) -> dict:
    """Run the query set against the server at `url`; write the report into `out_dir`."""
    queries = load_queries(queries_path)
    if limit:
        queries = queries[:limit]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    log(f"{len(queries)} queries from {queries_path} against {url} (K={k})")
    started = time.monotonic()
    with SearchClient(url, timeout_s=timeout_s, tls=tls) as client:
        rows, generation = run_queries(client, queries, k, log)
    elapsed = time.monotonic() - started
    summary = summarize(rows, k)
    report = {
        "queries_file": str(queries_path), "url": url, "k": k, "generation": generation,
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"), "seconds": round(elapsed, 1),
        "summary": summary,
    }
    (out_dir / "metrics.json").write_text(json.dumps(report, indent=2) + "\n")
    with (out_dir / "rankings.jsonl").open("w") as fh:
        for row in rows:
            fh.write(json.dumps({key: v for key, v in row.items() if key not in ("recall_curve", "image_path")}) + "\n")
    table = format_results(summary, k)
    (out_dir / "results.md").write_text(
        f"Served `search` ensemble (generation {generation}) at {url}, {len(rows)} queries from "
        f"{queries_path}, binary relevance, {report['date']}\n\n{table}\n")
    report["contact_sheet"] = str(contact_sheet(rows, catalog_images(catalog), out_dir / "contact_sheet.png", k, sheet_limit))
    report["recall_plot"] = str(recall_plot(summary, out_dir / "recall_at_k.png", k))
    report["table"] = table
    log(table)
    log(f"{elapsed:.1f} s; report in {out_dir}/ (metrics.json, results.md, rankings.jsonl, contact_sheet.png, recall_at_k.png)")
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m productsearch.evaluation.search_quality",
                                     description="Recall@K, nDCG@K and MRR of the served search ensemble on a query set.")
    parser.add_argument("queries", type=Path, help="query set (JSONL; the demo set: python -m productsearch.demo.queries)")
    parser.add_argument("--catalog", type=Path, default=None, help="catalog JSONL: result thumbnails for the contact sheet")
    parser.add_argument("--k", type=int, default=10, help="cut-off for Recall@K and nDCG@K")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="report folder")
    parser.add_argument("--sheet-queries", type=int, default=24, help="queries drawn on the contact sheet")
    parser.add_argument("--limit", type=int, help="evaluate only the first N queries")
    add_connection_arguments(parser)
    parser.set_defaults(timeout=30.0)
    args = parser.parse_args(argv)
    if args.k < 1:
        parser.error("--k must be at least 1")
    try:
        evaluate(args.queries, args.url, args.k, args.out, args.catalog, args.sheet_queries, args.limit,
                 args.timeout, tls=tls_from_args(args))
    except (SearchError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
