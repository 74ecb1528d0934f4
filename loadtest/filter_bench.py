"""What filters and recommendations cost in the scorer, and their recall on the IVF path.

    python -m loadtest.bench --sections filters --write

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
import tempfile
import time
from pathlib import Path

import numpy as np

from loadtest.private_server import prepare_repository
from loadtest.report import publish
from loadtest.scale import WORK_DIR
from loadtest.synthetic import synthetic_catalog
from productsearch.catalog.ranking.batch import passing, slots_of
from productsearch.catalog.store import catalog_url, open_store
from productsearch.runtime.scorer import RowQuery, ScorerModel


def scorer_over(store: Path | str, work: Path, generation: int) -> ScorerModel:
    """A scorer (as Triton would make it) reading the store at `store` (a SQLite folder or a URL)."""
    (work / "scorer" / str(generation)).mkdir(parents=True, exist_ok=True)
    url = store if isinstance(store, str) else f"sqlite://{store}"
    model = ScorerModel()
    model.initialize({"model_config": json.dumps({"parameters": {"catalog": {"string_value": url}}}),
                      "model_version": str(generation), "model_name": "scorer", "model_repository": str(work / "scorer"),
                      "model_instance_kind": "CPU"})
    return model


def cases(index) -> dict[str, dict]:
    """Filters of different selectivity, as RowQuery fields."""
    categories = index.terms["category"]
    codes = categories.codes[: index.high_water]
    common = categories.names[int(np.bincount(codes[codes >= 0]).argmax())]
    median = float(np.nanmedian(index.numbers["price"][: index.high_water]))
    ids = [i.decode() for i in index.ids[:: max(1, len(index) // 100)][:100]]
    return {
        "no filter": {},
        "1 category": {"categories": [common]},
        "price <= median": {"price_max": median},
        "1 category, price <= median": {"categories": [common], "price_max": median},
        "exclude 100 ids": {"exclude_ids": ids},
    }


def exact_filtered(index, query: np.ndarray, fields: dict, k: int = 10) -> set[int]:
    row = RowQuery(query, k, **fields)
    allowed = np.flatnonzero(passing(index, row, slots_of(index, row.exclude_ids)[0]))
    scores = np.empty(len(allowed), dtype=np.float32)
    for start in range(0, len(allowed), 262144):
        chunk = allowed[start:start + 262144]
        scores[start:start + len(chunk)] = index.matrix[chunk] @ query
    return set(allowed[np.argsort(-scores, kind="stable")[:k]].tolist())


def measure(counts: list[int], queries_n: int, log=print) -> tuple[str, int]:
    """The table, and the dimension of the fused vectors searched (the served generation's)."""
    repository, generation = prepare_repository(WORK_DIR, log)
    store = open_store(catalog_url(repository))
    base = next(iter(store.snapshot(generation, chunk=10**9)))
    store.close()
    if not base.rows:
        raise SystemExit("the private repository's store is empty: run `python -m loadtest.bench --sections latency` once")
    dim = 0
    rng = np.random.default_rng(0)
    lines = ["| products | scorer search | query | passing products | p50 ms | p90 ms | recall@10 vs exact filtered |",
             "|---:|---|---|---:|---:|---:|---:|"]
    for count in counts:
        root = synthetic_catalog(WORK_DIR / "catalogs", base, generation, count, log=log)
        with tempfile.TemporaryDirectory(prefix="filter-bench-") as tmp:
            started = time.monotonic()
            model = scorer_over(root, Path(tmp), generation)
            index = model.index()
            dim = index.dim
            log(f"{count:,} products: scorer ready in {time.monotonic() - started:.0f} s ({index.search_method})")
            picks = rng.integers(0, count, queries_n)
            noisy = index.matrix[np.sort(picks)] + 0.5 * rng.standard_normal(
                (queries_n, index.dim)).astype(np.float32) / np.sqrt(index.dim)
            queries = noisy / np.linalg.norm(noisy, axis=1, keepdims=True)
            named = cases(index)
            named["recommend (1 seed)"] = None
            for name, fields in named.items():
                times, recalls = [], []
                for i, query in enumerate(queries):
                    if fields is None:  # "more like this" of a catalog product
                        row = RowQuery(None, 10, seed_ids=[index.ids[int(picks[i])].decode()])
                    else:
                        row = RowQuery(query, 10, **fields)
                    started = time.perf_counter()
                    (found, _), = model.compute([row])
                    times.append((time.perf_counter() - started) * 1000)
                    if fields is not None:
                        recalls.append(len(set(found.tolist()) & exact_filtered(index, query, fields)) / 10)
                row = RowQuery(queries[0], 10, **(fields or {}))
                count_passing = int(passing(index, row, slots_of(index, row.exclude_ids)[0]).sum())
                recall = f"{np.mean(recalls):.3f}" if recalls else "-"
                line = (f"| {count:,} | {index.search_method} | {name} | {count_passing:,} | {np.percentile(times, 50):.1f} | "
                        f"{np.percentile(times, 90):.1f} | {recall} |")
                log(line)
                lines.append(line)
            model.finalize()
            del model, index
    return "\n".join(lines), dim


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.bench --sections filters", description=__doc__.split("\n")[0])
    parser.add_argument("--counts", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--queries", type=int, default=30)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args(argv)
    table, dim = measure(args.counts, args.queries)
    publish("filters", "Filters and recommendations in the scorer", "loadtest.bench --sections filters", argv,
            f"in process, one thread, one query per call, {args.queries} queries per cell (perturbed catalog "
            f"vectors); synthetic catalogs (loadtest/synthetic.py) of the served generation's {dim}-d fused vectors; exact below 100,000 products, IVF "
            "(nprobe 16) from there; filters leaving <= 50,000 products are searched exactly over them, "
            "broader ones inside the IVF scan", table, args.write)
    return 0

