"""The catalog on Milvus (catalog/milvus/schema.py has the layout): the store interface of the
embedded store (sqlite/store.py: SqliteCatalog) for one shop, so the write models, the rebuild and
the catalog CLI work unchanged, and the scorer searches Milvus in place (catalog/milvus/search.py)
instead of holding the catalog in its own memory.

Consistency: every call is made at Milvus's Strong consistency, so a search sees every write
Milvus acknowledged before the search started. A write's SEQUENCE is the time (microseconds,
strictly increasing in this process) taken AFTER Milvus acknowledged it; a search's
CATALOG_SEQUENCE is the time it started. So an answer reflects every write whose SEQUENCE is
below its CATALOG_SEQUENCE, and MIN_SEQUENCE waits until the clock has passed it (across
hosts, within their clock skew: keep them on NTP).
A request is all-or-nothing within the batch (its rows are buffered, a bad row drops the whole
request's rows) and the batch is flushed in one upsert and one delete per collection; Milvus has
no multi-row transaction, so a flush that fails halfway acknowledges nothing and the client
resends (upserts and deletes are idempotent). The write fence of a generation swap is checked
before and after the flush: a write that raced the swap is refused (UNAVAILABLE: send again).
Images are content-addressed files in the `images` folder (a shared volume: catalog/image_files.py).
"""
from __future__ import annotations

import json
import time
from contextlib import contextmanager

import numpy as np

from productsearch.catalog.image_files import ImageFiles
from productsearch.catalog.milvus.client import client_for, point_alias, stamp
from productsearch.catalog.milvus.generations import Generations
from productsearch.catalog.milvus.schema import (OUTPUT_FIELDS, MilvusUrl, document_terms, meta_schema, number_column,
                                                 parse_url, query_terms, term_column)
from productsearch.catalog.search_settings import SearchSettings
from productsearch.catalog.records import NUMBER_FIELDS, TERM_FIELDS, RecordError, check_fields
from productsearch.catalog.rows import (DEFAULT_SHOP, FencedWrite, ProductWrite, StoreError, UnknownProduct,
                                        UnknownShop, check_shop)
from productsearch.core.vectors import fuse

PENDING = -1  # what a write returns inside a batch; committed() turns it into the batch's SEQUENCE


class Batch:
    """The buffered writes of one batch: (collection, pk) -> row to upsert, or None to delete;
    what it read (`known`: the same keys -> stored row or None), and its writer's generation,
    closed lists and collections, read once per batch."""

    def __init__(self):
        self.rows: dict[tuple[str, str], dict | None] = {}
        self.known: dict[tuple[str, str], dict | None] = {}
        self.sequence = PENDING
        self.generation: int | None = None
        self.closed: dict = {}
        self.collections: list[int] | None = None


