"""Tensor I/O shared by the python-backend models: config parameters, inputs, errors, batching.

`triton_python_backend_utils` exists only inside Triton's python stub, so it is imported lazily.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np


def pb():
    import triton_python_backend_utils as pb_utils  # only inside the python backend stub

    return pb_utils


@dataclass
class ModelContext:
    """What `initialize(args)` tells a model about itself."""

    config: dict
    name: str
    version: int
    version_dir: Path
    device: str
    instance: str = ""

    @classmethod
    def from_args(cls, args: dict) -> "ModelContext":
        config = json.loads(args["model_config"])
        version = int(args["model_version"])
        repo = Path(args["model_repository"])
        kind = args.get("model_instance_kind", "CPU")
        device = f"cuda:{args.get('model_instance_device_id', '0')}" if kind == "GPU" else "cpu"
        name = args["model_name"]
        return cls(config, name, version, repo / str(version), device, args.get("model_instance_name", name))

    def parameter(self, key: str, default: str) -> str:
        return self.config.get("parameters", {}).get(key, {}).get("string_value", default)


# One thread per model instance: on 2 shared cores a 2-thread encoder stalls at every OpenMP
# barrier when the other encoder runs too (text+image search: 21-39 req/s at c=16 vs 147-168;
# BENCHMARKS.md "Tuning"). A config parameter `torch_threads` or PRODUCTSEARCH_TORCH_THREADS overrides it.
DEFAULT_THREADS = 1


def configured_threads(ctx: ModelContext) -> int:
    """The instance's compute threads: config parameter `torch_threads`, else the environment's
    PRODUCTSEARCH_TORCH_THREADS, else DEFAULT_THREADS."""
    default = os.environ.get("PRODUCTSEARCH_TORCH_THREADS", str(DEFAULT_THREADS))
    return max(1, int(ctx.parameter("torch_threads", default)))


def invalid(message: str):
    """An error response Triton reports as INVALID_ARGUMENT to the client."""
    pb_utils = pb()
    return pb_utils.InferenceResponse(error=pb_utils.TritonError(message, pb_utils.TritonError.INVALID_ARG))


def internal(message: str):
    pb_utils = pb()
    return pb_utils.InferenceResponse(error=pb_utils.TritonError(message, pb_utils.TritonError.INTERNAL))


def unavailable(message: str):
    """UNAVAILABLE: try again (a lagging catalog, a write fenced by a generation swap)."""
    pb_utils = pb()
    return pb_utils.InferenceResponse(error=pb_utils.TritonError(message, pb_utils.TritonError.UNAVAILABLE))


def not_found(message: str):
    """NOT_FOUND: an update or delete of a product the catalog does not have."""
    pb_utils = pb()
    return pb_utils.InferenceResponse(error=pb_utils.TritonError(message, pb_utils.TritonError.NOT_FOUND))


def input_array(request, name: str) -> np.ndarray | None:
    tensor = pb().get_input_tensor_by_name(request, name)
    return None if tensor is None else tensor.as_numpy()


def response(**outputs: np.ndarray):
    pb_utils = pb()
    return pb_utils.InferenceResponse([pb_utils.Tensor(name, value) for name, value in outputs.items()])


class RequestError(ValueError):
    """A problem with one request; it gets INVALID_ARGUMENT, the rest of the batch goes on."""


class RequestFailure(RuntimeError):
    """An unexpected error (a bug) while parsing one request: it gets INTERNAL, the batch goes on."""


def run_batched(requests, parse, compute, respond):
    """The one batching pattern every model here uses.

    parse(request) -> list of rows (raises RequestError for a bad request);
    compute(all_rows) -> per-row results computed in ONE batched op: a sequence, or a dict of
        arrays whose first axis is the row;
    respond(results_of_its_rows) -> the InferenceResponse for one request.
    Bad requests get their own error; good ones are computed together. An unexpected exception
    while parsing one request (a bug, not the client's fault) fails that request alone with
    INTERNAL: an exception escaping execute() would fail every request of the batch.
    """
    parsed: list = []
    for request in requests:
        try:
            parsed.append(parse(request))
        except RequestError as err:
            parsed.append(err)
        except Exception as err:  # noqa: BLE001 - isolate the failure to its own request
            parsed.append(RequestFailure(f"could not read the request: {type(err).__name__}: {err}"))
    failed = (RequestError, RequestFailure)
    rows = [row for item in parsed if not isinstance(item, failed) for row in item]
    results = compute(rows) if rows else []
    responses, start = [], 0
    for item in parsed:
        if isinstance(item, RequestError):
            responses.append(invalid(str(item)))
            continue
        if isinstance(item, RequestFailure):
            responses.append(internal(str(item)))
            continue
        stop = start + len(item)
        if isinstance(results, dict):
            responses.append(respond({key: value[start:stop] for key, value in results.items()}))
        else:
            responses.append(respond(results[start:stop]))
        start = stop
    return responses
