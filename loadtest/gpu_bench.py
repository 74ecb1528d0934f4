"""GPU benchmark: the embedded Triton with GPU configs vs in-process PyTorch on the same GPU.

    python -m loadtest.gpu_bench --out $OUT/gpu_bench.md           # on a machine with one NVIDIA GPU
    python -m loadtest.gpu_bench --device cpu --quick               # the same harness on the CPU

Builds a private model repository with `--device gpu` configs (KIND_GPU, fp16 autocast), a
synthetic catalog of unit-norm embeddings, starts the embedded tritonserver, and measures:
search latency/throughput per query kind and concurrency; dynamic batching on vs off (text
search at concurrency 64); served vs in-process PyTorch (the same towers, fusion and scorer
on the same device, batch sizes as the server formed them). Where the demo weights are not on
the machine (they are git-ignored build outputs), towers with the demo architecture and random
weights are used: speed does not depend on the weight values, quality is not measured here.
"""
from __future__ import annotations

import argparse
import asyncio
import io
import json
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from loadtest.harness import TABLE_HEADER, run_load
from loadtest.report import machine_line
from loadtest.workload import ROOT, Workload

SOURCE = ROOT / "model_repository"


def demo_workload(images: int = 64, seed: int = 0) -> Workload:
    """Queries from the demo vocabulary and fresh renders (no catalog files needed)."""
    from productsearch.demo.catalog import CATEGORIES, COLORS, PATTERNS
    from productsearch.demo.render import render_product

    rng = random.Random(seed)
    texts = [f"{c} {p} {k}" for k in CATEGORIES for c in COLORS for p in PATTERNS]
    photos, titles = [], []
    for _ in range(images):
        k, c, p = rng.choice(CATEGORIES), rng.choice(COLORS), rng.choice(PATTERNS)
        buffer = io.BytesIO()
        render_product(k, c, p, rng).save(buffer, "PNG")
        photos.append(buffer.getvalue())
        titles.append(f"{c} {p} {k}")
    return Workload(texts=texts, images=photos, titles=titles, seed=seed)


def prepare_repository(target: Path, device: str, catalog_size: int, seed: int = 0) -> Path:
    """Configs + generation 1 (demo weights if built, else the demo architecture at random)."""
    import torch
    from transformers import AutoConfig, AutoModel

    from productsearch.catalog.sqlite.bulk import bulk_insert
    from productsearch.catalog.store import catalog_url, open_store
    from productsearch.core.vectors import normalize
    from productsearch.control.generations import record_encoders, write_serving
    from productsearch.control.device_configs import write_device_configs
    from productsearch.encoders.resnet_tower import ImageTower
    from productsearch.encoders.minilm import minilm_dir

    torch.manual_seed(seed)
    for model_dir in SOURCE.iterdir():
        if (model_dir / "config.pbtxt").exists():
            (target / model_dir.name / "1").mkdir(parents=True)
            shutil.copy2(model_dir / "config.pbtxt", target / model_dir.name / "config.pbtxt")
            if (model_dir / "1" / "model.py").exists():
                shutil.copy2(model_dir / "1" / "model.py", target / model_dir.name / "1" / "model.py")
    text_dir = target / "text_encoder" / "1" / "text_model"
    built_text = SOURCE / "text_encoder" / "1" / "text_model"
    assets = ROOT / ".gpu_assets" / "text_model"  # tokenizer + config, carried without weights
    if (built_text / "model.safetensors").exists():
        shutil.copytree(built_text, text_dir)
    else:
        try:
            source = minilm_dir()
        except (ImportError, FileNotFoundError):
            source = assets
        shutil.copytree(source, text_dir, ignore=shutil.ignore_patterns("*.safetensors", "*.bin", "1_Pooling"))
        if not (text_dir / "model.safetensors").exists():
            AutoModel.from_config(AutoConfig.from_pretrained(text_dir)).save_pretrained(text_dir)
    built_image = SOURCE / "image_encoder" / "1" / "image_tower"
    if (built_image / "image_tower.pt").exists():
        shutil.copytree(built_image, target / "image_encoder" / "1" / "image_tower")
    else:
        ImageTower().save(target / "image_encoder" / "1" / "image_tower")
    write_device_configs(target, device)
    record_encoders(target, 1, {"bench": "gpu_bench"})
    rng = np.random.default_rng(seed)
    store = open_store(catalog_url(target))
    for start in range(0, catalog_size, 50_000):
        size = min(50_000, catalog_size - start)
        text = normalize(rng.standard_normal((size, 384), dtype=np.float32))
        image = normalize(rng.standard_normal((size, 384), dtype=np.float32))
        bulk_insert(store, 1, [(f"S{start + i:07d}", f"synthetic product {start + i}", {}, text[i], image[i])
                              for i in range(size)])
    store.set_meta("encoders:1", json.loads((target / "generations" / "1.json").read_text())["encoders"])
    store.close()
    write_serving(target, 1, None)
    return target


def batching_config(repository: Path, model: str, enabled: bool) -> str:
    from productsearch.control.model_configs import read_config, to_json

    config = read_config(repository, model)
    config.version_policy.specific.versions[:] = [1]
    if not enabled:
        config.ClearField("dynamic_batching")
    return to_json(config)


def mean_batch(client, model: str) -> float:
    stats = client.get_inference_statistics(model).model_stats
    inferences = sum(s.inference_count for s in stats)
    executions = sum(s.execution_count for s in stats)
    return inferences / executions if executions else 0.0


