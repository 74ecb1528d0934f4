"""The scorer's catalog on disk: ids, fused embeddings and product metadata, checksummed.

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
Only numpy and the standard library at import: the indexing client imports this without torch;
faiss is imported only by the index functions.

Large catalogs (EXACT_MAX_PRODUCTS and up) are searched through an IVF index whose vectors are
stored as fp16 (faiss IndexIVFScalarQuantizer, QT_fp16): half the memory of the fp32 matrix and a
scan of nprobe/nlist of it per query, measured against exact search (loadtest/bench.py).
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

CATALOG_LINK = "catalog"
EXACT_MAX_PRODUCTS = 100_000  # from here on the scorer searches an IVF index (CPU); below, exact
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
    link_tmp = version_dir / f".{CATALOG_LINK}.link-tmp"
    link_tmp.unlink(missing_ok=True)
    os.symlink(final.name, link_tmp)
    previous = (version_dir / CATALOG_LINK).resolve() if (version_dir / CATALOG_LINK).is_symlink() else None
    os.replace(link_tmp, version_dir / CATALOG_LINK)
    if previous is not None and previous != final.resolve() and previous.exists():
        shutil.rmtree(previous, ignore_errors=True)
    return final


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


# ------------------------------------------------------------------ lean reading (the scorer)

class StringColumn:
    """Many short strings packed into one bytes buffer plus offsets; `take` returns BYTES rows."""

    def __init__(self, values: list[bytes]):
        lengths = np.fromiter((len(v) for v in values), dtype=np.int64, count=len(values))
        self.offsets = np.zeros(len(values) + 1, dtype=np.int64)
        np.cumsum(lengths, out=self.offsets[1:])
        self.buffer = b"".join(values)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, row: int) -> bytes:
        return self.buffer[self.offsets[row]:self.offsets[row + 1]]

    def take(self, index: np.ndarray) -> np.ndarray:
        """An object array of bytes shaped like `index` (what a BYTES output tensor takes)."""
        index = np.asarray(index)
        flat = [self.buffer[self.offsets[i]:self.offsets[i + 1]] for i in index.reshape(-1).tolist()]
        out = np.empty(len(flat), dtype=object)
        out[:] = flat
        return out.reshape(index.shape)

    @property
    def nbytes(self) -> int:
        return len(self.buffer) + self.offsets.nbytes


class IdLookup:
    """Product id -> catalog row, for filters and recommendations: the ids sorted in one
    fixed-width bytes array (searchsorted), ~20 bytes a product instead of a dict's ~100."""

    def __init__(self, ids: list[bytes]):
        values = np.array(ids, dtype=bytes)
        self.order = np.argsort(values, kind="stable")
        self.sorted = values[self.order]

    def rows(self, ids: list[bytes]) -> tuple[np.ndarray, list[bytes]]:
        """(rows of the known ids, in order; the unknown ids)."""
        rows, unknown = [], []
        width = self.sorted.dtype.itemsize
        for product_id in ids:
            if 0 < len(product_id) <= width:
                at = int(np.searchsorted(self.sorted, product_id))
                if at < len(self.sorted) and self.sorted[at] == product_id:
                    rows.append(int(self.order[at]))
                    continue
            unknown.append(product_id)
        return np.array(rows, dtype=np.int64), unknown


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


# ------------------------------------------------------------------ ANN index (large catalogs)

@dataclass(frozen=True)
class IndexSpec:
    """IVF over fp16-coded vectors. nlist 0: about sqrt(N) lists (1,000 for a million)."""

    nlist: int = 0
    train_per_list: int = 40  # k-means sample: 40 x nlist rows (faiss warns under 39)
    niter: int = 10
    seed: int = 1234

    def lists_for(self, count: int) -> int:
        return self.nlist or int(min(max(round(count ** 0.5), 16), 8192))

    def name(self, count: int) -> str:
        return f"ivf{self.lists_for(count)}-sqfp16-s{self.seed}"


def index_path(catalog_root: Path, spec: IndexSpec, count: int) -> Path:
    return Path(catalog_root) / f"index-{spec.name(count)}.faiss"


def build_index(catalog_root: Path, embeddings: np.ndarray, spec: IndexSpec = IndexSpec(), threads: int | None = None,
                persist: bool = True, log=lambda *a: None):
    """Train and fill an IVF-SQfp16 inner-product index over `embeddings` (rows in order, so
    labels are row numbers); written atomically beside the catalog with a checksummed sidecar
    unless persist is False or the directory is read-only."""
    import faiss

    if threads:
        faiss.omp_set_num_threads(threads)
    count, dim = embeddings.shape
    nlist = spec.lists_for(count)
    started = time.monotonic()
    rng = np.random.default_rng(spec.seed)
    sample = np.sort(rng.choice(count, size=min(count, spec.train_per_list * nlist), replace=False))
    quantizer = faiss.IndexFlatIP(dim)
    index = faiss.IndexIVFScalarQuantizer(quantizer, dim, nlist, faiss.ScalarQuantizer.QT_fp16,
                                          faiss.METRIC_INNER_PRODUCT, False)
    index.cp.niter = spec.niter
    index.cp.seed = spec.seed
    index.train(np.ascontiguousarray(embeddings[sample], dtype=np.float32))
    index.quantizer_trains_alone = 0
    log(f"index: trained {nlist} lists on {len(sample)} rows ({time.monotonic() - started:.1f} s)")
    for start in range(0, count, 65536):
        index.add(np.ascontiguousarray(embeddings[start:start + 65536], dtype=np.float32))
    index.own_fields = True
    quantizer.this.disown()
    seconds = time.monotonic() - started
    log(f"index: {count} vectors added ({seconds:.1f} s)")
    if persist:
        path = index_path(catalog_root, spec, count)
        try:
            tmp = path.with_name(f".{path.name}.tmp")
            faiss.write_index(index, str(tmp))
            with open(tmp, "rb") as handle:
                os.fsync(handle.fileno())
            sidecar = {"spec": spec.__dict__, "nlist": nlist, "count": count, "dim": dim, "build_seconds": round(seconds, 1),
                       "sha256": sha256_file(tmp), "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
            path.with_suffix(".json").write_text(json.dumps(sidecar, indent=1))
            os.replace(tmp, path)
        except OSError as err:  # a read-only repository still serves, it just rebuilds next load
            log(f"index: not persisted ({err})")
    return index


def load_index(catalog_root: Path, count: int, spec: IndexSpec = IndexSpec(), verify: bool = True):
    """The persisted index for this catalog and spec, or None if there is none (or it fails its
    checksum or does not match the catalog)."""
    import faiss

    path = index_path(catalog_root, spec, count)
    sidecar_path = path.with_suffix(".json")
    if not path.exists() or not sidecar_path.exists():
        return None
    try:
        sidecar = json.loads(sidecar_path.read_text())
    except ValueError:
        return None
    if sidecar.get("count") != count or (verify and sha256_file(path) != sidecar.get("sha256")):
        return None
    index = faiss.read_index(str(path))
    return index if index.ntotal == count else None
