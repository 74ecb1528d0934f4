"""Device-specific model configs: `build_models.py --device gpu` writes `<model>/configs/gpu.pbtxt`
beside each committed config.pbtxt (which stays the CPU default) and records the device in
`device.json`; the launcher then starts tritonserver with --model-config-name=gpu and the deploy
tools load the same files, so every load of a model uses the same config.
"""
from __future__ import annotations

import json
from pathlib import Path

DEVICE_FILE = "device.json"
GPU_MODELS = ("text_encoder", "image_encoder", "scorer")


def config_name(repository: Path) -> str | None:
    """'gpu' when build_models wrote GPU configs (`<model>/configs/gpu.pbtxt`), else None.

    The launcher passes it to tritonserver as --model-config-name and the deploy tools read
    the same file, so every load of a model uses the same config."""
    path = Path(repository) / DEVICE_FILE
    if not path.exists():
        return None
    return "gpu" if json.loads(path.read_text()).get("device") == "gpu" else None


def config_path(repository: Path, model: str) -> Path:
    name = config_name(repository)
    custom = Path(repository) / model / "configs" / f"{name}.pbtxt" if name else None
    return custom if custom is not None and custom.exists() else Path(repository) / model / "config.pbtxt"


def write_device_configs(repository: Path, device: str) -> None:
    """For `gpu`: encoders and scorer on KIND_GPU with fp16 autocast and preferred batch sizes
    (written beside each committed config.pbtxt, which stays the CPU default)."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    repository = Path(repository)
    for model in GPU_MODELS:
        target = repository / model / "configs" / "gpu.pbtxt"
        if device != "gpu":
            target.unlink(missing_ok=True)
            continue
        config = text_format.Parse((repository / model / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
        del config.instance_group[:]
        config.instance_group.add(kind=model_config_pb2.ModelInstanceGroup.KIND_GPU, count=1)
        config.parameters["precision"].string_value = "fp16" if model != "scorer" else "fp32"
        config.dynamic_batching.preferred_batch_size[:] = [16, 32]
        config.dynamic_batching.max_queue_delay_microseconds = 1000
        target.parent.mkdir(exist_ok=True)
        target.write_text("# Written by build_models.py --device gpu; config.pbtxt is the CPU default.\n"
                          + text_format.MessageToString(config))
    (repository / DEVICE_FILE).write_text(json.dumps({"device": device}))
