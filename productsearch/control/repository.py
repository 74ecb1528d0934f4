"""Layout of the model repository: which generations are built and indexed, and private linked
copies of it for tests and benchmarks.

A generation N is the version N of every generation-numbered model (the encoders, the query
fusion, the scorer and the catalog writer): model version N is generation N
(model_repository/README.md). `fusion` is per generation because its default weight is the
generation's (runtime/generation_settings.py).
"""
from __future__ import annotations

from pathlib import Path


ENCODERS = ("text_encoder", "image_encoder")
QUERY_MODELS = (*ENCODERS, "fusion")  # stateless per-generation steps, loaded before the catalog is encoded
GENERATION_MODELS = (*QUERY_MODELS, "scorer", "catalog_writer")


def compile_entry_points(model_repository: Path) -> int:
    """Byte-compile every version directory's model.py now, before Triton loads it.

    The python backend stub writes `__pycache__/` into a version directory the first time it
    imports its model.py (it ignores PYTHONDONTWRITEBYTECODE). Triton then sees that model's files
    as modified, and the next ensemble load that names it reloads it from its on-disk config,
    with every version on disk (measured: pinning `search` in a swap reloaded text_encoder 1-4 and
    scorer 1-4, 25-40 s; restore loaded the encoders twice). With the bytecode already there the
    stub writes nothing. Returns how many files it compiled."""
    import importlib.util
    import py_compile

    done = 0
    for source in sorted(Path(model_repository).glob("*/[0-9]*/model.py")):
        cached = Path(importlib.util.cache_from_source(str(source)))
        if cached.exists() and cached.stat().st_mtime >= source.stat().st_mtime:
            continue
        py_compile.compile(str(source), cfile=str(cached), doraise=True)
        done += 1
    return done


def built_generations(model_repository: Path) -> list[int]:
    """Generations whose encoders are both built (weights present), ascending."""
    found = None
    for encoder in ENCODERS:
        root = Path(model_repository) / encoder
        versions = {int(p.name) for p in root.iterdir() if p.is_dir() and p.name.isdigit() and any(
            child.is_dir() for child in p.iterdir())} if root.exists() else set()
        found = versions if found is None else found & versions
    return sorted(found or ())


def latest_generation(model_repository: Path) -> int:
    generations = built_generations(model_repository)
    if not generations:
        raise FileNotFoundError(f"no built generation in {model_repository}: run `make models` (build_models.py)")
    return generations[-1]


def link_repository(source: Path, target: Path, generations: list[int] | None = None, with_catalogs: bool = False) -> Path:
    """A private model repository for tests and benchmarks, so they never disturb a server
    started by `make serve`: configs and model.py copied, built artifacts symlinked, the catalog
    store left out (each server writes its own) unless `with_catalogs`: then each shop's catalog
    is copied (a store is never shared). `generations` limits which version directories of the
    generation-numbered models come along."""
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
        per_generation = model_dir.name in GENERATION_MODELS
        for version_dir in sorted(p for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit()):
            if per_generation and generations is not None and int(version_dir.name) not in generations:
                continue
            out = dest / version_dir.name
            out.mkdir()
            for item in version_dir.iterdir():
                if item.is_file() and not item.is_symlink():
                    shutil.copy2(item, out / item.name)
                else:
                    (out / item.name).symlink_to(item.resolve(), target_is_directory=item.is_dir())
    if with_catalogs:
        copy_catalogs(source, target)
    return Path(target)


def copy_catalogs(source: Path, target: Path) -> None:
    """Every shop's catalog of the store beside `source` into the store beside `target`."""
    from productsearch.catalog.sqlite.bulk import copy_catalog
    from productsearch.catalog.store import catalog_url, list_shops, open_store, store_root

    source_url, target_url = catalog_url(source), catalog_url(target)
    for shop in list_shops(source_url):
        copy_catalog(open_store(source_url, shop, create=False), store_root(target_url)).close()


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
