"""A shop's generations in Milvus (part of catalog/milvus/store.py's MilvusCatalog): one collection
per generation, made by the first write or rebuild of it; its fusion weight registered by its
models; the rebuild of a swap - the products of the write generation that generation N has no
current vectors for (re-encoded by control/rebuild.py through N's encoders), and N's vectors
written back beside the record copied from the write generation; and the products with photos
an adaptation trains on (training/adapt.py).
"""
from __future__ import annotations

import numpy as np

from productsearch.catalog.milvus.client import point_alias, stamp
from productsearch.catalog.milvus.schema import OUTPUT_FIELDS, product_indexes, product_schema
from productsearch.catalog.rows import ChangeSet, ProductRow, StoreError
from productsearch.core.vectors import fuse


class Generations:
    """Mixed into MilvusCatalog (self.client, self.url, self.shop, meta and rows come from it)."""

    def generations(self) -> list[int]:
        prefix = f"{self.url.prefix}_g"
        return sorted(int(name[len(prefix):]) for name in self.client.list_collections()
                      if name.startswith(prefix) and name[len(prefix):].isdigit())

    def ensure_generation(self, generation: int, dim: int) -> str:
        name = self.url.collection(generation)
        if not self.client.has_collection(name):
            self.client.create_collection(name, schema=product_schema(self.client, dim),
                                          index_params=product_indexes(self.client, self.url), consistency_level="Strong")
            if self.write_generation() == generation:
                point_alias(self.client, self.url, generation)
        return name

    def dim(self, generation: int) -> int | None:
        name = self.url.collection(generation)
        if not self.client.has_collection(name):
            return None
        field = next(f for f in self.client.describe_collection(name)["fields"] if f["name"] == "vector")
        return int(field["params"]["dim"])

    def text_weight(self, generation: int) -> float:
        """Generation N's fusion weight (read once: it belongs to N's towers, as N's manifest says)."""
        weights = self.__dict__.setdefault("_weights", {})
        if generation not in weights:
            weight = self.global_meta(f"fusion:{generation}")
            if weight is None:
                raise StoreError(f"generation {generation}'s fusion weight is not registered in {self.url.uri} "
                                 "(its scorer or writer registers it when it loads)")
            weights[generation] = float(weight)
        return weights[generation]

    def rebuild_source(self, generation: int) -> int | None:
        """The generation whose records a rebuild of N copies: the write generation, or once the
        swap's fence has moved the writes to N, the one they were moved from (its last writes)."""
        source = self.write_generation()
        if source == generation:
            source = self.global_meta("previous_write_generation")
        if source is None or source == generation or not self.client.has_collection(self.url.collection(source)):
            return None
        return source

    def needing_vectors(self, generation: int, limit: int = 1000) -> list[tuple[str, int, str, bytes | None]]:
        """(id, content_seq, title, image bytes) of the products of the rebuild's source
        generation that generation N has no current vectors for."""
        source = self.rebuild_source(generation)
        if source is None:
            return []
        have = {r["pk"]: r["content_seq"] for r in self._scan(self.url.collection(generation), ["content_seq"])} \
            if self.client.has_collection(self.url.collection(generation)) else {}
        todo = []
        for row in self._scan(self.url.collection(source), ["content_seq", "id", "title", "image_sha"]):
            if have.get(row["pk"]) != row["content_seq"]:
                todo.append((row["id"], row["content_seq"], row["title"],
                             self.images.get(row["image_sha"]) if row["image_sha"] and self.images else None))
                if len(todo) >= limit:
                    break
        return todo

    def products_with_photos(self) -> list[dict]:
        """Every product that has a photo, by id: {id, title, fields, image (bytes)} (what adapt
        trains on), from the collection taking writes."""
        collection = self.serving()
        if collection is None or self.images is None or not self.client.has_collection(collection):
            return []
        rows = self._scan(collection, ["id", "title", "fields", "image_sha"], where="has_image == true")
        out = [{"id": r["id"], "title": r["title"], "fields": r["fields"], "image": self.images.get(r["image_sha"])}
               for r in rows if r["image_sha"]]
        return sorted((p for p in out if p["image"]), key=lambda p: p["id"])

    def put_vectors(self, generation: int, vectors: list[tuple[str, int, np.ndarray, np.ndarray | None]]) -> int:
        """Generation N's vectors for products as of their content_seq; changed ones are skipped.
        Milvus has no transaction around the read and the write: a product that update_fields or
        delete_products (which write every generation) changed in between is taken out of N
        again, so the next pass copies it as it is now."""
        source = self.rebuild_source(generation)
        if source is None or not vectors:
            return 0
        source = self.url.collection(source)
        weight, rows = self.text_weight(generation), []
        keys = [self._pk(v[0]) for v in vectors]
        # the records as they are now, in one read (a get per product costs a round trip each)
        current = {row["pk"]: row for row in self.client.get(source, ids=keys, output_fields=OUTPUT_FIELDS)}
        for pid, content_seq, text, image in vectors:
            row = current.get(self._pk(pid))
            if row is None or row["content_seq"] != content_seq:
                continue
            fused = fuse(np.asarray(text, np.float32)[None], np.asarray(image if image is not None else text, np.float32)[None],
                         np.ones(1, bool), np.array([image is not None]), weight)[0]
            rows.append(self._row(pid, row["title"], row["fields"], row["image_sha"], image is not None, content_seq,
                                  row["seq"], row["updated_at"], fused))
        if not rows:
            return 0
        target = self.ensure_generation(generation, len(rows[0]["vector"]))
        self.client.upsert(target, rows)
        after = {row["pk"]: row["seq"] for row in self.client.get(source, ids=[r["pk"] for r in rows], output_fields=["seq"])}
        changed = [r["pk"] for r in rows if after.get(r["pk"]) != r["seq"]]
        if changed:
            self.client.delete(target, ids=changed)
        return len(rows) - len(changed)

    def drop_generation(self, generation: int) -> None:
        """Generation N's vectors of this shop (its collection is shared by every shop)."""
        name = self.url.collection(generation)
        if self.client.has_collection(name):
            self.client.delete(name, filter=f'shop == "{self.shop}"')

    def modalities(self, row: dict, generation: int) -> tuple[np.ndarray, np.ndarray | None]:
        """A stored product's (text, image) vectors, recovered from its fused vector."""
        w = self.text_weight(generation)
        vector = np.asarray(row["vector"], np.float32)
        half = len(vector) // 2
        if not 0.0 < w < 1.0:
            raise StoreError(f"generation {generation} fuses at text weight {w}: a write must send both modalities")
        return vector[:half] / np.sqrt(w), (vector[half:] / np.sqrt(1 - w) if row["has_image"] else None)

    def product_row(self, row: dict, generation: int) -> ProductRow:
        text, image = self.modalities(row, generation)
        return ProductRow(row["id"], row["title"], row["fields"], text, image, row["updated_at"])

    def snapshot(self, generation: int, chunk: int = 20_000):
        head, rows = stamp(), []
        name = self.url.collection(generation)
        if self.client.has_collection(name):
            for row in self._scan(name, OUTPUT_FIELDS[1:]):
                rows.append(self.product_row(row, generation))
                if len(rows) >= chunk:
                    yield ChangeSet(head, rows)
                    rows = []
        yield ChangeSet(head, rows)

    def changes(self, generation: int, after: int, limit: int = 100_000):
        raise StoreError("the Milvus catalog is searched in place; it has no log to follow")
