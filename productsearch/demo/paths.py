"""Where the demo world's generated data lives by default: data/demo_catalog/ in the checkout."""
from __future__ import annotations

from pathlib import Path

DEMO_CATALOG_DIR = Path(__file__).resolve().parents[2] / "data" / "demo_catalog"
DEMO_CATALOG = DEMO_CATALOG_DIR / "catalog.jsonl"
