"""The in-memory search index of one shop's catalog for one generation, derived from the store and
kept current by applying its changes.

Products live in "slots": a row of the fused matrix, its id and title, and its business fields
as columns (term fields as integer codes, numbers as float32, NaN = none) that filters, facets
and boosts read without touching the store. A deleted product's slot is freed (masked out at
once, so it is never returned again) and reused; the IVF index (large catalogs) is updated slot
by slot. When too much has changed (many free slots, IVF lists trained on another catalog, the
catalog crossed the exact/IVF threshold) `needs_rebuild` says so and the scorer builds a fresh
index from the store in the background, catches it up and swaps it in.
Changes are applied under `lock`; the scorer searches under it too, so an answer always reflects
exactly the prefix of the log up to `applied`.
"""
from __future__ import annotations

import threading

import numpy as np

from productsearch.catalog.index.ann import DEFAULT_NPROBE, EXACT_MAX_PRODUCTS, ExactSearch, IndexSpec, IvfSearch
from productsearch.catalog.records import NUMBER_FIELDS, TERM_FIELDS
from productsearch.catalog.rows import ChangeSet, ProductRow
from productsearch.core.vectors import DEFAULT_TEXT_WEIGHT, fuse, normalize

NUMBER_COLUMNS = (*NUMBER_FIELDS, "updated_at")


class TermColumn:
    """A string field as int32 codes per slot (-1 = none) and the names of the codes."""

    def __init__(self, capacity: int):
        self.codes = np.full(capacity, -1, dtype=np.int32)
        self.code_of: dict[str, int] = {}
        self.names: list[str] = []

    def grow(self, capacity: int) -> None:
        self.codes = np.concatenate([self.codes, np.full(capacity - len(self.codes), -1, np.int32)])

    def set(self, slot: int, value) -> None:
        if value is None:
            self.codes[slot] = -1
            return
        value = str(value)
        code = self.code_of.get(value)
        if code is None:
            code = self.code_of[value] = len(self.names)
            self.names.append(value)
        self.codes[slot] = code


