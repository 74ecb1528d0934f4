"""What a generation's manifest says about SERVING it, read inside the stub: its fusion weight.

The weight w of `fuse` ([sqrt(w) t, sqrt(1-w) i]) belongs to a generation, not to the server:
the image tower of a generation is trained and measured for one w (the demo's USE + Lite0 towers
for 0.1, MiniLM + ResNet for the source method's 0.5), and a query fused with one w ranks
correctly only against products fused with the same w. So build_models.py records it in
`generations/N.json` ("fusion": {"text_weight": w}) and both users of generation N read it
from there: `fusion` N (the queries' default) and `scorer` N (the catalog's fused vectors).
A global default could not serve two generations with different weights side by side during a
swap; a config parameter would be one per model for every version. A manifest without the key
(generations built before it existed) means DEFAULT_TEXT_WEIGHT.
"""
from __future__ import annotations

import json
from pathlib import Path

from productsearch.core.vectors import DEFAULT_TEXT_WEIGHT

MANIFEST_DIR = "generations"  # model_repository/generations/N.json


def manifest_file(repository: Path, generation: int) -> Path:
    return Path(repository) / MANIFEST_DIR / f"{generation}.json"


def generation_text_weight(repository: Path, generation: int) -> float:
    """Generation N's fusion text weight (DEFAULT_TEXT_WEIGHT when its manifest names none)."""
    try:
        manifest = json.loads(manifest_file(repository, generation).read_text())
    except (FileNotFoundError, ValueError):
        return DEFAULT_TEXT_WEIGHT
    weight = float(manifest.get("fusion", {}).get("text_weight", DEFAULT_TEXT_WEIGHT))
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"generation {generation}: fusion text_weight {weight} is outside [0, 1]")
    return weight