class MilvusCatalog(Generations, SearchSettings):
    """The catalog of one shop in the Milvus at `url` (a parsed MilvusUrl)."""

    searched_in_place = True

    def __init__(self, url: MilvusUrl, shop: str = DEFAULT_SHOP, create: bool = True):
        self.url, self.shop = url, check_shop(shop)
        self.client = client_for(url)
        self.images = ImageFiles(url.images) if url.images else None
        self._ensure_meta()
        if self.meta("shop") is None:
            if not create:
                raise UnknownShop(shop)
            self.set_meta("shop", {"created_at": time.time()})

    # ------------------------------------------------------------------ collections

    def _ensure_meta(self) -> None:
        if not self.client.has_collection(self.url.meta):
            schema, params = meta_schema(self.client)
            self.client.create_collection(self.url.meta, schema=schema, index_params=params, consistency_level="Strong")

    # ------------------------------------------------------------------ meta

    def _meta_get(self, shop: str, key: str, default=None):
        rows = self.client.get(self.url.meta, ids=[f"{shop}/{key}"], output_fields=["value"])
        return default if not rows else json.loads(rows[0]["value"])

    def _meta_put(self, shop: str, key: str, value) -> None:
        self.client.upsert(self.url.meta, [{"key": f"{shop}/{key}", "shop": shop, "value": json.dumps(value),
                                            "unused": [0.0, 0.0]}])

    def meta(self, key: str, default=None):
        return self._meta_get(self.shop, key, default)

    def set_meta(self, key: str, value, db=None) -> None:
        self._meta_put(self.shop, key, value)

    def global_meta(self, key: str, default=None):
        return self._meta_get("*", key, default)

    def closed_values(self) -> dict[str, list[str]]:
        return self.meta("closed_values", {})

    def _set_logged(self, key: str, value) -> int:
        """A meta value searches read (search_settings.py); its sequence is the time after Milvus took it."""
        self.set_meta(key, value)
        return stamp()

    def write_generation(self) -> int | None:
        return self.global_meta("write_generation")

    # ------------------------------------------------------------------ writes

    @contextmanager
    def transaction(self, write: bool = True):
        """A batch of writes, flushed when the block ends (nothing is written if it raises)."""
        batch = Batch()
        yield batch
        if write and batch.rows:
            self._flush(batch)

    @contextmanager
    def savepoint(self, batch: Batch):
        kept = dict(batch.rows)
        try:
            yield
        except BaseException:
            batch.rows = kept
            raise

    def committed(self, batch: Batch, sequences: list[int]) -> list[int]:
        return [batch.sequence if s == PENDING else s for s in sequences]

    def _fence(self, generation: int) -> None:
        fence = self.write_generation()
        if fence is not None and fence != generation:
            raise FencedWrite(f"catalog writes moved from generation {generation} to {fence} during this request; send it again")

    def _flush(self, batch: Batch) -> None:
        generations = {int(name.rsplit("_g", 1)[1]) for name, _ in batch.rows}
        for collection in sorted({name for name, _ in batch.rows}):
            rows = [row for (name, _), row in batch.rows.items() if name == collection and row is not None]
            gone = [pk for (name, pk), row in batch.rows.items() if name == collection and row is None]
            if rows:
                self.client.upsert(collection, rows)
            if gone:
                self.client.delete(collection, ids=gone)
        if batch.generation is not None and batch.generation in generations:
            self._fence(batch.generation)  # after: a swap that started during the flush refuses this batch
        batch.sequence = stamp()

    def _pk(self, pid: str) -> str:
        return f"{self.shop}/{pid}"

    def prefetch(self, batch: Batch, generation: int, ids: list[str]) -> None:
        """Read the stored rows of a batch's products in one call (instead of one per write)."""
        collection = self.url.collection(generation)
        keys = [self._pk(pid) for pid in dict.fromkeys(ids) if (collection, self._pk(pid)) not in batch.known]
        if not keys or not self.client.has_collection(collection):
            return
        found = {r["pk"]: r for r in self.client.get(collection, ids=keys, output_fields=OUTPUT_FIELDS)}
        batch.known.update({(collection, key): found.get(key) for key in keys})

    def _current(self, batch: Batch, collection: str, pid: str) -> dict | None:
        key = (collection, self._pk(pid))
        if key in batch.rows:
            return batch.rows[key]
        if key not in batch.known:
            rows = self.client.get(collection, ids=[key[1]], output_fields=OUTPUT_FIELDS) \
                if self.client.has_collection(collection) else []
            batch.known[key] = rows[0] if rows else None
        return batch.known[key]

    def _row(self, pid: str, title: str, fields: dict, image_sha: str | None, has_image: bool, content_seq: int,
             seq: int, now: float, vector: np.ndarray) -> dict:
        fields_json = json.dumps(fields, ensure_ascii=False)
        words, grams = document_terms(title, fields_json)
        row = {"pk": self._pk(pid), "shop": self.shop, "id": pid, "title": title, "fields": fields, "image_sha": image_sha,
               "has_image": has_image, "content_seq": content_seq, "seq": seq, "updated_at": now,
               "words": words, "grams": grams, "vector": np.asarray(vector, np.float32).tolist()}
        for name in TERM_FIELDS:
            row[term_column(name)] = None if fields.get(name) is None else str(fields[name])
        for name in NUMBER_FIELDS:
            row[number_column(name)] = None if fields.get(name) is None else float(fields[name])
        return row

    def upsert_one(self, batch: Batch, generation: int, write: ProductWrite, now: float) -> int:
        """Buffer one product (replacing the shop's product of that id); PENDING until the flush."""
        if batch.generation is None:
            self._fence(generation)
            batch.generation = generation
            batch.closed = self.closed_values()
        check_fields(write.id, write.fields, batch.closed)
        collection = self.url.collection(generation)
        old = self._current(batch, collection, write.id)
        if old is None and not write.title:
            raise RecordError(f"product {write.id!r}: TITLE is required for a new product")
        title = write.title or old["title"]
        image_sha = old["image_sha"] if old is not None and write.image is None else None
        if write.image:
            if self.images is None:
                raise StoreError("this Milvus catalog has no image folder (add ?images=/shared/dir to its URL)")
            image_sha = self.images.put(write.image)
        kept_text, kept_image = self.modalities(old, generation) if old is not None else (None, None)
        text = write.text_vector if write.text_vector is not None else kept_text
        image = write.image_vector if write.image is not None else kept_image
        if text is None:
            raise StoreError(f"product {write.id!r}: no text vector for generation {generation} to keep")
        has_image = image is not None
        fused = fuse(np.asarray(text, np.float32)[None], np.asarray(image if has_image else text, np.float32)[None],
                     np.ones(1, bool), np.array([has_image]), self.text_weight(generation))[0]
        seq = stamp()
        if batch.collections is None:
            self.ensure_generation(generation, len(fused))
            batch.collections = self.generations()
        batch.rows[(collection, self._pk(write.id))] = self._row(write.id, title, write.fields, image_sha, has_image,
                                                                 seq, seq, now, fused)
        for other in batch.collections:
            if other != generation:  # its vectors are stale now: a rebuild of `other` re-encodes the product
                batch.rows[(self.url.collection(other), self._pk(write.id))] = None
        return PENDING

    def _everywhere(self, batch: Batch, pid: str) -> dict[str, dict]:
        found = {}
        for generation in self.generations():
            name = self.url.collection(generation)
            row = self._current(batch, name, pid)
            if row is not None:
                found[name] = row
        return found

    def update_one(self, batch: Batch, pid: str, fields: dict, now: float) -> int:
        """Merge fields into the product in every generation that has it (no re-encoding)."""
        found = self._everywhere(batch, pid)
        if not found:
            raise UnknownProduct(f"unknown product id {pid!r} (update_fields changes existing products only)")
        closed = self.closed_values()
        seq = stamp()
        for name, row in found.items():
            merged = {k: v for k, v in {**row["fields"], **fields}.items() if v is not None}
            check_fields(pid, merged, closed)
            batch.rows[(name, self._pk(pid))] = self._row(pid, row["title"], merged, row["image_sha"], row["has_image"],
                                                          row["content_seq"], seq, now, row["vector"])
        return PENDING

    def delete_one(self, batch: Batch, pid: str, now: float) -> int:
        found = self._everywhere(batch, pid)
        if not found:
            raise UnknownProduct(f"unknown product id {pid!r} (nothing to delete)")
        for name in found:
            batch.rows[(name, self._pk(pid))] = None
        return PENDING

    # ------------------------------------------------------------------ reads

    def _scan(self, collection: str, fields: list[str], where: str = "", batch_size: int = 2000):
        expression = f'shop == "{self.shop}"' + (f" and ({where})" if where else "")
        iterator = self.client.query_iterator(collection, batch_size=batch_size, filter=expression, output_fields=["pk", *fields])
        try:
            while rows := iterator.next():
                yield from rows
        finally:
            iterator.close()

    def head(self) -> int:
        return stamp()

    def serving(self) -> str | None:
        """The collection taking writes (the fence's generation, else the newest), or None."""
        generation = self.write_generation()
        if generation is None:
            known = self.generations()
            generation = known[-1] if known else None
        return None if generation is None else self.url.collection(generation)

    def count(self, collection: str | None = None) -> int:
        collection = collection or self.serving()
        if collection is None or not self.client.has_collection(collection):
            return 0
        rows = self.client.query(collection, filter=f'shop == "{self.shop}"', output_fields=["count(*)"])
        return int(rows[0]["count(*)"])

    def lexical(self, text: str, limit: int, generation: int | None = None) -> list[tuple[str, float]]:
        """(id, BM25) best first: 3 x BM25 over words + 1 x BM25 over grams, as the embedded store weighs them."""
        collection = self.url.collection(generation) if generation is not None else self.serving()
        if collection is None or limit <= 0 or not self.client.has_collection(collection):
            return []
        scores: dict[str, float] = {}
        for terms, field, weight in zip(query_terms(text), ("words", "grams"), (3.0, 1.0)):
            if not terms:
                continue
            hits = self.client.search(collection, [terms], anns_field=f"{field}_bm25", limit=limit,
                                      filter=f'shop == "{self.shop}"', output_fields=["id"])[0]
            for hit in hits:  # milvus-lite reports BM25 as a negative distance, Milvus as a positive score
                scores[hit["entity"]["id"]] = scores.get(hit["entity"]["id"], 0.0) + weight * abs(float(hit["distance"]))
        return sorted(scores.items(), key=lambda item: (-item[1], item[0]))[:limit]

    def product(self, pid: str) -> dict | None:
        return self.products([pid]).get(pid)

    def products(self, pids: list[str]) -> dict[str, dict]:
        """The records of those of `pids` that exist, by id, in one get."""
        collection = self.serving()
        rows = self.client.get(collection, ids=[self._pk(pid) for pid in pids],
                               output_fields=OUTPUT_FIELDS[1:-1]) if collection and pids else []
        return {row["id"]: {"id": row["id"], "title": row["title"], "fields": row["fields"],
                            "has_image": bool(row["has_image"]), "sequence": row["seq"], "updated_at": row["updated_at"]}
                for row in rows}

    def info(self) -> dict:
        generations = {str(g): self.count(self.url.collection(g)) for g in self.generations()}
        return {"shop": self.shop, "engine": "milvus", "uri": self.url.uri, "products": self.count(), "sequence": stamp(),
                "vectors": {g: n for g, n in generations.items() if n}, "write_generation": self.write_generation(),
                "closed_values": self.closed_values()}

    def close(self) -> None:
        """The client is shared by the process's stores (client_for)."""