def in_process_text_search(repository: Path, device: str, workload: Workload, batch: int, seconds: float) -> float:
    """Queries/s for text search in one process: tokenize+encode, fuse, score, top-k."""
    import torch

    from productsearch.catalog.store import catalog_url, open_store
    from productsearch.encoders.loading import load_text_tower
    from productsearch.core.vectors import fuse

    torch_device = "cuda" if device == "gpu" else "cpu"
    tower = load_text_tower(repository / "text_encoder" / "1", torch_device, "fp16" if device == "gpu" else "fp32")
    rows = [r for chunk in open_store(catalog_url(repository)).snapshot(1) for r in chunk.rows]
    ones = np.ones(len(rows), bool)
    fused = fuse(np.stack([r.text for r in rows]), np.stack([r.image for r in rows]), ones, ones)
    matrix = torch.from_numpy(fused).to(torch_device)
    rng = random.Random(1)

    def one_batch() -> None:
        texts = [rng.choice(workload.texts) for _ in range(batch)]
        text = tower.encode(texts)
        present = np.ones(batch, bool)
        query = torch.from_numpy(fuse(text, text, present, np.zeros(batch, bool))).to(torch_device)
        torch.topk(query @ matrix.T, 10, dim=1)[1].cpu()

    for _ in range(3):
        one_batch()
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        one_batch()
        done += batch
    return done / (time.perf_counter() - started)


def accelerator_name() -> str:
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none (CPU)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.gpu_bench", description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="gpu", choices=["gpu", "cpu"])
    parser.add_argument("--catalog-size", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=200, help="requests per cell at concurrency 1")
    parser.add_argument("--quick", action="store_true", help="fewer requests and cells (smoke run)")
    parser.add_argument("--out", type=Path, help="also write the report here")
    parser.add_argument("--write", action="store_true", help="record the report in BENCHMARKS.md")
    args = parser.parse_args(argv)

    import tritonclient.grpc as grpcclient

    from loadtest.private_server import deployer_for
    from productsearch.control.server import TritonServer
    from productsearch.control.processes import free_ports

    requests = 20 if args.quick else args.requests
    concurrencies = (1, 16) if args.quick else (1, 16, 64)
    workload = demo_workload()
    lines: list[str] = []
    with tempfile.TemporaryDirectory(prefix="gpu-bench-") as tmp:
        repository = prepare_repository(Path(tmp) / "model_repository", args.device, args.catalog_size)
        http, grpc, metrics = free_ports(3)
        server = TritonServer(model_repository=repository, http_port=http, grpc_port=grpc, metrics_port=metrics,
                              log_file=Path(tmp) / "triton.log").start()
        try:
            with deployer_for(server, repository, log=lambda *a: None) as deployer:
                deployer.restore()
            rows = []
            for kind in ("text", "image", "text+image"):
                for concurrency in concurrencies:
                    result = asyncio.run(run_load(server.grpc_url, workload, kind, concurrency,
                                                  requests * max(1, concurrency // 4)))
                    print(result.row(), flush=True)
                    rows.append(result.row())
            client = grpcclient.InferenceServerClient(server.grpc_url)
            batch_on = asyncio.run(run_load(server.grpc_url, workload, "text", 64, requests * 8))
            served_batch = mean_batch(client, "text_encoder")
            for model in ("text_encoder", "image_encoder"):
                client.load_model(model, config=batching_config(repository, model, False), headers=server.admin_headers)
            batch_off = asyncio.run(run_load(server.grpc_url, workload, "text", 64, requests * 8))
            for model in ("text_encoder", "image_encoder"):
                client.load_model(model, config=batching_config(repository, model, True), headers=server.admin_headers)
            client.close()
            served_16 = asyncio.run(run_load(server.grpc_url, workload, "text", 16, requests * 4))
        finally:
            log_tail = server.log_tail(40)
            server.stop()
        in_process = in_process_text_search(repository, args.device, workload, max(1, round(served_batch)), 10 if not args.quick else 3)
        in_process_16 = in_process_text_search(repository, args.device, workload, 16, 10 if not args.quick else 3)

    command = "python -m loadtest.gpu_bench " + " ".join(argv if argv is not None else sys.argv[1:])
    lines += [f"## GPU benchmark ({args.device})\n", f"- machine: {machine_line().replace(', CPU only', '')}",
              f"- date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}", f"- command: `{command.strip()}`",
              f"- accelerator: {accelerator_name()}",
              f"- catalog: {args.catalog_size} synthetic products (768-d fused, fp32); towers: demo architecture",
              "", TABLE_HEADER, *rows, "",
              "| comparison | figure |", "|---|---:|",
              f"| text search c=64, dynamic batching on (req/s) | {batch_on.throughput:.1f} |",
              f"| text search c=64, dynamic batching off (req/s) | {batch_off.throughput:.1f} |",
              f"| batching on / off | {batch_on.throughput / max(batch_off.throughput, 1e-9):.2f} |",
              f"| mean text_encoder batch formed by Triton | {served_batch:.1f} |",
              f"| served text search c=16 (req/s) | {served_16.throughput:.1f} |",
              f"| in-process text search, batch {max(1, round(served_batch))} (q/s) | {in_process:.1f} |",
              f"| in-process text search, batch 16 (q/s) | {in_process_16:.1f} |",
              f"| served c=16 / in-process batch 16 | {served_16.throughput / max(in_process_16, 1e-9):.2f} |"]
    report = "\n".join(lines)
    print(report)
    if batch_on.errors or batch_off.errors:
        print(f"errors during the batching comparison; server log tail:\n{log_tail}", file=sys.stderr)
    if args.out:
        args.out.write_text(report + "\n")
    if args.write:
        from loadtest.report import record

        record(f"gpu-{args.device}", report)
    print(f"machine: {machine_line()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
