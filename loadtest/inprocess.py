"""The served text search done in-process: the same encoder (the same runtime: the build's ONNX
export on the CPU where it has one), fusion and scorer called directly, no server, batch by batch.
The baseline for "served vs in-process" in bench.py.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from productsearch.runtime.scorer import RowQuery
from productsearch.core.vectors import fuse


def load_text_tower(version_dir: Path):
    """The text tower exactly as the text_encoder model loads it (runtime auto, torch's thread count)."""
    from productsearch.encoders.loading import load_text_tower as load

    return load(Path(version_dir), "cpu", "fp32")


def config_parameters(repository: Path, model: str) -> dict:
    from google.protobuf import json_format

    from productsearch.control.model_configs import read_config

    config = json_format.MessageToDict(read_config(repository, model), preserving_proto_field_name=True)
    return {"parameters": config.get("parameters", {})}


def scorer_in_process(repository: Path, generation: int):
    """A ScorerModel over generation N's live catalog (the repository's store) with the served
    config's parameters."""
    from productsearch.runtime.scorer import ScorerModel

    model = ScorerModel()
    model.initialize({
        "model_config": json.dumps(config_parameters(repository, "scorer")), "model_version": str(generation),
        "model_name": "scorer", "model_repository": str(Path(repository) / "scorer"), "model_instance_kind": "CPU",
    })
    return model


class TextSearchPipeline:
    """text -> TextTower -> fuse (text only) -> scorer top-k -> ids, titles; one batch at a time."""

    def __init__(self, repository: Path, generation: int, threads: int):
        import transformers

        from productsearch.core.limits import MAX_TOKENS

        transformers.utils.logging.disable_progress_bar()
        self.max_tokens = MAX_TOKENS
        self.version_dir = Path(repository) / "text_encoder" / str(generation)
        self.scorer = scorer_in_process(repository, generation)
        self.weight = self.scorer.query_weight  # the weight the served scorer fuses queries with
        self.use_threads(threads)

    def use_threads(self, threads: int) -> None:
        """Every step on `threads` threads: the tower is loaded again, since an ONNX Runtime
        session fixes its thread pool when it is created (the served runtime, like the server's)."""
        import torch

        from productsearch.catalog.index.ann import limit_blas_threads

        torch.set_num_threads(threads)
        limit_blas_threads(threads)
        self.threads = threads
        self.tower = load_text_tower(self.version_dir)
        self.runtime = type(self.tower).__name__

    def search(self, texts: list[str], top_k: int = 10):
        text = self.tower.encode(texts, max_length=self.max_tokens)
        present = np.ones(len(texts), dtype=bool)
        fused = fuse(text, np.zeros_like(text), present, ~present, self.weight)
        results = self.scorer.compute([RowQuery(row, top_k) for row in fused])
        index = self.scorer.index()
        return [([index.ids[s] for s in slots], [index.titles[s] for s in slots], scores) for slots, scores in results]

    def throughput(self, texts: list[str], batch_size: int, seconds: float = 10.0, max_queries: int = 100_000) -> dict:
        """Queries/s over consecutive batches of `batch_size` texts (cycled), after one warm-up."""
        self.search(texts[:batch_size])
        done, batches, started, position = 0, 0, time.perf_counter(), 0
        while done < max_queries and time.perf_counter() - started < seconds:
            batch = [texts[(position + i) % len(texts)] for i in range(batch_size)]
            position += batch_size
            self.search(batch)
            done += batch_size
            batches += 1
        elapsed = time.perf_counter() - started
        return {"batch_size": batch_size, "queries": done, "seconds": elapsed, "throughput": done / elapsed,
                "batch_ms": elapsed / batches * 1000}
