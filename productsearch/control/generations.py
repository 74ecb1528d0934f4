"""Generation manifests and checks: is generation N complete and unchanged since it was built?

A generation N is `text_encoder/N`, `image_encoder/N`, `scorer/N` and `catalog_writer/N`: the
encoders, and the catalog's vectors they made (kept in the catalog store, per generation). Its
manifest, `model_repository/generations/N.json`, records what built it, when, and a checksum of
each encoder's files (the store records which checksums made its vectors). The deploy tool
refuses a generation whose files are missing, truncated or differ from the manifest, before it
touches what is serving. The serving pointer (`generations/serving.json`) says which generation a
restarted server brings back, and which one came before (for rollback).
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

from productsearch.control.repository import ENCODERS, GENERATION_MODELS
from productsearch.runtime.generation_settings import MANIFEST_DIR  # shared with the stub

SERVING_FILE = "serving.json"


class GenerationError(RuntimeError):
    """Generation N cannot be served; the message says what is missing or wrong."""


def tree_checksum(root: Path) -> str:
    """sha256 over the relative paths and bytes of every file below `root` (links followed)."""
    digest = hashlib.sha256()
    root = Path(root)
    files = sorted(
        Path(folder) / name
        for folder, dirs, names in os.walk(root, followlinks=True)
        if "__pycache__" not in Path(folder).parts
        for name in names
    )
    for path in files:
        digest.update(str(path.relative_to(root)).encode() + b"\0")
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def encoder_dirs(repository: Path, generation: int) -> dict[str, Path]:
    return {name: Path(repository) / name / str(generation) for name in ENCODERS}


def write_json_atomic(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as handle:
        json.dump(data, handle, indent=1, sort_keys=True)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def manifest_path(repository: Path, generation: int) -> Path:
    return Path(repository) / MANIFEST_DIR / f"{generation}.json"


def read_manifest(repository: Path, generation: int) -> dict:
    path = manifest_path(repository, generation)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise GenerationError(f"generation {generation} has no manifest ({path}): build it with build_models.py") from None
    except ValueError as err:
        raise GenerationError(f"manifest {path} is not valid JSON: {err}") from None


def record_encoders(repository: Path, generation: int, built_by: dict, fusion: dict | None = None,
                    evaluation: dict | None = None) -> dict:
    """After a build: checksum generation N's encoders into its manifest, with how it is served
    (`fusion`: {"text_weight": w}, read by fusion N and scorer N; runtime/generation_settings.py).
    `evaluation`: the build's held-out figures (metric -> value, higher is better; the quality
    gate, control/deploy/quality_gate.py). An unchanged rebuild keeps the manifest. Vectors made by other encoders are re-made at the
    next swap or restore (control/rebuild.py)."""
    checksums = {name: tree_checksum(path) for name, path in encoder_dirs(repository, generation).items()}
    if manifest_path(repository, generation).exists():
        existing = read_manifest(repository, generation)
        if existing.get("encoders") == checksums and existing.get("fusion") == fusion and (
                evaluation is None or existing.get("evaluation") == evaluation):
            return existing
    manifest = {
        "generation": generation,
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "built_by": built_by,
        "encoders": checksums,
    }
    if fusion is not None:
        manifest["fusion"] = dict(fusion)
    if evaluation is not None:
        manifest["evaluation"] = {name: float(value) for name, value in evaluation.items()}
    write_json_atomic(manifest_path(repository, generation), manifest)
    return manifest


def verify_generation(repository: Path, generation: int) -> dict:
    """Raise GenerationError unless generation N is complete and matches its manifest."""
    manifest = read_manifest(repository, generation)
    for name, path in encoder_dirs(repository, generation).items():
        if not path.is_dir():
            raise GenerationError(f"generation {generation}: {path} is missing")
        expected = manifest.get("encoders", {}).get(name)
        if expected is None or tree_checksum(path) != expected:
            raise GenerationError(f"generation {generation}: {name} files differ from the manifest (changed or truncated)")
    return manifest


def read_serving(repository: Path) -> dict:
    """{"generation": N, "previous": M or None}; {} when nothing was deployed yet."""
    try:
        return json.loads((Path(repository) / MANIFEST_DIR / SERVING_FILE).read_text())
    except (FileNotFoundError, ValueError):
        return {}


def write_serving(repository: Path, generation: int, previous: int | None) -> None:
    write_json_atomic(Path(repository) / MANIFEST_DIR / SERVING_FILE, {
        "generation": generation, "previous": previous,
        "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    })


def remove_generation(repository: Path, generation: int) -> None:
    """Generation N's version folders of every model and its manifest (deploy prune; a build that
    stopped half way). Symlinked encoder weights are unlinked, never followed."""
    import shutil

    for model in GENERATION_MODELS:
        shutil.rmtree(Path(repository) / model / str(generation), ignore_errors=True)
    manifest_path(repository, generation).unlink(missing_ok=True)


def clone_encoders(repository: Path, generation: int, source: int) -> dict:
    """Generation N sharing generation `source`'s encoder weights (symlinked): a new generation
    number with the same encoders (tests and benchmarks of the swap)."""
    import shutil

    repository = Path(repository)
    for model in GENERATION_MODELS:
        target = repository / model / str(generation)
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy2(repository / model / str(source) / "model.py", target / "model.py")
        if model in ENCODERS:
            for item in (repository / model / str(source)).iterdir():
                if item.is_dir() and not (target / item.name).exists():
                    (target / item.name).symlink_to(item.resolve(), target_is_directory=True)
                elif item.is_file() and item.name != "model.py":
                    shutil.copy2(item, target / item.name)
    return record_encoders(repository, generation, {"cloned_encoders_of": source},
                           read_manifest(repository, source).get("fusion"))
