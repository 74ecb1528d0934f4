"""Product photos for the result cards: the catalog file's image paths (the JSONL the shop loaded,
each line's `image` relative to the file), and the photos uploaded through the console's Catalog
page since it started. The service keeps images content-addressed and returns none, so the
console serves what the shop's backend has, as a shop's own site would."""
from __future__ import annotations

import json
import threading
from pathlib import Path

TYPES = {b"\x89PNG": "image/png", b"\xff\xd8\xff": "image/jpeg", b"GIF8": "image/gif", b"RIFF": "image/webp"}
PLACEHOLDER = ('<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 4 4"><rect width="4" height="4" fill="#e8e8e8"/>'
               '<text x="2" y="2.6" font-size="1.6" text-anchor="middle" fill="#999">?</text></svg>').encode()


def content_type(data: bytes) -> str:
    """The image type from its first bytes (application/octet-stream when unknown)."""
    return next((kind for magic, kind in TYPES.items() if data.startswith(magic)), "application/octet-stream")


class ProductPhotos:
    """(shop, product id) -> photo bytes: uploads first, then the catalog file's paths."""

    def __init__(self, catalogs: list[Path] | None = None):
        self.paths: dict[str, Path] = {}
        for catalog in catalogs or []:
            self.read_catalog(Path(catalog))
        self.uploads: dict[tuple[str, str], bytes] = {}
        self._lock = threading.Lock()

    def read_catalog(self, catalog: Path) -> None:
        for line in catalog.read_text().splitlines():
            if line.strip():
                record = json.loads(line)
                if record.get("image"):
                    image = Path(record["image"])
                    self.paths[str(record["id"])] = image if image.is_absolute() else catalog.parent / image

    def uploaded(self, shop: str | None, product_id: str, data: bytes) -> None:
        with self._lock:
            self.uploads[(shop or "", product_id)] = data

    def forget(self, shop: str | None, product_id: str) -> None:
        with self._lock:
            self.uploads.pop((shop or "", product_id), None)

    def photo(self, shop: str | None, product_id: str) -> tuple[bytes, str]:
        """(bytes, content type); a grey placeholder for a product without a known photo."""
        with self._lock:
            data = self.uploads.get((shop or "", product_id))
        if data is None and not shop and product_id in self.paths:  # the catalog file is the default shop's
            try:
                data = self.paths[product_id].read_bytes()
            except OSError:
                data = None
        return (data, content_type(data)) if data else (PLACEHOLDER, "image/svg+xml")
