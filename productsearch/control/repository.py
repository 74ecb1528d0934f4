"""Layout of the model repository: which generations are built and indexed, and private linked
copies of it for tests and benchmarks.

A generation N is `text_encoder/N`, `image_encoder/N` and `scorer/N` (the catalog indexed with
encoders N): model version N is generation N (model_repository/README.md).
"""
from __future__ import annotations

from pathlib import Path

from productsearch.catalog.files import catalog_exists

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


def refresh_configs(source: Path, target: Path) -> None:
    """Copy every model's config.pbtxt and each existing version's model.py from `source` into
    the linked repository `target` (after a config change, without relinking the weights)."""
    import shutil

    for model_dir in Path(source).iterdir():
        dest = Path(target) / model_dir.name
        if (model_dir / "config.pbtxt").exists() and dest.is_dir():
            shutil.copy2(model_dir / "config.pbtxt", dest / "config.pbtxt")
            for entry in model_dir.glob("[0-9]*/model.py"):
                if (dest / entry.parent.name).is_dir():
                    shutil.copy2(entry, dest / entry.parent.name / "model.py")
