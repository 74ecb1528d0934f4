"""Writing an adapted generation into the model repository (training/adapt.py): generation N as
the serving generation's encoders with the adapted image tower in place, all of it or nothing -
an error or Ctrl-C removes what was written, a run killed -9 leaves a marker the next run acts
on - and one adapt run at a time per repository.
"""
from __future__ import annotations

import json
import os
import shutil
from contextlib import contextmanager
from pathlib import Path

from productsearch.control.device_configs import DEVICE_FILE
from productsearch.control.generations import clone_encoders, manifest_path, remove_generation
from productsearch.training.generation import finish_generation


def partial_marker(repository: Path, generation: int) -> Path:
    """Present while generation N is being registered: what a run killed then leaves behind."""
    return manifest_path(repository, generation).with_name(f".adapt-{generation}.partial")


def staged_tower(repository: Path, generation: int) -> Path:
    return repository / "image_encoder" / f".adapt-{generation}.tmp"


def register(repository: Path, generation: int, serving: int, tower, built_by: dict, text_weight: float) -> None:
    """Generation N: the serving generation's encoders (clone_encoders), the adapted image tower
    in place of its image_tower, then the entry points, device configs and manifest. Stopped on
    the way (an error, Ctrl-C), it removes what it wrote: the repository is as it was; killed,
    its marker tells the next run (`adapting`) to remove it."""
    image_dir, staged, marker = repository / "image_encoder" / str(generation), staged_tower(repository, generation), \
        partial_marker(repository, generation)
    marker.write_text(json.dumps({"pid": os.getpid()}))
    try:
        shutil.rmtree(staged, ignore_errors=True)
        tower.save(staged)
        tower.export_onnx(staged)
        (staged / "build_info.json").write_text(json.dumps(built_by, indent=1))
        clone_encoders(repository, generation, serving)
        (image_dir / "image_tower").unlink()
        os.replace(staged, image_dir / "image_tower")
        device_file = repository / DEVICE_FILE
        device = json.loads(device_file.read_text()).get("device", "cpu") if device_file.exists() else "cpu"
        finish_generation(repository, generation, built_by, device, text_weight=text_weight)
    except BaseException:
        remove_partial(repository, generation)
        raise
    marker.unlink()


def remove_partial(repository: Path, generation: int) -> None:
    shutil.rmtree(staged_tower(repository, generation), ignore_errors=True)
    remove_generation(repository, generation)
    partial_marker(repository, generation).unlink(missing_ok=True)


@contextmanager
def adapting(repository: Path, log=print):
    """One adapt at a time per repository (a lock on its folder, no file written); under it, a
    generation that a run killed while registering left half written is removed, so the next
    run takes its number again."""
    import fcntl

    folder = os.open(repository, os.O_RDONLY)
    try:
        try:
            fcntl.flock(folder, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SystemExit(f"{repository}: another adapt run is under way") from None
        for marker in sorted(manifest_path(repository, 0).parent.glob(".adapt-*.partial")):
            generation = int(marker.name.split("-")[1].split(".")[0])
            log(f"removing generation {generation}: an adapt run stopped while registering it")
            remove_partial(repository, generation)
        yield
    finally:
        os.close(folder)
