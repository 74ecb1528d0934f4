"""What every preset does last: give generation N its model.py entry points, the device
configs and its manifest (encoder checksums), so the deploy tools can verify and serve it.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from productsearch.control.device_configs import write_device_configs
from productsearch.control.generations import manifest_path, record_encoders
from productsearch.control.repository import GENERATION_MODELS, built_generations, compile_entry_points


def pick_generation(out: Path, requested: int | None, new: bool, default_new: bool = False) -> int:
    """The generation to build: `requested`; else with `new` (or `default_new`) the one after the
    newest built; else the newest built (1 on an empty repository)."""
    if requested:
        return requested
    newest = (built_generations(out)[-1:] or [0])[0]
    return newest + 1 if new or default_new or newest == 0 else newest


def resolve_device(device: str) -> str:
    if device == "auto":
        import torch

        return "gpu" if torch.cuda.is_available() else "cpu"
    return device


def finish_generation(out: Path, generation: int, built_by: dict, device: str, text_weight: float | None = None,
                      evaluation: dict | None = None) -> None:
    """model.py entry points for version N, device configs, and the generation's manifest
    (with the fusion text weight the towers were trained and measured for; None: the default;
    and the build's held-out `evaluation`, metric -> value, higher better: the deploy tool's
    quality gate compares it with the serving generation's)."""
    for model in GENERATION_MODELS:
        entry = out / model / str(generation) / "model.py"
        if not entry.exists():
            entry.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(out / model / "1" / "model.py", entry)
    compile_entry_points(out)  # the stub would write __pycache__ itself (see control/repository.py)
    write_device_configs(out, device)
    record_encoders(out, generation, built_by, None if text_weight is None else {"text_weight": float(text_weight)},
                    evaluation)
    print(f"generation {generation} manifest: {manifest_path(out, generation)}"
          + f"; {device} configs")
