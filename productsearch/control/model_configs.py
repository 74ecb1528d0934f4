"""Model configs as the deploy tools send them to Triton: the on-disk config.pbtxt (or the device
variant build_models wrote) with a version policy naming the versions to load, or an ensemble
with every generation-numbered step pinned to one generation.
"""
from __future__ import annotations

import json
from pathlib import Path

from google.protobuf import json_format, text_format
from tritonclient.grpc import model_config_pb2

from productsearch.control.device_configs import config_path
from productsearch.control.repository import GENERATION_MODELS


def read_config(repository: Path, model: str) -> model_config_pb2.ModelConfig:
    path = config_path(repository, model)  # configs/gpu.pbtxt after build_models --device gpu
    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


def to_json(config: model_config_pb2.ModelConfig) -> str:
    return json.dumps(json_format.MessageToDict(config, preserving_proto_field_name=True))


def versions_config(repository: Path, model: str, versions: list[int], mutate=None) -> str:
    """The model's on-disk config with a version policy naming exactly `versions`, changed by
    `mutate(model, config)` if given (benchmarks try variants this way)."""
    config = read_config(repository, model)
    config.version_policy.specific.versions[:] = sorted(set(versions))
    if mutate is not None:
        mutate(model, config)
    return to_json(config)


def pinned_ensemble_config(repository: Path, ensemble: str, generation: int) -> str:
    """The ensemble's on-disk config with every generation-numbered step pinned to N."""
    config = read_config(repository, ensemble)
    for step in config.ensemble_scheduling.step:
        if step.model_name in GENERATION_MODELS:
            step.model_version = generation
    return to_json(config)