class LiveIndex:
    """One shop x one generation, searchable. `method`: auto (exact below `exact_max` products,
    IVF from there on the CPU), exact or ivf."""

    def __init__(self, device: str = "cpu", threads: int = 1, method: str = "auto", exact_max: int = EXACT_MAX_PRODUCTS,
                 spec: IndexSpec = IndexSpec(), nprobe: int = DEFAULT_NPROBE, text_weight: float = DEFAULT_TEXT_WEIGHT,
                 log=lambda *a: None, prefused: bool = False):
        self.device, self.threads, self.method, self.exact_max = device, threads, method, exact_max
        self.prefused = prefused  # rows carry their fused vector as `text` (candidates from a Milvus store)
        self.spec, self.nprobe, self.text_weight, self.log = spec, nprobe, text_weight, log
        self.lock = threading.RLock()
        self.applied = 0
        self.dim: int | None = None
        self.capacity = 0
        self.matrix = np.zeros((0, 0), np.float32)
        self.valid = np.zeros(0, bool)
        self.ids: list[bytes] = []
        self.titles: list[bytes] = []
        self.slot_of: dict[str, int] = {}
        self.free: list[int] = []
        self.terms = {name: TermColumn(0) for name in TERM_FIELDS}
        self.numbers = {name: np.zeros(0, np.float32) for name in NUMBER_COLUMNS}
        self.exact = ExactSearch(device, threads)
        self.ivf: IvfSearch | None = None

    # ------------------------------------------------------------------ size

    def __len__(self) -> int:
        return len(self.slot_of)

    @property
    def high_water(self) -> int:
        """Slots in use or freed: the matrix rows a search looks at."""
        return len(self.ids)

    def _grow(self, needed: int) -> None:
        capacity = max(1024, self.capacity)
        while capacity < needed:
            capacity *= 2
        if capacity == self.capacity:
            return
        matrix = np.zeros((capacity, self.dim), np.float32)
        matrix[: self.capacity] = self.matrix
        self.matrix = matrix
        self.valid = np.concatenate([self.valid, np.zeros(capacity - self.capacity, bool)])
        for column in self.terms.values():
            column.grow(capacity)
        for name, values in self.numbers.items():
            self.numbers[name] = np.concatenate([values, np.full(capacity - self.capacity, np.nan, np.float32)])
        self.capacity = capacity
        self.exact.sync(self.matrix)

    # ------------------------------------------------------------------ changes

    def fused(self, rows: list[ProductRow]) -> np.ndarray:
        text = np.stack([r.text for r in rows])
        if self.prefused:
            return normalize(text)
        has_image = np.array([r.image is not None for r in rows])
        image = np.stack([r.image if r.image is not None else np.zeros_like(r.text) for r in rows]) \
            if has_image.any() else np.zeros_like(text)
        if image.shape[1] != text.shape[1]:
            raise ValueError(f"text vectors are {text.shape[1]}-d but image vectors {image.shape[1]}-d")
        return fuse(text, image, np.ones(len(rows), bool), has_image, self.text_weight)

    def apply(self, changes: ChangeSet) -> None:
        """Apply what the store says changed; afterwards the index reflects `changes.head`."""
        with self.lock:
            for pid in changes.deleted:
                self._drop(pid)
            if changes.rows:
                vectors = self.fused(changes.rows)
                if self.dim is None:
                    self.dim = vectors.shape[1]
                    self.matrix = np.zeros((0, self.dim), np.float32)
                slots = [self._slot(row.id) for row in changes.rows]
                self._grow(max(slots) + 1)
                for slot, row, vector in zip(slots, changes.rows, vectors):
                    self._put(slot, row, vector)
                placed = np.array(slots, dtype=np.int64)
                self.exact.sync(self.matrix, placed)
                if self.ivf is not None:
                    self.ivf.add(placed, vectors)
            self.applied = max(self.applied, changes.head)

    def _slot(self, pid: str) -> int:
        slot = self.slot_of.get(pid)
        if slot is None:
            slot = self.free.pop() if self.free else len(self.ids)
            if slot == len(self.ids):
                self.ids.append(b"")
                self.titles.append(b"")
            self.slot_of[pid] = slot
        return slot

    def _put(self, slot: int, row: ProductRow, vector: np.ndarray) -> None:
        self.matrix[slot] = vector
        self.valid[slot] = True
        self.ids[slot] = row.id.encode()
        self.titles[slot] = row.title.encode()
        for name, column in self.terms.items():
            column.set(slot, row.fields.get(name))
        for name in NUMBER_FIELDS:
            value = row.fields.get(name)
            self.numbers[name][slot] = np.nan if value is None else float(value)
        self.numbers["updated_at"][slot] = row.updated_at

    def _drop(self, pid: str) -> None:
        slot = self.slot_of.pop(pid, None)
        if slot is None:
            return
        self.valid[slot] = False  # never returned again, from this moment
        self.matrix[slot] = 0.0
        self.ids[slot], self.titles[slot] = b"", b""
        for column in self.terms.values():
            column.codes[slot] = -1
        for values in self.numbers.values():
            values[slot] = np.nan
        self.free.append(slot)
        self.exact.sync(self.matrix, np.array([slot]))
        if self.ivf is not None:
            self.ivf.remove(np.array([slot], dtype=np.int64))

    # ------------------------------------------------------------------ method

    def choose_method(self) -> None:
        """Build the IVF index when the method (or, for auto, the size on the CPU) says so."""
        use_ivf = self.method == "ivf" or (self.method == "auto" and self.device == "cpu" and len(self) >= self.exact_max)
        if use_ivf and self.ivf is None and len(self) > 0:
            self.ivf = IvfSearch(self.matrix, self.valid, self.spec, self.nprobe, self.threads, self.log)

    @property
    def needs_rebuild(self) -> bool:
        """Rebuild from the store: many freed slots, drifted IVF lists, or on the wrong side of
        the exact/IVF threshold."""
        with self.lock:
            wants_ivf = self.method == "ivf" or (self.method == "auto" and self.device == "cpu" and len(self) >= self.exact_max)
            return (len(self.free) > max(1000, len(self) // 4) or (self.ivf is not None and self.ivf.drifted)
                    or (wants_ivf != (self.ivf is not None) and len(self) > 0))

    @property
    def search_method(self) -> str:
        return "ivf" if self.ivf is not None else "exact"

    # ------------------------------------------------------------------ search (callers hold the lock)

    def search(self, queries: np.ndarray, depth: int) -> tuple[np.ndarray, np.ndarray]:
        """The `depth` best slots for each query (the IVF index when there is one)."""
        if self.ivf is not None:
            return self.ivf.search(queries, min(depth, len(self)))
        n = self.high_water
        return self.exact.search(self.matrix[:n], self.valid[:n], queries, depth)

    def codes(self, field: str, names: list[str]) -> tuple[np.ndarray, list[str]]:
        """(codes of the known names, unknown names) for a term field."""
        column = self.terms[field]
        known = [column.code_of[n] for n in names if n in column.code_of]
        return np.array(known, dtype=np.int32), [n for n in names if n not in column.code_of]
