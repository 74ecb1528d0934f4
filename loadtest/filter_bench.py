"""What filters and recommendations cost in the scorer, and their recall on the IVF path.

    python -m loadtest.filter_bench --write

In process (the scorer's own code, one thread as served, one query per call), over the cached
synthetic catalogs of loadtest/synthetic.py (each product carries its main source's category
and price). Queries: perturbed catalog vectors. For each catalog size and filter: ms per query
(p50, p90) and recall@10 against the exact top 10 of the products that pass (fp32 brute
force). Exact search below 100,000 products, IVF from there: a filter that leaves at most
`exact_filter_max` (50,000) products is searched exactly over them, a broader one inside the
IVF scan (faiss ID selector).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from loadtest.private_server import prepare_repository
from loadtest.report import publish
from loadtest.scale import WORK_DIR
from productsearch.catalog.files import point_catalog
from loadtest.synthetic import synthetic_catalog
from productsearch.runtime.scorer import RowQuery, ScorerModel
from productsearch.catalog.files import open_catalog


def scorer_over(catalog_root: Path, work: Path) -> ScorerModel:
    version_dir = work / "scorer" / "1"
    version_dir.mkdir(parents=True, exist_ok=True)
    point_catalog(version_dir, catalog_root)
    model = ScorerModel()
    model.initialize({"model_config": json.dumps({"parameters": {}}), "model_version": "1", "model_name": "scorer",
                      "model_repository": str(work / "scorer"), "model_instance_kind": "CPU"})
    return model


def cases(model: ScorerModel) -> dict[str, dict]:
    """Filters of different selectivity, as RowQuery fields."""
    codes = model.categories[model.categories >= 0]
    common = int(np.bincount(codes).argmax())
    median = float(np.nanmedian(model.prices))
    return {
        "no filter": {},
        "1 category": {"categories": np.array([common], dtype=model.categories.dtype)},
        "price <= median": {"price_max": median},
        "1 category, price <= median": {"categories": np.array([common], dtype=model.categories.dtype),
                                        "price_max": median},
        "exclude 100 ids": {"exclude": np.arange(0, len(model.categories), len(model.categories) // 100)[:100]},
    }


def exact_filtered(model: ScorerModel, query: np.ndarray, fields: dict, k: int = 10) -> set[int]:
    row = RowQuery(query, k, **fields)
    allowed = np.flatnonzero(model.passing(row))
    scores = np.empty(len(allowed), dtype=np.float32)
    for start in range(0, len(allowed), 262144):
        chunk = allowed[start:start + 262144]
        scores[start:start + len(chunk)] = np.asarray(model.vectors[chunk], dtype=np.float32) @ query
    return set(allowed[np.argsort(-scores, kind="stable")[:k]].tolist())


def measure(counts: list[int], queries_n: int, log=print) -> str:
    repository, generation = prepare_repository(WORK_DIR, log)
    base = open_catalog(repository / "scorer" / str(generation))
    rng = np.random.default_rng(0)
    lines = ["| products | scorer search | query | passing products | p50 ms | p90 ms | recall@10 vs exact filtered |",
             "|---:|---|---|---:|---:|---:|---:|"]
    for count in counts:
        catalog_dir = synthetic_catalog(WORK_DIR / "catalogs", base, count, log=log)
        view = open_catalog(catalog_dir, verify=False)
        with tempfile.TemporaryDirectory(prefix="filter-bench-") as tmp:
            started = time.monotonic()
            model = scorer_over(view.root, Path(tmp))
            log(f"{count:,} products: scorer ready in {time.monotonic() - started:.0f} s ({model.searcher.method})")
            picks = rng.integers(0, count, queries_n)
            noisy = np.asarray(view.embeddings[np.sort(picks)], dtype=np.float32) + 0.5 * rng.standard_normal(
                (queries_n, view.embeddings.shape[1])).astype(np.float32) / np.sqrt(view.embeddings.shape[1])
            queries = noisy / np.linalg.norm(noisy, axis=1, keepdims=True)
            named = cases(model)
            named["recommend (1 seed)"] = None
            for name, fields in named.items():
                times, recalls = [], []
                for i, query in enumerate(queries):
                    if fields is None:  # "more like this" of a catalog product
                        seed = int(picks[i])
                        row = RowQuery(None, 10, seeds=np.array([seed]), seed_weights=np.ones(1, np.float32),
                                       exclude=np.array([seed]))
                    else:
                        row = RowQuery(query, 10, **fields)
                    started = time.perf_counter()
                    (index, _), = model.compute([row])
                    times.append((time.perf_counter() - started) * 1000)
                    if fields is not None:
                        recalls.append(len(set(index.tolist()) & exact_filtered(model, query, fields)) / 10)
                passing = int(model.passing(RowQuery(queries[0], 10, **(fields or {}))).sum())
                recall = f"{np.mean(recalls):.3f}" if recalls else "-"
                line = (f"| {count:,} | {model.searcher.method} | {name} | {passing:,} | {np.percentile(times, 50):.1f} | "
                        f"{np.percentile(times, 90):.1f} | {recall} |")
                log(line)
                lines.append(line)
            del model
        del view
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.filter_bench", description=__doc__.split("\n")[0])
    parser.add_argument("--counts", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--queries", type=int, default=30)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args(argv)
    table = measure(args.counts, args.queries)
    publish("filters", "Filters and recommendations in the scorer", "loadtest.filter_bench", argv,
            f"in process, one thread, one query per call, {args.queries} queries per cell (perturbed catalog "
            "vectors); synthetic catalogs (loadtest/synthetic.py), 768-d; exact below 100,000 products, IVF "
            "(nprobe 16) from there; filters leaving <= 50,000 products are searched exactly over them, "
            "broader ones inside the IVF scan", table, args.write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
