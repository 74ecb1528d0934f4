"""The scorer's own time per batch, in process: `execute()` over batches shaped like the ones the
`search` ensemble sends for text queries, on a demo-sized catalog, with an optional profile.

    python -m loadtest.bench --sections scorer                   # ms per batch at 1, 8 and 16 rows, 3 runs
    python -m loadtest.bench --sections scorer --profile 16      # cProfile of batches of 16, top costs
    git archive BASE productsearch | tar -x -C /tmp/base
    python -m loadtest.bench --sections scorer --compare /tmp/base  # BASE's scorer vs this one, alternately

The catalog: the demo catalog's products (data/demo_catalog/catalog.jsonl: titles, descriptions,
brands, SKUs, prices, stock ...) written to a temporary SQLite store with random clustered
vectors of the served generation's dimensions (its text and image towers' outputs, fused: 1,024
for the demo; only the scorer's overhead is measured here, not the towers). A batch of N rows
is N requests of one row each, as Triton's dynamic batcher hands the scorer the ensemble's
requests: QUERY_EMBEDDING, TOP_K 10 and QUERY_TEXT; every other input is absent, so the
defaults apply (hybrid lexical weight 0.1, weighted fusion). Queries: the workload's full
text set (loadtest/workload.py, 7,560 English and Chinese phrases, mostly new to the lexical cache; `--queries titles`: demo titles).
Timing: median (min-max) over runs of the per-batch mean (each run: new batches of the same kind),
as CPU time of the calling thread (what the scorer spent, BLAS included: one thread) and as wall
time (which on a shared machine also counts whatever else ran).
--compare runs each version in its own process, alternately (a shared machine drifts), and checks
that both answered a fixed set of batches identically (ids, titles, scores, explanations ...):
answers that differ make it exit 1.
"""
from __future__ import annotations

import argparse
import cProfile
import functools
import io
import json
import os
import pickle
import pstats
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

import numpy as np

from loadtest.report import publish
from loadtest.workload import DEMO_CATALOG, ROOT, Workload
from productsearch.catalog.rows import ProductWrite
from productsearch.catalog.store import catalog_url, open_store, register_generation
from productsearch.core.vectors import normalize

BATCHES = (1, 8, 16)


@functools.lru_cache(maxsize=None)
def served_dimensions(version: int = 1) -> tuple[int, int]:
    """(text, image) embedding sizes of the served generation's towers, from one encoding each."""
    from PIL import Image

    from productsearch.encoders.loading import load_image_tower, load_text_tower

    repository = ROOT / "model_repository"
    text = load_text_tower(repository / "text_encoder" / str(version)).encode(["dimension probe"])
    image = load_image_tower(repository / "image_encoder" / str(version)).encode([Image.new("RGB", (64, 64))])
    return text.shape[1], image.shape[1]


class Tensor:
    def __init__(self, name: str, value: np.ndarray):
        self.name, self.value = name, value

    def as_numpy(self) -> np.ndarray:
        return self.value


def install_fake_pb_utils() -> None:
    """A stand-in for triton_python_backend_utils (only inside Triton's stub): requests are dicts
    of arrays, responses keep their tensors."""
    module = types.ModuleType("triton_python_backend_utils")

    class TritonError:
        INVALID_ARG, INTERNAL, UNAVAILABLE, NOT_FOUND = "INVALID_ARG", "INTERNAL", "UNAVAILABLE", "NOT_FOUND"

        def __init__(self, message, code=None):
            self.message, self.code = message, code

    class InferenceResponse:
        def __init__(self, output_tensors=None, error=None):
            self.outputs, self.error = output_tensors or [], error

    module.TritonError, module.InferenceResponse, module.Tensor = TritonError, InferenceResponse, Tensor
    module.get_input_tensor_by_name = lambda request, name: Tensor(name, request[name]) if name in request else None
    sys.modules["triton_python_backend_utils"] = module


def demo_products(catalog: Path, count: int | None = None) -> list[dict]:
    """The demo catalog's products as write_store takes them (image paths and flags left out)."""
    products = []
    for line in catalog.read_text().splitlines()[:count]:
        product = json.loads(line)
        for name in ("image", "heldout", "lang"):
            product.pop(name, None)
        products.append(product)
    return products


def random_vectors(count: int, dim: int, seed: int, clusters: int = 60) -> np.ndarray:
    """Unit vectors around `clusters` random centres (products of a kind lie close together)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim))
    return normalize(centres[rng.integers(0, clusters, count)] + 0.05 * rng.standard_normal((count, dim)))


def write_catalog(repository: Path, products: list[dict], dims: tuple[int, int]) -> None:
    """The products, with random text and image vectors for generation 1, into the store
    beside `repository`, through the writer's own upsert path (the lexical index included)."""
    url = catalog_url(repository)
    register_generation(url, 1, 0.5)
    store = open_store(url)
    text, image = random_vectors(len(products), dims[0], 1), random_vectors(len(products), dims[1], 2)
    with store.transaction() as db:
        store.prefetch(db, 1, [p["id"] for p in products])
        for i, product in enumerate(products):
            fields = {k: v for k, v in product.items() if k not in ("id", "title")}
            store.upsert_one(db, 1, ProductWrite(product["id"], product["title"], fields, b"image", text[i], image[i]),
                             time.time())
    store.close()


