"""Retrieval quality on REAL product photos through the served `search`: Fashion-MNIST's TEST
split (10,000 Zalando photos, never trained on) indexed into a shop of its own.

    python -m productsearch.evaluation.photo_quality --url localhost:8001            # make evaluate-photos
    python -m productsearch.evaluation.photo_quality --url ... --photos 2000 --photo-queries 200   # CI-sized

1. The photos (converted to dark-on-white RGB PNGs, productsearch/demo/fashion_mnist.py) are upserted
   into shop `fashion-mnist` through `upsert_products` (the bulk loader, clients/index.py), once:
   a rerun finds them there. Every photo gets the SAME title ("photo"), so the title half of the
   fused vectors is one constant vector, adding the same amount to every product's score: the
   ranking of any query is the image-only ranking (the photos are indexed image-only).
2. Class-name text queries in English (4 phrasings per class) and Chinese (3 per class), and
   photo queries (a seeded sample of the indexed photos, the query photo itself sent as
   EXCLUDE_IDS), each answered by the served `search` of that shop.
3. Reported: same-class P@10 per query set against the issue's targets, per class too; a contact
   sheet (run/evaluate_photos/contact_sheet.png, green = same class) and metrics.json.
The dataset comes from the Debian package; when it is missing this prints the one command that
installs it and exits 2. Client-side only: tritonclient, numpy, PIL.
"""
from __future__ import annotations

import argparse
import io
import json
import sys
import time
from pathlib import Path

import numpy as np

from productsearch.demo import fashion_mnist as fm
from clients.connection import add_connection_arguments, tls_from_args
from clients.contract import Filters, Product, ReadOptions
from productsearch.evaluation.report import contact_sheet
from clients.search import SearchClient, SearchError

SHOP = "fashion-mnist"
TITLE = "photo"
K = 10
TARGETS = {"text_en->photo": 0.80, "text_zh->photo": 0.75, "photo->photo": 0.85}
DEFAULT_OUT = Path("run") / "evaluate_photos"


