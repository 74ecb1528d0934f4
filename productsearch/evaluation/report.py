"""Pictures of an evaluation report (PIL only): a contact sheet of queries with their top
results (green frame = relevant) and a Recall@K plot, one line per query kind.
"""
from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

KINDS = ("text", "image", "text+image", "modifier")
PLOT_MAX_K = 50
KIND_COLORS = {"text": (31, 119, 180), "image": (255, 127, 14), "text+image": (44, 160, 44),
               "modifier": (214, 39, 40), "overall": (60, 60, 60)}



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
        summary = row.get("summary") or f"R@{k} {row['recall']:.2f}  nDCG {row['ndcg']:.2f}  RR {row['rr']:.2f}"
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
