"""Encoder runtimes, in process, one thread: ms per item of each served tower, alternating.

    python -m loadtest.bench --sections runtimes --write                  # both towers, ~4 minutes
    python -m loadtest.bench --sections runtimes --towers text            # the text tower only

Image tower: torch eager vs ONNX Runtime fp32 / dynamic int8, at batch 1 and 16. Text tower (USE
multilingual, short product queries, half English half Chinese, already tokenized: tokenization
is the same for every runtime and timed on its own): torch eager, TorchScript (trace + freeze),
torch.compile (inductor, dynamic shapes) where it compiles, ONNX Runtime fp32 and the two dynamic
int8 variants of training/text_runtime.py, at batch 1, 16 and 64. Uses the serving generation's own
towers (model_repository/<tower>/1; the ONNX files are made in a temporary directory where the
generation lacks them). Every figure is the median of `--runs` runs with min-max; the build checks
the fp32 exports equal within 1e-4 and gates int8 on the held-out table.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from loadtest.report import publish
from productsearch.control.paths import DEFAULT_MODEL_REPOSITORY

BATCHES = (1, 16)


def timed(fn, batch: int, repeats: int = 10) -> float:
    """ms per item of fn() over `repeats` calls, after one warm-up call."""
    fn()
    started = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - started) / (repeats * batch) * 1000


def measure(runs: int, log=print) -> str:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from productsearch.encoders.lite_tower import ONNX_FILE, LiteImageTower, OrtLiteTower

    torch.set_num_threads(1)
    tower_dir = Path(DEFAULT_MODEL_REPOSITORY) / "image_encoder" / "1" / "image_tower"
    tower = LiteImageTower.load(tower_dir)
    ort_fp32 = OrtLiteTower(tower_dir, threads=1)
    with tempfile.TemporaryDirectory() as tmp:
        int8_dir = Path(tmp)
        for name in ("image_tower.json",):
            (int8_dir / name).write_text((tower_dir / name).read_text())
        quantize_dynamic(str(tower_dir / ONNX_FILE), str(int8_dir / ONNX_FILE), weight_type=QuantType.QInt8)
        ort_int8 = OrtLiteTower(int8_dir, threads=1)
        rng = np.random.default_rng(0)
        pixels = {b: rng.standard_normal((b, 3, tower.resolution, tower.resolution)).astype(np.float32) for b in BATCHES}
        reference = tower(torch.from_numpy(pixels[16])).detach().numpy()
        fidelity = {"ONNX Runtime fp32": float((ort_fp32.run(pixels[16]) * reference).sum(1).min()),
                    "ONNX Runtime int8 (dynamic)": float((ort_int8.run(pixels[16]) * reference).sum(1).min())}
        results: dict[tuple[str, int], list[float]] = {}
        with torch.inference_mode():
            for run in range(runs):
                for batch in BATCHES:
                    x = torch.from_numpy(pixels[batch]).contiguous(memory_format=torch.channels_last)
                    for name, fn in (("torch eager fp32", lambda: tower(x)),
                                     ("ONNX Runtime fp32", lambda: ort_fp32.run(pixels[batch])),
                                     ("ONNX Runtime int8 (dynamic)", lambda: ort_int8.run(pixels[batch]))):
                        results.setdefault((name, batch), []).append(timed(fn, batch))
                log(f"run {run + 1}/{runs}: " + ", ".join(f"{k[0]} b{k[1]} {v[-1]:.2f}" for k, v in results.items()))
    rows = ["| image tower (EfficientNet-Lite0 @96 + projection) | b=1 ms/image | b=16 ms/image | vs torch, b=16 | "
            "min cosine to torch |", "|---|---:|---:|---:|---:|"]
    base = np.median(results[("torch eager fp32", 16)])
    for name in ("torch eager fp32", "ONNX Runtime fp32", "ONNX Runtime int8 (dynamic)"):
        cells = [f"{np.median(results[(name, b)]):.2f} ({min(results[(name, b)]):.2f}-{max(results[(name, b)]):.2f})"
                 for b in BATCHES]
        rows.append(f"| {name} | {cells[0]} | {cells[1]} | {base / np.median(results[(name, 16)]):.2f}x | "
                    f"{fidelity.get(name, 1.0):.4f} |")
    return "\n".join(rows) + (f"\n\n{runs} runs; one thread. Served: ONNX Runtime fp32 on the CPU (int8 is slower and "
                              "loses accuracy on this convolutional tower); torch on a GPU.")


TEXT_BATCHES = (1, 16, 64)
TEXT_QUERIES = ("red mug", "blue striped t-shirt", "black sneakers", "green hat", "pink polka-dot dress",
                "grey checked backpack", "white sunglasses", "yellow floral scarf",
                "红色马克杯", "蓝色条纹T恤", "黑色运动鞋", "绿色帽子", "粉色波点连衣裙", "灰色格子双肩包", "白色太阳镜", "黄色花纹围巾")


def text_runtimes(model_dir: Path, tmp: Path, log=print) -> dict:
    """name -> (callable(ids, lens) for torch tensors, kind) for every text runtime that builds."""
    import shutil

    from productsearch.encoders.use_multilingual import UseTextTower
    from productsearch.encoders.use_onnx import (INT8_FILE, INT8_PROJ_FP32_FILE, ONNX_FILE, OrtUseTextTower,
                                                 export_onnx, quantize_int8)

    tower = UseTextTower(model_dir)
    ids, lens = tower.tokenize(list(TEXT_QUERIES))
    out = {"torch eager fp32": tower}
    with torch.inference_mode():
        out["TorchScript (trace + freeze)"] = torch.jit.freeze(torch.jit.trace(tower, (ids, lens), check_trace=False))
        try:
            compiled = torch.compile(tower, dynamic=True)
            started = time.perf_counter()
            compiled(ids, lens)
            out["torch.compile (inductor)"] = compiled
            log(f"torch.compile: compiled in {time.perf_counter() - started:.0f} s")
        except Exception as err:  # noqa: BLE001 - reported in the table's notes
            log(f"torch.compile failed: {type(err).__name__}: {str(err)[:200]}")
    for name in ("sp.model", ONNX_FILE):
        if (model_dir / name).exists():
            shutil.copyfile(model_dir / name, tmp / name)
    if not (tmp / ONNX_FILE).exists():
        export_onnx(tower, tmp)
    for name, file in (("ONNX Runtime fp32", ONNX_FILE), ("ONNX Runtime int8 (dynamic)", INT8_FILE),
                       ("ONNX Runtime int8, input projection fp32", INT8_PROJ_FP32_FILE)):
        if file != ONNX_FILE:
            quantize_int8(tmp, file)
        ort_tower = OrtUseTextTower(tmp, file, threads=1)
        out[name] = lambda i, n, t=ort_tower: t.run(i.numpy(), n.numpy())
    return out


def measure_text(runs: int, log=print) -> str:
    torch.set_num_threads(1)
    model_dir = Path(DEFAULT_MODEL_REPOSITORY) / "text_encoder" / "1" / "text_model"
    queries = [TEXT_QUERIES[i % len(TEXT_QUERIES)] for i in range(max(TEXT_BATCHES))]  # EN and ZH alternate by 8
    with tempfile.TemporaryDirectory() as tmp:
        runtimes = text_runtimes(model_dir, Path(tmp), log)
        tower = runtimes["torch eager fp32"]
        inputs = {b: tower.tokenize(queries[:b]) for b in TEXT_BATCHES}
        with torch.inference_mode():
            reference = tower(*inputs[64]).numpy()
            fidelity = {name: float((np.asarray(fn(*inputs[64])) * reference).sum(1).min()) for name, fn in runtimes.items()}
            results: dict[tuple[str, int], list[float]] = {}
            tokenize = []
            for run in range(runs):
                for batch in TEXT_BATCHES:
                    for name, fn in runtimes.items():
                        results.setdefault((name, batch), []).append(timed(lambda: fn(*inputs[batch]), batch, 20))
                tokenize.append(timed(lambda: tower.tokenize(queries[:16]), 16, 20))
                log(f"text run {run + 1}/{runs}: " + ", ".join(f"{k[0]} b{k[1]} {v[-1]:.3f}" for k, v in results.items()))
    heads = " | ".join(f"b={b} ms/query" for b in TEXT_BATCHES)
    rows = [f"| text tower (USE multilingual v3, short EN/ZH queries) | {heads} | vs torch, b=16 | vs torch, b=64 | "
            "min cosine to torch |", "|---|" + "---:|" * (len(TEXT_BATCHES) + 3)]
    for name in runtimes:
        cells = [f"{np.median(results[(name, b)]):.3f} ({min(results[(name, b)]):.3f}-{max(results[(name, b)]):.3f})"
                 for b in TEXT_BATCHES]
        ratios = [np.median(results[("torch eager fp32", b)]) / np.median(results[(name, b)]) for b in (16, 64)]
        rows.append(f"| {name} | {' | '.join(cells)} | {ratios[0]:.2f}x | {ratios[1]:.2f}x | {fidelity[name]:.4f} |")
    return "\n".join(rows) + (f"\n\n{runs} runs; one thread; the same tokenized batches for every runtime (tokenizing "
                              f"costs {np.median(tokenize):.3f} ms/query at b=16 on top, in every runtime). Served: "
                              "the build's choice (text_model/runtime.json; training/text_runtime.py gates int8 on the "
                              "held-out table).")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--towers", default="image,text", help="comma-separated: image, text")
    parser.add_argument("--write", action="store_true", help="record the table in BENCHMARKS.md")
    args = parser.parse_args(argv)
    towers = args.towers.split(",")
    tables = ([measure(args.runs)] if "image" in towers else []) + ([measure_text(args.runs)] if "text" in towers else [])
    publish("runtimes", "Encoder runtimes (in process, one thread)", "loadtest.bench --sections runtimes", argv,
            "the serving generation's towers", "\n\n".join(tables), args.write)
    return 0