def png(image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def product_id(row: int) -> str:
    return f"FM{row:05d}"


def pick(labels: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """`n` rows, balanced over the classes (all rows when n covers them)."""
    if n >= len(labels):
        return np.arange(len(labels))
    return fm.balanced_subset(labels, n // len(fm.CLASSES), seed)


def index_photos(client: SearchClient, url: str, images: np.ndarray, labels: np.ndarray, rows: np.ndarray,
                 key: str | None, tls, reindex: bool, log=print) -> int:
    """Upsert the photos unless the shop already holds exactly these; the sequence to read at."""
    from clients.index import load_products

    info = client.info(SHOP) if SHOP in client.shops() else client.create_shop(SHOP)
    if not reindex and info.get("products") == len(rows) and client.product(product_id(int(rows[-1])), SHOP):
        log(f"shop {SHOP!r} already holds the {len(rows)} photos (--reindex loads them again)")
        return int(info.get("sequence", 0))
    products = [Product(product_id(int(r)), TITLE, png(photo), {"category": fm.CLASSES[int(labels[r])], "split": "test"})
                for r, photo in zip(rows, fm.to_photos(images[rows]))]
    report = load_products(url, products, key=key, shop=SHOP, tls=tls, progress=False)
    log(report.summary())
    if report.failed:
        raise SearchError("UNAVAILABLE", f"{len(report.failed)} photos were not indexed")
    return report.sequence


def run(client: SearchClient, images, labels, rows, photo_queries: int, sequence: int, seed: int) -> list[dict]:
    read = ReadOptions(shop=SHOP, min_sequence=sequence)
    label_of = {product_id(int(r)): int(labels[r]) for r in rows}
    out = []

    def scored(kind: str, set_name: str, cls: int, result, **extra) -> dict:
        hits = [label_of.get(pid) == cls for pid in result.ids[:K]]
        p = float(np.mean(hits)) if hits else 0.0
        return {"id": extra.pop("id"), "kind": kind, "set": set_name, "class": cls, "p@10": p,
                "ranking": list(result.ids[:K]), "scores": [round(float(s), 5) for s in result.scores[:K]],
                "relevant": [pid for pid in result.ids[:K] if label_of.get(pid) == cls],
                "summary": f"P@{K} {p:.2f}  ({fm.CLASSES[cls]})", **extra}

    for set_name, queries in (("text_en->photo", fm.EVAL_QUERIES_EN), ("text_zh->photo", fm.EVAL_QUERIES_ZH)):
        for cls, phrasings in enumerate(queries):
            for text in phrasings:
                # the sheet's font has no CJK glyphs: Chinese queries also carry their class in English
                shown = text if set_name == "text_en->photo" else f"{text} (Chinese query for {fm.CLASSES[cls]})"
                out.append(scored("text", set_name, cls, client.search(text=text, top_k=K, read=read),
                                  id=f"{set_name}:{text}", text=shown, query=text))
    rng = np.random.default_rng(seed)
    for r in rng.choice(rows, size=min(photo_queries, len(rows)), replace=False):
        pid = product_id(int(r))
        result = client.search(image=png(fm.to_photos(images[[r]])[0]), top_k=K, read=read,
                               filters=Filters(exclude_ids=[pid]))
        out.append(scored("image", "photo->photo", int(labels[r]), result, id=pid, query_row=int(r)))
    return out


def summarize(results: list[dict]) -> dict:
    summary = {}
    for set_name in TARGETS:
        rows = [r for r in results if r["set"] == set_name]
        per_class = {fm.CLASSES[c]: round(float(np.mean([r["p@10"] for r in rows if r["class"] == c])), 3)
                     for c in sorted({r["class"] for r in rows})}
        summary[set_name] = {"queries": len(rows), "p@10": round(float(np.mean([r["p@10"] for r in rows])), 4),
                             "target": TARGETS[set_name], "per_class": per_class}
    return summary


def format_table(summary: dict, photos: int) -> str:
    lines = [f"Fashion-MNIST TEST photos ({photos} indexed image-only, shop {SHOP!r}) through the served search, "
             f"same-class P@{K}", "", "| query set | queries | P@10 | target | result |", "|---|---:|---:|---|---|"]
    for name, s in summary.items():
        lines.append(f"| {name} | {s['queries']} | {s['p@10']:.3f} | >= {s['target']:.2f} | "
                     f"{'pass' if s['p@10'] >= s['target'] else 'FAIL'} |")
    lines += ["", "per class (P@10): " + "; ".join(
        f"{name}: " + ", ".join(f"{c} {v:.2f}" for c, v in s["per_class"].items()) for name, s in summary.items())]
    return "\n".join(lines)


def draw_sheet(results: list[dict], images: np.ndarray, out_dir: Path, limit: int = 24) -> Path:
    """A contact sheet like productsearch.evaluation.search_quality's: text and photo queries with their top results."""
    photo_dir = out_dir / "photos"
    photo_dir.mkdir(parents=True, exist_ok=True)
    chosen = [r for r in results if r["kind"] == "text"][::5][:limit // 2] + \
             [r for r in results if r["kind"] == "image"][:limit - limit // 2]
    paths: dict[str, str] = {}
    for r in chosen:
        for pid in r["ranking"] + ([r["id"]] if r["kind"] == "image" else []):
            if pid not in paths:
                paths[pid] = str(photo_dir / f"{pid}.png")
                fm.to_photos(images[[int(pid[2:])]])[0].resize((84, 84)).save(paths[pid])
        if r["kind"] == "image":
            r["image_path"] = paths[r["id"]]
    return contact_sheet(chosen, paths, out_dir / "contact_sheet.png", K, limit=limit)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m productsearch.evaluation.photo_quality", description=__doc__.split("\n")[0])
    parser.add_argument("--photos", type=int, default=10_000, help="test photos indexed (balanced subset below 10,000)")
    parser.add_argument("--photo-queries", type=int, default=1000, help="photo -> photo queries (a seeded sample)")
    parser.add_argument("--reindex", action="store_true", help="upsert the photos even when the shop holds them")
    parser.add_argument("--key-file", default="run/admin_key")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dataset-dir", type=Path, default=fm.ROOT, help="the IDX files (dataset-fashion-mnist)")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is not met")
    add_connection_arguments(parser)
    parser.set_defaults(timeout=30.0)
    args = parser.parse_args(argv)
    try:
        images, labels = fm.load_split("test", args.dataset_dir)
    except fm.MissingDataset as err:
        print(str(err))
        return 2
    started = time.monotonic()
    rows = pick(labels, args.photos, args.seed)
    tls = tls_from_args(args)
    try:
        with SearchClient(args.url, timeout_s=args.timeout, tls=tls, key_file=args.key_file) as client:
            sequence = index_photos(client, args.url, images, labels, rows, client.key, tls, args.reindex)
            indexed = time.monotonic() - started
            results = run(client, images, labels, rows, args.photo_queries, sequence, args.seed)
    except SearchError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    summary = summarize(results)
    args.out.mkdir(parents=True, exist_ok=True)
    table = format_table(summary, len(rows))
    report = {"url": args.url, "photos": len(rows), "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
              "index_seconds": round(indexed, 1), "seconds": round(time.monotonic() - started, 1), "summary": summary}
    (args.out / "metrics.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    (args.out / "results.md").write_text(table + "\n")
    sheet = draw_sheet(results, images, args.out)
    print(table)
    print(f"{report['seconds']:.0f} s (indexing {indexed:.0f} s); report in {args.out}/ (metrics.json, results.md, {sheet.name})")
    met = all(s["p@10"] >= s["target"] for s in summary.values())
    return 0 if met or not args.strict else 1


if __name__ == "__main__":
    sys.exit(main())
