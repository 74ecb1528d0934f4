"""Where things are by default: the repository root, the model repository, run/ (server state,
logs, admin key), the demo catalog, and the ports. The one source of each default path and port.
"""
from __future__ import annotations

from pathlib import Path

from productsearch.demo.paths import DEMO_CATALOG, DEMO_CATALOG_DIR  # noqa: F401 - the demo data's default place

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_MODEL_REPOSITORY = REPO_ROOT / "model_repository"
DEFAULT_RUN_DIR = REPO_ROOT / "run"
DEFAULT_PORTS = {"http": 8000, "grpc": 8001, "metrics": 8002}
