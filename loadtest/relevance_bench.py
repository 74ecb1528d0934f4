"""Hybrid lexical + vector ranking on the demo catalog, through the served `search`: P@10 per lexical
weight and fusion mode, for clean and misspelt queries, and product-code lookups.

    python -m loadtest.relevance_bench --write        # ~3 minutes on 2 cores

The weight is CHOSEN on queries for the training combinations (never on the held-out ones) and
then REPORTED on the held-out combinations. Queries: the canonical phrase of a combination
("red striped t-shirt"), and the same with one typo in a word of 4+ letters (a letter dropped,
doubled or swapped with the next; seeded). P@10 counts results of exactly the combination;
"category" counts the right category. Product codes: the SKU of 200 random products, typed
lower-case with spaces for dashes: P@1 is whether that product comes first.
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
from pathlib import Path

import numpy as np

from clients.contract import Relevance
from clients.index import load_products, read_products
from clients.search import SearchClient
from loadtest.private_server import temporary_server
from loadtest.report import publish
from loadtest.workload import DEMO_CATALOG
from productsearch.catalog.demo_generator import canonical_query

WEIGHTS = (0.0, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0)
MODES = ("rrf", "weighted")


def misspelt(query: str, rng: random.Random) -> str:
    words = query.split()
    long = [i for i, w in enumerate(words) if len(w) >= 4 and w.isalpha()]
    if not long:
        return query
    i = rng.choice(long)
    word, at = words[i], rng.randrange(1, len(words[i]) - 1)
    kind = rng.choice(("drop", "double", "swap"))
    words[i] = (word[:at] + word[at + 1:] if kind == "drop" else word[:at] + word[at] + word[at:] if kind == "double"
                else word[:at] + word[at + 1] + word[at] + word[at + 2:])
    return " ".join(words)


def combination(product) -> tuple[str, str, str]:
    f = product.fields or {}
    return f.get("category"), f.get("color"), f.get("pattern")


def heldout_ids(catalog: Path) -> set[str]:
    """The demo's held-out products (catalog.jsonl's `heldout` flag, not a product field)."""
    return {r["id"] for r in map(json.loads, catalog.read_text().splitlines()) if r.get("heldout")}


def query_sets(products, heldout_products: set[str], seed: int = 0) -> dict[str, list[tuple[str, tuple]]]:
    rng = random.Random(seed)
    heldout = sorted({combination(p) for p in products if p.id in heldout_products})
    training = sorted({combination(p) for p in products if p.id not in heldout_products} - set(heldout))
    rng.shuffle(training)
    training = training[: len(heldout)]
    sets = {}
    for name, combos in (("training", training), ("held-out", heldout)):
        sets[f"{name} clean"] = [(canonical_query(*c), c) for c in combos]
        sets[f"{name} typo"] = [(misspelt(canonical_query(*c), rng), c) for c in combos]
    return sets


def precision(client: SearchClient, queries, relevance: Relevance, by_id: dict) -> tuple[float, float]:
    exact, category = [], []
    for text, combo in queries:
        found = client.search(text, top_k=10, relevance=relevance).ids
        exact.append(np.mean([by_id[i] == combo for i in found]) if found else 0.0)
        category.append(np.mean([by_id[i][0] == combo[0] for i in found]) if found else 0.0)
    return float(np.mean(exact)), float(np.mean(category))


def measure(log=print) -> str:
    products = read_products(DEMO_CATALOG)
    by_id = {p.id: combination(p) for p in products}
    sets = query_sets(products, heldout_ids(DEMO_CATALOG))
    with tempfile.TemporaryDirectory(prefix="relevance-bench-") as tmp:
        tmp = Path(tmp)
        with temporary_server(Path(tmp)) as server:
            report = load_products(server.grpc_url, products, key=server.key, progress=False)
            assert not report.failed, report.summary()
            rows, choice = [], {}
            with SearchClient(server.grpc_url, timeout_s=60) as client:
                for mode in MODES:
                    for weight in WEIGHTS:
                        if weight == 0.0 and mode != MODES[0]:
                            continue
                        relevance = Relevance(lexical_weight=weight, hybrid_mode=mode)
                        figures = {name: precision(client, queries, relevance, by_id) for name, queries in sets.items()}
                        rows.append((mode if weight else "vectors only", weight, figures))
                        choice[(mode, weight)] = (figures["training clean"][0] + figures["training typo"][0]) / 2
                        log(f"{mode} {weight}: " + ", ".join(f"{k} {v[0]:.3f}" for k, v in figures.items()))
                codes = [p for p in random.Random(1).sample(products, 200) if (p.fields or {}).get("sku")]
                hits = [client.search(p.fields["sku"].lower().replace("-", " "), top_k=1).ids[:1] == [p.id]
                        for p in codes]
    best = max(choice, key=choice.get)
    names = list(sets)
    table = ["| ranking | w | " + " | ".join(f"{n} exact / category" for n in names) + " |",
             "|---|---:|" + "---:|" * len(names)]
    for mode, weight, figures in rows:
        mark = " **(chosen)**" if (mode, weight) == best or (mode == "vectors only" and best[1] == 0) else ""
        table.append(f"| {mode}{mark} | {weight:g} | " + " | ".join(f"{figures[n][0]:.3f} / {figures[n][1]:.3f}"
                                                                 for n in names) + " |")
    table.append(f"\nChosen on the training rows (mean of clean and typo exact P@10): {best[0]}, w = {best[1]:g}. "
                 f"Product codes typed as 'qx 0042 z': P@1 {np.mean(hits) if hits else float('nan'):.3f} "
                 f"({len(hits)} codes; the catalog has {'no' if not codes else 'its'} SKUs).")
    return "\n".join(table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--write", action="store_true", help="record the table in BENCHMARKS.md")
    args = parser.parse_args(argv)
    publish("relevance", "Hybrid lexical + vector: P@10 by lexical weight, clean and misspelt queries",
            "loadtest.relevance_bench", argv, "a private Triton with generation 1 and the demo catalog; "
            "one query per combination", measure(), args.write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