def build_scorer(repository: Path, products: list[dict], dims: tuple[int, int]):
    """A ScorerModel (generation 1, default parameters) over a fresh store of these products."""
    from productsearch.runtime.scorer import ScorerModel

    write_catalog(repository, products, dims)
    (repository / "scorer" / "1").mkdir(parents=True)
    model = ScorerModel()
    model.initialize({"model_config": json.dumps({"parameters": {}}), "model_version": "1", "model_name": "scorer",
                      "model_repository": str(repository / "scorer"), "model_instance_kind": "CPU"})
    return model


def text_request(embedding: np.ndarray, text: str, top_k: int = 10) -> dict:
    """One request of the search ensemble's text query to the scorer."""
    return {"QUERY_EMBEDDING": embedding[None].astype(np.float32), "TOP_K": np.array([[top_k]], np.int32),
            "QUERY_TEXT": np.array([[text.encode()]], dtype=object)}


def batches(texts: list[str], size: int, count: int, dim: int, seed: int = 0) -> list[list[dict]]:
    rng = np.random.default_rng(seed)
    embeddings = random_vectors(size * count, dim, seed + 100)
    picks = rng.integers(0, len(texts), size * count)
    requests = [text_request(e, texts[p]) for e, p in zip(embeddings, picks)]
    return [requests[i:i + size] for i in range(0, len(requests), size)]


def answers(responses) -> list:
    """What a batch answered, comparable across versions: (name, values) per output."""
    out = []
    for response in responses:
        if response.error is not None:
            raise RuntimeError(f"the scorer refused a benchmark request: {response.error.message}")
        out.append([(tensor.name, tensor.value.tolist()) for tensor in response.outputs])
    return out


def per_batch_ms(model, work: list[list[dict]]) -> tuple[float, float]:
    """(wall ms, CPU ms of this thread) per batch: the CPU time is what the scorer itself spent
    (its BLAS runs on this thread, one thread), whatever else the machine runs meanwhile."""
    wall, cpu = time.perf_counter(), time.thread_time()
    for requests in work:
        model.execute(requests)
    return (time.perf_counter() - wall) * 1000 / len(work), (time.thread_time() - cpu) * 1000 / len(work)


def profile(model, work: list[list[dict]], top: int, sort: str = "cumulative") -> str:
    profiler = cProfile.Profile()
    profiler.enable()
    for requests in work:
        model.execute(requests)
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats(sort).print_stats(top)
    return out.getvalue()


def measure(args) -> dict:
    """{size: [ms per batch, one per run]} of this process's productsearch; the answers of a
    fixed set of batches go to args.dump."""
    install_fake_pb_utils()
    products = demo_products(args.catalog, args.products)
    texts = Workload.texts_only(args.catalog) if args.queries == "workload" else [p["title"] for p in products]
    dims = served_dimensions()
    dim = sum(dims)
    with tempfile.TemporaryDirectory() as tmp:
        model = build_scorer(Path(tmp), products, dims)
        try:
            if args.profile:
                per_batch_ms(model, batches(texts, args.profile, 5, dim, seed=1))  # warm, as a served scorer is
                print(profile(model, batches(texts, args.profile, args.batches, dim), 30))
                return {}
            dumped, times = {}, {}
            for size in args.sizes:  # the checked answers; this also warms the scorer up
                dumped[size] = [answers(model.execute(requests)) for requests in batches(texts, size, 10, dim, seed=size)]
            for run in range(args.runs):  # new queries each run (distinct titles are then lexical cache misses)
                for size in args.sizes:
                    wall, cpu = per_batch_ms(model, batches(texts, size, args.batches, dim, seed=1000 * (run + 1) + size))
                    times.setdefault(f"{size} cpu", []).append(cpu)
                    times.setdefault(f"{size} wall", []).append(wall)
            if args.dump:
                args.dump.write_bytes(pickle.dumps(dumped))
            return times
        finally:
            model.finalize()


def spread(values: list[float]) -> str:
    return f"{np.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"


