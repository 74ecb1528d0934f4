"""The folder of an embedded store, one SQLite database per shop: which shops it holds, and the
write fence of a generation swap set across all of them (and kept in a file for shops made later).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from productsearch.catalog.sqlite.store import FENCE_FILE, SqliteCatalog


def fence_writes(root: Path, generation: int) -> None:
    """From now on only generation N's writers may write, in every shop (and in shops made later)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".{FENCE_FILE}.tmp"
    tmp.write_text(json.dumps(generation))
    os.replace(tmp, root / FENCE_FILE)
    for name in shops(root):
        store = SqliteCatalog(root, name)
        store.set_meta("write_generation", generation)
        store.close()


def shops(root: Path) -> list[str]:
    """The shops that have a catalog under `root`."""
    return sorted(p.stem for p in Path(root).glob("*.sqlite")) if Path(root).is_dir() else []