def open_milvus(url: str, shop: str, create: bool = True) -> MilvusCatalog:
    return MilvusCatalog(parse_url(url), shop, create)


def milvus_shops(url: str) -> list[str]:
    parsed = parse_url(url)
    client = client_for(parsed)
    if not client.has_collection(parsed.meta):
        return []
    rows = client.query(parsed.meta, filter='shop != "*"', output_fields=["key", "shop"])
    return sorted({r["shop"] for r in rows if r["key"] == f"{r['shop']}/shop"})


def fence_milvus(url: str, generation: int) -> None:
    """The write fence (every shop) and the `<prefix>_live` alias moved to generation N."""
    store = MilvusCatalog(parse_url(url), DEFAULT_SHOP)
    previous = store.write_generation()
    if previous is not None and previous != generation:  # where the swap's last rebuild pass copies from
        store._meta_put("*", "previous_write_generation", previous)
    store._meta_put("*", "write_generation", generation)
    if store.client.has_collection(store.url.collection(generation)):
        point_alias(store.client, store.url, generation)


def register_fusion(url: str, generation: int, text_weight: float) -> None:
    """Generation N's text weight, read by writes that keep a modality and by the rebuild."""
    store = MilvusCatalog(parse_url(url), DEFAULT_SHOP)
    known = store.global_meta(f"fusion:{generation}")
    if known is None or abs(float(known) - text_weight) > 1e-9:
        store._meta_put("*", f"fusion:{generation}", float(text_weight))
