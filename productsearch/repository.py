"""Layout of the model repository: which generations are built and what can be loaded.

A generation N is `text_encoder/N`, `image_encoder/N` and `scorer/N` (the catalog indexed with
encoders N). Only the standard library: clients import this.
"""
from __future__ import annotations

from pathlib import Path

from productsearch.catalog_store import catalog_exists

ENCODERS = ("text_encoder", "image_encoder")


def built_generations(model_repository: Path) -> list[int]:
    """Generations whose encoders are both built (weights present), ascending."""
    found = None
    for encoder in ENCODERS:
        root = Path(model_repository) / encoder
        versions = {int(p.name) for p in root.iterdir() if p.is_dir() and p.name.isdigit() and any(
            child.is_dir() for child in p.iterdir())} if root.exists() else set()
        found = versions if found is None else found & versions
    return sorted(found or ())


def indexed_generations(model_repository: Path) -> list[int]:
    """Built generations whose catalog is indexed too (servable by `search`)."""
    return [g for g in built_generations(model_repository) if catalog_exists(Path(model_repository) / "scorer" / str(g))]


def latest_generation(model_repository: Path) -> int:
    generations = built_generations(model_repository)
    if not generations:
        raise FileNotFoundError(f"no built generation in {model_repository}: run `make models` (build_models.py)")
    return generations[-1]


def link_repository(source: Path, target: Path, generations: list[int] | None = None,
                    with_catalogs: bool = False) -> Path:
    """A private model repository for tests and benchmarks, so they never disturb a server
    started by `make serve`: configs and model.py copied, built artifacts symlinked, catalogs
    left out unless asked for (callers index their own). `generations` limits which version
    directories of the generation-numbered models come along."""
    import shutil

    manifests = Path(source) / "generations"
    if manifests.is_dir():  # manifests are copied: callers re-index and rewrite them
        (Path(target) / "generations").mkdir(parents=True)
        for manifest in manifests.glob("[0-9]*.json"):
            if generations is None or int(manifest.stem) in generations:
                shutil.copy2(manifest, Path(target) / "generations" / manifest.name)
    for model_dir in sorted(Path(source).iterdir()):
        if not (model_dir / "config.pbtxt").exists():
            continue
        dest = Path(target) / model_dir.name
        dest.mkdir(parents=True)
        shutil.copy2(model_dir / "config.pbtxt", dest / "config.pbtxt")
        per_generation = model_dir.name in (*ENCODERS, "scorer")
        for version_dir in sorted(p for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit()):
            if per_generation and generations is not None and int(version_dir.name) not in generations:
                continue
            out = dest / version_dir.name
            out.mkdir()
            for item in version_dir.iterdir():
                if item.name.startswith(("catalog", ".catalog")) and not with_catalogs:
                    continue
                if item.is_file() and not item.is_symlink():
                    shutil.copy2(item, out / item.name)
                else:
                    (out / item.name).symlink_to(item.resolve(), target_is_directory=item.is_dir())
    return Path(target)


# ------------------------------------------------------------------ device-specific configs

DEVICE_FILE = "device.json"
GPU_MODELS = ("text_encoder", "image_encoder", "scorer")


def config_name(repository: Path) -> str | None:
    """'gpu' when build_models wrote GPU configs (`<model>/configs/gpu.pbtxt`), else None.

    The launcher passes it to tritonserver as --model-config-name and the deploy tools read
    the same file, so every load of a model uses the same config."""
    import json

    path = Path(repository) / DEVICE_FILE
    if not path.exists():
        return None
    return "gpu" if json.loads(path.read_text()).get("device") == "gpu" else None


def config_path(repository: Path, model: str) -> Path:
    name = config_name(repository)
    custom = Path(repository) / model / "configs" / f"{name}.pbtxt" if name else None
    return custom if custom is not None and custom.exists() else Path(repository) / model / "config.pbtxt"


def write_device_configs(repository: Path, device: str) -> None:
    """For `gpu`: encoders and scorer on KIND_GPU with fp16 autocast and preferred batch sizes
    (written beside each committed config.pbtxt, which stays the CPU default)."""
    import json

    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    repository = Path(repository)
    for model in GPU_MODELS:
        target = repository / model / "configs" / "gpu.pbtxt"
        if device != "gpu":
            target.unlink(missing_ok=True)
            continue
        config = text_format.Parse((repository / model / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
        del config.instance_group[:]
        config.instance_group.add(kind=model_config_pb2.ModelInstanceGroup.KIND_GPU, count=1)
        config.parameters["precision"].string_value = "fp16" if model != "scorer" else "fp32"
        config.dynamic_batching.preferred_batch_size[:] = [16, 32]
        config.dynamic_batching.max_queue_delay_microseconds = 1000
        target.parent.mkdir(exist_ok=True)
        target.write_text("# Written by build_models.py --device gpu; config.pbtxt is the CPU default.\n"
                          + text_format.MessageToString(config))
    (repository / DEVICE_FILE).write_text(json.dumps({"device": device}))
