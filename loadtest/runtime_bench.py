"""Encoder runtimes, in process, one thread: ms per item of each served tower on torch eager and on
ONNX Runtime (fp32, and dynamic int8 for the image tower), at batch 1 and 16, alternating.

    python -m loadtest.runtime_bench --write          # ~2 minutes

Uses the serving generation's own towers (model_repository/<tower>/1). Every figure is the median
of `--runs` runs with min-max. The ONNX export is checked equal within 1e-4 by the build.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from loadtest.report import publish
from productsearch.control.paths import DEFAULT_MODEL_REPOSITORY

BATCHES = (1, 16)


def timed(fn, batch: int, repeats: int = 10) -> float:
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--write", action="store_true", help="record the table in BENCHMARKS.md")
    args = parser.parse_args(argv)
    publish("runtimes", "Encoder runtimes (in process, one thread)", "loadtest.runtime_bench", argv,
            "the serving generation's image tower", measure(args.runs), args.write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
