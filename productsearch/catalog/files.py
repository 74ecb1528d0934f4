"""A generation's catalog on disk: ids, fused embeddings and product metadata, checksummed.

Layout inside a scorer version directory (one generation):
    catalog -> catalog-<sha12>/      symlink, swapped atomically when a new catalog is written
    catalog-<sha12>/embeddings.npy   [N, D] unit-norm fused embeddings
    catalog-<sha12>/products.jsonl   one product per line (id, title, category, price, ...)
    catalog-<sha12>/manifest.json    count, dim, dtype, sha256 of both files, who built it
    catalog-<sha12>/index-<spec>.faiss  optional ANN index over embeddings.npy (large catalogs),
    catalog-<sha12>/index-<spec>.json   with its spec and checksum; it lives and dies with the catalog

A catalog is written to a temporary directory and only becomes visible through the rename of
the `catalog` link, so a reader never sees a half-written catalog. Loading verifies sizes and
checksums, so a truncated or edited catalog is refused with a clear error instead of served.
Only numpy and the standard library at import. Large catalogs are searched through an IVF
index persisted beside the catalog (catalog/ann.py).
`open_catalog` reads a catalog without materialising it: embeddings memory-mapped, ids and
titles packed into two byte buffers (a million products cost ~100 MB, not gigabytes of dicts).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from productsearch.catalog.columns import IdLookup, StringColumn

CATALOG_LINK = "catalog"
METADATA_KEYS = ("id", "title", "category", "color", "pattern", "price")


class CatalogError(RuntimeError):
    """The catalog is missing, incomplete or fails its checksum."""


@dataclass
class Catalog:
    ids: list[str]
    embeddings: np.ndarray
    products: list[dict]
    manifest: dict


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_catalog(version_dir: Path, embeddings: np.ndarray, products: list[dict], info: dict | None = None) -> Path:
    """Write a catalog into `version_dir` atomically and return its directory."""
    version_dir = Path(version_dir)
    version_dir.mkdir(parents=True, exist_ok=True)
    embeddings = np.ascontiguousarray(embeddings, dtype=np.float32)
    if embeddings.ndim != 2 or len(embeddings) != len(products):
        raise CatalogError(f"{len(products)} products but embeddings of shape {embeddings.shape}")
    ids = [str(p["id"]) for p in products]
    if len(set(ids)) != len(ids):
        raise CatalogError("product ids are not unique")
    tmp = Path(tempfile.mkdtemp(prefix=".catalog-tmp-", dir=version_dir))
    try:
        np.save(tmp / "embeddings.npy", embeddings)
        with open(tmp / "products.jsonl", "w") as out:
            for product in products:
                out.write(json.dumps({k: product[k] for k in METADATA_KEYS if k in product}) + "\n")
        manifest = {
            "count": len(products),
            "dim": int(embeddings.shape[1]),
            "dtype": "float32",
            "embeddings_sha256": sha256_file(tmp / "embeddings.npy"),
            "products_sha256": sha256_file(tmp / "products.jsonl"),
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            **(info or {}),
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1))
        for name in ("embeddings.npy", "products.jsonl", "manifest.json"):
            with open(tmp / name, "rb") as handle:
                os.fsync(handle.fileno())
        final = version_dir / f"catalog-{manifest['embeddings_sha256'][:12]}"
        if final.exists():
            shutil.rmtree(final)
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    previous = (version_dir / CATALOG_LINK).resolve() if (version_dir / CATALOG_LINK).is_symlink() else None
    point_catalog(version_dir, final.name)
    if previous is not None and previous != final.resolve() and previous.exists():
        shutil.rmtree(previous, ignore_errors=True)
    return final


def point_catalog(version_dir: Path, target: Path | str) -> None:
    """Atomically point the version's `catalog` link at `target` (a catalog directory; nothing
    is deleted): readers see the old catalog or the new one, never a mix."""
    link_tmp = Path(version_dir) / f".{CATALOG_LINK}.link-tmp"
    link_tmp.unlink(missing_ok=True)
    os.symlink(target, link_tmp)
    os.replace(link_tmp, Path(version_dir) / CATALOG_LINK)


def catalog_exists(version_dir: Path) -> bool:
    return (Path(version_dir) / CATALOG_LINK / "manifest.json").exists()


def load_catalog(version_dir: Path, verify: bool = True) -> Catalog:
    """Read and check a catalog; raise CatalogError naming what is wrong."""
    root = Path(version_dir) / CATALOG_LINK
    manifest = _read_manifest(version_dir, root, verify)
    try:
        embeddings = np.load(root / "embeddings.npy", mmap_mode=None)
    except (ValueError, OSError) as err:
        raise CatalogError(f"cannot read {root / 'embeddings.npy'}: {err}") from None
    products = [json.loads(line) for line in (root / "products.jsonl").read_text().splitlines() if line]
    if embeddings.shape != (manifest["count"], manifest["dim"]) or len(products) != manifest["count"]:
        raise CatalogError(
            f"catalog in {root} is inconsistent: manifest says {manifest['count']}x{manifest['dim']}, "
            f"found embeddings {embeddings.shape} and {len(products)} products"
        )
    return Catalog([p["id"] for p in products], embeddings, products, manifest)


@dataclass
class CatalogView:
    """A verified catalog for serving: embeddings memory-mapped read-only (pages come from the
    page cache and leave with the mapping), ids and titles packed; the filterable metadata as
    columns: category codes (int32, -1 = none) with their names, prices (float32, NaN = none)."""

    root: Path
    ids: StringColumn
    titles: StringColumn
    embeddings: np.ndarray
    manifest: dict
    categories: np.ndarray
    category_names: list[str]
    prices: np.ndarray
    lookup: IdLookup

    def __len__(self) -> int:
        return len(self.ids)


def open_catalog(version_dir: Path, verify: bool = True) -> CatalogView:
    """Like load_catalog, for the scorer: same checks, a fraction of the memory."""
    root = Path(version_dir) / CATALOG_LINK
    manifest = _read_manifest(version_dir, root, verify)
    try:
        embeddings = np.load(root / "embeddings.npy", mmap_mode="r")
    except (ValueError, OSError) as err:
        raise CatalogError(f"cannot read {root / 'embeddings.npy'}: {err}") from None
    ids, titles, categories, prices = [], [], [], []
    codes: dict[str, int] = {}
    with open(root / "products.jsonl", "rb") as lines:
        for line in lines:
            if line.strip():
                product = json.loads(line)
                ids.append(str(product["id"]).encode())
                titles.append(str(product.get("title", "")).encode())
                category = product.get("category")
                categories.append(-1 if category is None else codes.setdefault(str(category), len(codes)))
                price = product.get("price")
                prices.append(float(price) if isinstance(price, (int, float)) else float("nan"))
    if embeddings.shape != (manifest["count"], manifest["dim"]) or len(ids) != manifest["count"]:
        raise CatalogError(
            f"catalog in {root} is inconsistent: manifest says {manifest['count']}x{manifest['dim']}, "
            f"found embeddings {embeddings.shape} and {len(ids)} products"
        )
    return CatalogView(root.resolve(), StringColumn(ids), StringColumn(titles), embeddings, manifest,
                       np.array(categories, dtype=np.int32), list(codes), np.array(prices, dtype=np.float32),
                       IdLookup(ids))


def _read_manifest(version_dir: Path, root: Path, verify: bool) -> dict:
    manifest_path = root / "manifest.json"
    if not manifest_path.exists():
        raise CatalogError(f"no catalog in {version_dir}: index the catalog first (make index)")
    try:
        manifest = json.loads(manifest_path.read_text())
    except ValueError as err:
        raise CatalogError(f"{manifest_path} is not valid JSON: {err}") from None
    for name, key in (("embeddings.npy", "embeddings_sha256"), ("products.jsonl", "products_sha256")):
        path = root / name
        if not path.exists():
            raise CatalogError(f"catalog file missing: {path}")
        if verify and sha256_file(path) != manifest.get(key):
            raise CatalogError(f"catalog file {path} fails its checksum (truncated or modified)")
    return manifest