def compare(args) -> bool:
    """This checkout against the productsearch package under `args.compare`, alternately, one
    process per run; whether both answered the checked batches identically."""
    versions = {"before": str(args.compare.resolve()), "after": str(Path(__file__).resolve().parents[1])}
    times: dict = {name: {} for name in versions}
    with tempfile.TemporaryDirectory() as tmp:
        for run in range(args.runs):
            for name, root in versions.items():
                child = ["--catalog", str(args.catalog), "--queries", args.queries, "--batches", str(args.batches),
                         "--sizes", *map(str, args.sizes)] + (["--products", str(args.products)] if args.products else [])
                env = dict(os.environ, PYTHONPATH=os.pathsep.join([root, versions["after"]]))
                out = subprocess.run([sys.executable, "-m", "loadtest.bench", "--sections", "scorer", *child, "--runs", "1", "--raw",
                                      "--dump", f"{tmp}/{name}.pkl"], env=env, check=True, capture_output=True,
                                     text=True).stdout
                for size, values in json.loads(out.strip().splitlines()[-1]).items():
                    times[name].setdefault(size, []).extend(values)
        same = Path(f"{tmp}/before.pkl").read_bytes() == Path(f"{tmp}/after.pkl").read_bytes()
        how = "" if same else how_answers_differ(*(pickle.loads(Path(f"{tmp}/{n}.pkl").read_bytes()) for n in versions))
    print(f"scorer execute() per batch, ms: median (min-max) of {args.runs} alternating runs of {args.batches} batches, "
          f"{args.queries} queries")
    print("| rows per batch | CPU before | CPU after | ratio | wall before | wall after | ratio |\n"
          "|---:|---:|---:|---:|---:|---:|---:|")
    for size in args.sizes:
        cells = []
        for clock in ("cpu", "wall"):
            before, after = times["before"][f"{size} {clock}"], times["after"][f"{size} {clock}"]
            cells += [spread(before), spread(after), f"{np.median(before) / np.median(after):.2f}x"]
        print(f"| {size} | " + " | ".join(cells) + " |")
    print(f"identical answers on the checked batches: {'yes' if same else 'NO'}{how}")
    return same


def how_answers_differ(before: dict, after: dict) -> str:
    """Where two versions' answers differ: rows with other ids/titles/order, largest score change."""
    rows = moved = 0
    largest = 0.0
    for size in before:
        for batch_before, batch_after in zip(before[size], after[size]):
            for row_before, row_after in zip(batch_before, batch_after):
                rows += 1
                values_before, values_after = dict(row_before), dict(row_after)
                if values_before.get("PRODUCT_IDS") != values_after.get("PRODUCT_IDS"):
                    moved += 1
                elif values_before.get("SCORES"):
                    largest = max(largest, float(np.max(np.abs(np.subtract(values_before["SCORES"], values_after["SCORES"])))))
    return f" ({moved} of {rows} rows answered other products or another order; largest score change elsewhere {largest:.2g})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.bench --sections scorer", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--catalog", type=Path, default=DEMO_CATALOG, help="the demo catalog JSONL")
    parser.add_argument("--products", type=int, default=None, help="the first N products (default: all)")
    parser.add_argument("--queries", choices=("workload", "titles"), default="workload")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--batches", type=int, default=40, help="batches per run and size")
    parser.add_argument("--sizes", type=int, nargs="+", default=list(BATCHES))
    parser.add_argument("--profile", type=int, metavar="SIZE", help="profile batches of SIZE rows instead")
    parser.add_argument("--dump", type=Path, help="write the answers of the checked batches here (pickle)")
    parser.add_argument("--compare", type=Path, metavar="DIR",
                        help="also run the productsearch package under DIR (e.g. `git archive BASE productsearch`), alternately")
    parser.add_argument("--raw", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--write", action="store_true", help="record the table in BENCHMARKS.md")
    args = parser.parse_args(argv)
    if args.compare:
        return 0 if compare(args) else 1
    times = measure(args)
    if args.raw:
        print(json.dumps(times))
    elif times:
        rows = ["| rows per batch | CPU ms per batch | wall ms per batch | CPU ms per row |", "|---:|---:|---:|---:|"]
        rows += [f"| {size} | {spread(times[f'{size} cpu'])} | {spread(times[f'{size} wall'])} | "
                 f"{np.median(times[f'{size} cpu']) / size:.2f} |" for size in args.sizes]
        publish("scorer", "The scorer's own time per batch (in process)", "loadtest.bench --sections scorer", argv,
                f"the scorer's execute() over the {len(demo_products(args.catalog, args.products))} demo products with "
                f"random clustered vectors of the served dimensions ({sum(served_dimensions())}-d fused), text-query "
                f"batches as the search ensemble sends them (hybrid lexical at the default weight), {args.queries} "
                f"queries (mostly new to the lexical cache); median (min-max) of {args.runs} runs of {args.batches} "
                "batches; CPU = the calling thread's CPU time (one BLAS thread, as served)", "\n".join(rows), args.write)
    return 0

