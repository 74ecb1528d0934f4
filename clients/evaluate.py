"""Retrieval-quality harness: runs a query set through the SERVED `search` ensemble over gRPC.

    python -m clients.evaluate --make-demo-queries data/demo_queries.jsonl   # demo held-out set
    python -m clients.evaluate data/demo_queries.jsonl --url localhost:8001  # evaluate
    python -m clients.evaluate my_queries.jsonl --k 10 --out run/evaluate

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
import os
import random
import sys
import time
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from clients.search import DEFAULT_URL, Filters, SearchClient, SearchError

ROOT = Path(__file__).resolve().parent.parent
DEMO_CATALOG = ROOT / "data" / "demo_catalog" / "catalog.jsonl"
DEFAULT_OUT = ROOT / "run" / "evaluate"
KINDS = ("text", "image", "text+image", "modifier")
MODIFIER_TEXT_WEIGHT = 0.9  # demo "like this, but in <colour>" queries: best of 0.5-1.0 (BENCHMARKS.md)
PLOT_MAX_K = 50
KIND_COLORS = {"text": (31, 119, 180), "image": (255, 127, 14), "text+image": (44, 160, 44),
               "modifier": (214, 39, 40), "overall": (60, 60, 60)}


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


def make_demo_queries(catalog_path: Path, out_path: Path, seed: int = 0) -> list[dict]:
    """The demo held-out set: for each held-out (category, colour, pattern) combination,
    - text: the canonical phrase; relevant = every catalog product of the combination;
    - image: the photo of one product of the combination; relevant = the other products of the
      combination, and the query product itself is excluded from the ranking (finding its own
      photo proves nothing);
    - text+image: "colour category" words plus that same photo; relevant = every product of the
      combination (the query product included: the words alone do not name the pattern);
    - modifier: the photo of a product of the same category and pattern in ANOTHER colour plus
      "like this, but in <colour>", with TEXT_WEIGHT MODIFIER_TEXT_WEIGHT; relevant = every
      product of the combination (the photo's product excluded).
    Image paths are written relative to the query file's folder."""
    from productsearch.catalog import canonical_query, combo_of

    catalog_path, out_path = Path(catalog_path), Path(out_path)
    products = read_jsonl(catalog_path)
    by_combo: dict[tuple, list[dict]] = {}
    for product in products:
        if product.get("heldout"):
            by_combo.setdefault(combo_of(product), []).append(product)
    if not by_combo:
        raise ValueError(f"{catalog_path} has no held-out products")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    queries = []
    for combo in sorted(by_combo):
        category, color, pattern = combo
        members = sorted(by_combo[combo], key=lambda p: p["id"])
        ids = [p["id"] for p in members]
        pick = random.Random(f"evaluate:{seed}:{'|'.join(combo)}").choice(members)
        image = catalog_path.parent / pick["image"]
        image_rel = os.path.relpath(image.resolve(), out_path.parent.resolve())
        slug = "-".join(combo).replace(" ", "_")
        queries.append({"id": f"text:{slug}", "text": canonical_query(*combo), "relevant": ids})
        queries.append({"id": f"image:{slug}", "image": image_rel, "query_product": pick["id"],
                        "relevant": [i for i in ids if i != pick["id"]], "exclude": [pick["id"]]})
        queries.append({"id": f"text+image:{slug}", "text": f"{color} {category}", "image": image_rel,
                        "query_product": pick["id"], "relevant": ids})
        # the photo of the same kind of product in another colour, and words asking for this colour
        others = sorted((p for p in products if combo_of(p)[0] == category and combo_of(p)[2] == pattern
                         and combo_of(p)[1] != color), key=lambda p: p["id"])
        if others:
            other = random.Random(f"evaluate-modifier:{seed}:{'|'.join(combo)}").choice(others)
            other_rel = os.path.relpath((catalog_path.parent / other["image"]).resolve(), out_path.parent.resolve())
            queries.append({"id": f"modifier:{slug}", "kind": "modifier", "text": f"like this, but in {color}",
                            "image": other_rel, "text_weight": MODIFIER_TEXT_WEIGHT, "query_product": other["id"],
                            "relevant": ids, "exclude": [other["id"]]})
    out_path.write_text("".join(json.dumps(q) + "\n" for q in queries))
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


# ---------------------------------------------------------------------------------------------
# Pictures (PIL only)
# ---------------------------------------------------------------------------------------------

def font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType
        return ImageFont.load_default()


def _thumb(path: str | None, size: int) -> Image.Image:
    try:
        image = Image.open(path).convert("RGB")
        image.thumbnail((size, size))
        canvas = Image.new("RGB", (size, size), (255, 255, 255))
        canvas.paste(image, ((size - image.width) // 2, (size - image.height) // 2))
        return canvas
    except Exception:  # missing or unreadable: a grey placeholder
        return Image.new("RGB", (size, size), (200, 200, 200))


def _wrap(draw: ImageDraw.ImageDraw, text: str, fnt, width: int, max_lines: int) -> list[str]:
    lines, line = [], ""
    for word in text.split():
        trial = f"{line} {word}".strip()
        if draw.textlength(trial, font=fnt) <= width or not line:
            line = trial
        else:
            lines.append(line)
            line = word
    if line:
        lines.append(line)
    return lines[:max_lines]


def pick_sheet_queries(rows: list[dict], limit: int) -> list[dict]:
    """Up to `limit` queries, spread evenly over the kinds and over each kind's queries."""
    kinds = [kind for kind in KINDS if any(r["kind"] == kind for r in rows)]
    if not kinds:
        return []
    chosen = []
    for kind in kinds:
        group = [r for r in rows if r["kind"] == kind]
        n = min(len(group), max(1, limit // len(kinds)))
        chosen += [group[round(i * (len(group) - 1) / max(n - 1, 1))] for i in range(n)] if n > 1 else group[:1]
    return chosen[:limit]


def contact_sheet(rows: list[dict], images: dict[str, str], path: Path, k: int, limit: int = 24,
                  results: int = 8, thumb: int = 96) -> Path:
    """One row per query: the query (photo and/or words) then its top results with rank, id and
    score; a green frame marks a relevant result, red an irrelevant one."""
    chosen = pick_sheet_queries(rows, limit)
    pad, label_h, query_w = 6, 30, 200
    cell_w, row_h = thumb + 2 * pad, thumb + label_h + 2 * pad
    header_h = 34
    width = query_w + results * cell_w + pad
    sheet = Image.new("RGB", (width, header_h + max(len(chosen), 1) * row_h), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    f_small, f_mid, f_big = font(11), font(12), font(15)
    draw.text((pad, 8), f"Top {results} results per query (green frame = relevant, red = not); "
              f"metrics are at K={k}", fill=(0, 0, 0), font=f_big)
    for i, row in enumerate(chosen):
        y = header_h + i * row_h
        if i % 2:
            draw.rectangle([0, y, width, y + row_h - 1], fill=(244, 244, 244))
        draw.line([0, y, width, y], fill=(210, 210, 210))
        text_x = pad
        if row.get("image_path"):
            q = _thumb(row["image_path"], thumb - 24)
            sheet.paste(q, (pad, y + pad))
            text_x = pad + q.width + 4
        draw.text((text_x, y + pad), row["kind"], fill=(90, 90, 90), font=f_small)
        words = row.get("text") or "(photo only)"
        for j, line in enumerate(_wrap(draw, f'"{words}"' if row.get("text") else words, f_mid, query_w - text_x - pad, 4)):
            draw.text((text_x, y + pad + 16 + 15 * j), line, fill=(0, 0, 0), font=f_mid)
        summary = f"R@{k} {row['recall']:.2f}  nDCG {row['ndcg']:.2f}  RR {row['rr']:.2f}"
        draw.text((pad, y + row_h - pad - 26), summary, fill=(40, 40, 40), font=f_small)
        draw.text((pad, y + row_h - pad - 13), row["id"][:34], fill=(120, 120, 120), font=f_small)
        relevant = set(row["relevant"])
        for r, (pid, score) in enumerate(list(zip(row["ranking"], row["scores"]))[:results]):
            x = query_w + r * cell_w
            sheet.paste(_thumb(images.get(pid), thumb), (x + pad, y + pad))
            color = (30, 160, 60) if pid in relevant else (210, 50, 50)
            draw.rectangle([x + pad - 3, y + pad - 3, x + pad + thumb + 2, y + pad + thumb + 2], outline=color, width=3)
            draw.text((x + pad, y + pad + thumb + 4), f"{r + 1}. {pid}", fill=(0, 0, 0), font=f_small)
            draw.text((x + pad, y + pad + thumb + 17), f"{score:.3f}", fill=(60, 60, 60), font=f_small)
    path = Path(path)
    sheet.save(path)
    return path


def recall_plot(summary: dict, path: Path, k: int, size: tuple[int, int] = (820, 520)) -> Path:
    """Recall@K for K = 1..max, one line per query kind plus overall (dashed)."""
    width, height = size
    left, right, top, bottom = 70, 150, 50, 60
    plot_w, plot_h = width - left - right, height - top - bottom
    image = Image.new("RGB", size, (255, 255, 255))
    draw = ImageDraw.Draw(image)
    f_small, f_mid, f_big = font(12), font(13), font(16)
    curves = {name: s["recall_curve"] for name, s in summary.items() if s.get("recall_curve")}
    max_k = max((len(c) for c in curves.values()), default=PLOT_MAX_K)

    def px(kk: float, recall: float) -> tuple[float, float]:
        return left + (kk - 1) / max(max_k - 1, 1) * plot_w, top + (1 - recall) * plot_h

    draw.text((left, 15), "Recall@K on the served search ensemble", fill=(0, 0, 0), font=f_big)
    for tick in range(0, 11, 2):
        value = tick / 10
        _, y = px(1, value)
        draw.line([left, y, left + plot_w, y], fill=(225, 225, 225))
        draw.text((left - 8, y), f"{value:.1f}", fill=(0, 0, 0), font=f_small, anchor="rm")
    for kk in sorted({1, *range(10, max_k + 1, 10), max_k}):
        x, _ = px(kk, 0)
        draw.line([x, top, x, top + plot_h], fill=(225, 225, 225))
        draw.text((x, top + plot_h + 8), str(kk), fill=(0, 0, 0), font=f_small, anchor="mt")
    if 1 <= k <= max_k:
        x, _ = px(k, 0)
        draw.line([x, top, x, top + plot_h], fill=(150, 150, 150), width=1)
        draw.text((x + 3, top + 3), f"K={k}", fill=(110, 110, 110), font=f_small)
    draw.rectangle([left, top, left + plot_w, top + plot_h], outline=(0, 0, 0))
    draw.text((left + plot_w / 2, height - 22), "K (results considered)", fill=(0, 0, 0), font=f_mid, anchor="mm")
    draw.text((12, top + plot_h / 2), "Recall", fill=(0, 0, 0), font=f_mid, anchor="lm")
    legend_y = top + 10
    for name in (*KINDS, "overall"):
        if name not in curves:
            continue
        color = KIND_COLORS[name]
        points = [px(i + 1, v) for i, v in enumerate(curves[name])]
        if name == "overall":  # dashed
            for a, b in zip(points[::2], points[1::2]):
                draw.line([a, b], fill=color, width=2)
        elif len(points) > 1:
            draw.line(points, fill=color, width=3, joint="curve")
        lx = left + plot_w + 15
        draw.line([lx, legend_y + 7, lx + 24, legend_y + 7], fill=color, width=3)
        label = f"{name} ({summary[name]['queries']})"
        draw.text((lx + 30, legend_y), label, fill=(0, 0, 0), font=f_mid)
        legend_y += 22
    path = Path(path)
    image.save(path)
    return path


def catalog_images(catalog_path: Path | None) -> dict[str, str]:
    if not catalog_path or not Path(catalog_path).exists():
        return {}
    catalog_path = Path(catalog_path)
    return {p["id"]: str(catalog_path.parent / p["image"]) for p in read_jsonl(catalog_path) if p.get("image")}


def evaluate(queries_path: Path, url: str = DEFAULT_URL, k: int = 10, out_dir: Path = DEFAULT_OUT,
             catalog: Path | None = DEMO_CATALOG, sheet_limit: int = 24, limit: int | None = None,
             timeout_s: float = 30.0, log=print) -> dict:
    """Run the query set against the server at `url`; write the report into `out_dir`."""
    queries = load_queries(queries_path)
    if limit:
        queries = queries[:limit]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    log(f"{len(queries)} queries from {queries_path} against {url} (K={k})")
    started = time.monotonic()
    with SearchClient(url, timeout_s=timeout_s) as client:
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
    parser = argparse.ArgumentParser(prog="python -m clients.evaluate",
                                     description="Recall@K, nDCG@K and MRR of the served search ensemble on a query set.")
    parser.add_argument("queries", nargs="?", type=Path, help="query set (JSONL)")
    parser.add_argument("--make-demo-queries", type=Path, metavar="PATH",
                        help="write the demo held-out query set to PATH (from --catalog) and exit")
    parser.add_argument("--catalog", type=Path, default=DEMO_CATALOG,
                        help="catalog JSONL: the demo set's source, and result thumbnails for the contact sheet")
    parser.add_argument("--url", default=DEFAULT_URL, help="Triton gRPC address (default: the `make serve` server)")
    parser.add_argument("--k", type=int, default=10, help="cut-off for Recall@K and nDCG@K")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="report folder")
    parser.add_argument("--sheet-queries", type=int, default=24, help="queries drawn on the contact sheet")
    parser.add_argument("--limit", type=int, help="evaluate only the first N queries")
    parser.add_argument("--timeout", type=float, default=30.0, help="per-request deadline in seconds")
    parser.add_argument("--seed", type=int, default=0, help="demo set: which product's photo is the query")
    args = parser.parse_args(argv)
    if args.make_demo_queries:
        queries = make_demo_queries(args.catalog, args.make_demo_queries, args.seed)
        print(f"wrote {len(queries)} queries ({len(queries) // 3} held-out combinations x text, image, text+image) "
              f"to {args.make_demo_queries}")
        if not args.queries:
            return 0
    if not args.queries:
        parser.error("a query file is needed (or --make-demo-queries PATH)")
    if args.k < 1:
        parser.error("--k must be at least 1")
    try:
        evaluate(args.queries, args.url, args.k, args.out, args.catalog, args.sheet_queries, args.limit, args.timeout)
    except (SearchError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
