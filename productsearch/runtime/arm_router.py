"""The serving scorer's side of an experiment: requests of treatment-arm shoppers answered by the
treatment generation's scorer, loaded beside it (runtime/experiments.py holds the state).

A Triton ensemble cannot branch, so the serving scorer (version M, the control) routes: a request
whose every row is of a shop with a running experiment of control M, and whose USER falls in the
treatment arm, is passed on whole (its inputs and key headers as they came) to `scorer` version N
through one BLS call, with ROUTED_ARM = "treatment"; N answers it (GENERATION N, ARM treatment)
and logs it as the treatment's. Everything else M answers itself as the control. A request that
mixes shoppers of both arms is the control's (ARM says so, so the statistics stay right).
A shadow experiment routes nobody: M answers everyone and runtime/shadow.py sends each request
to N as well, after the answer, with ROUTED_ARM = "shadow" and SHADOW_OF (M's query ids): N logs
its answer as the shadow of M's row, under the query id `<M's id>/shadow`, and returns it to no one.
Generation N must share M's encoders (the query embeddings are M's): `experiment start` checks.
"""
from __future__ import annotations

import json

from productsearch.runtime.experiments import CONTROL, SHADOW, TREATMENT, ExperimentWatch, arm_of
from productsearch.runtime.model_io import input_array, pb, unavailable

ROUTED_ARM = "ROUTED_ARM"  # internal scorer input: the arm a routed request is answered as
SHADOW_OF = "SHADOW_OF"  # internal scorer input: per row, M's query id of the answer a shadow request repeats
SHADOW_SUFFIX = "/shadow"  # the search log's query id of a shadow answer: M's id + this
INTERNAL_INPUTS = (ROUTED_ARM, SHADOW_OF)


def shadow_query_id(query_id: str) -> str:
    return query_id + SHADOW_SUFFIX


class ArmRouter:
    def __init__(self, repository, version: int, output_names: list[str]):
        self.watch = ExperimentWatch(repository)
        self.version = version
        self.output_names = output_names

    def answering_arm(self, request) -> str:
        """The arm this scorer answers `request` as: ROUTED_ARM when M passed it on, else control."""
        routed = input_array(request, ROUTED_ARM)
        if routed is None or not routed.size:
            return CONTROL
        value = routed.reshape(-1)[0]
        value = value.decode(errors="replace") if isinstance(value, bytes) else str(value)
        return value if value in (TREATMENT, SHADOW) else CONTROL

    def shadow_of(self, request, rows: int) -> list[str] | None:
        """The search log's query ids of a shadow request's rows (M's ids + "/shadow"), else None."""
        ids = input_array(request, SHADOW_OF) if self.answering_arm(request) == SHADOW else None
        if ids is None or ids.shape[0] != rows:
            return None
        return [shadow_query_id(v.decode(errors="replace") if isinstance(v, bytes) else str(v))
                for v in ids.reshape(rows, -1)[:, 0]]

    def experiment_generation(self, request, rows: list, shadow: bool) -> int | None:
        """N when this scorer is the control M of running experiments of one treatment N for every
        row's shop, of the kind asked for (`shadow`), and (A/B) every row's shopper is in the
        treatment arm; else None."""
        if not rows or input_array(request, ROUTED_ARM) is not None:
            return None
        running = self.watch.current()
        if not running:
            return None
        targets = set()
        for row in rows:
            experiment = running.get(row.shop)
            if (not experiment or experiment.get("ended_at") or int(experiment.get("control", -1)) != self.version
                    or bool(experiment.get("shadow")) != shadow):
                return None
            if not shadow and arm_of(str(experiment.get("id")), row.user, float(experiment.get("share", 0))) != TREATMENT:
                return None
            targets.add(int(experiment["treatment"]))
        return targets.pop() if len(targets) == 1 else None

    def treatment_generation(self, request, rows: list) -> int | None:
        """N when every row of the request is a treatment shopper of one A/B experiment of control
        M; else None (answer here)."""
        return self.experiment_generation(request, rows, shadow=False)

    def shadow_generation(self, request, rows: list) -> int | None:
        """N when every row's shop runs one shadow experiment of control M (M answers, N repeats)."""
        return self.experiment_generation(request, rows, shadow=True)

    def forward(self, request, generation: int):
        """N's answer to `request` (its error, if it refused), through one BLS call."""
        import numpy as np

        pb_utils = pb()
        inputs = [t for t in request.inputs() if t.name() not in INTERNAL_INPUTS]
        inputs.append(pb_utils.Tensor(ROUTED_ARM, np.array([[TREATMENT.encode()]] * rows_of(inputs), dtype=object)))
        try:
            reply = scorer_request(generation, inputs, request_parameters(request), self.output_names).exec()
        except Exception as err:  # noqa: BLE001 - this request fails, the batch and the server go on
            return unavailable(f"the experiment's generation {generation} did not answer: {type(err).__name__}: {err}")
        if reply.has_error():
            return pb_utils.InferenceResponse(error=reply.error())
        # copied out of the BLS reply: the answer must not hold memory of a model version that
        # `experiment stop` may unload next
        return pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor(t.name(), np.array(t.as_numpy(), copy=True))
                                                          for t in reply.output_tensors()])


def request_parameters(request) -> dict:
    """The request's parameters (the forwarded key headers among them), to pass on as they came."""
    try:
        parameters = json.loads(request.parameters() or "{}")
    except ValueError:
        return {}
    return parameters if isinstance(parameters, dict) else {}


def scorer_request(generation: int, inputs: list, parameters: dict, output_names: list[str]):
    """The BLS request of `inputs` to scorer version `generation`."""
    return pb().InferenceRequest(model_name="scorer", model_version=generation, inputs=inputs,
                                 requested_output_names=output_names, parameters=parameters)


def rows_of(inputs) -> int:
    """The request's batch size (TOP_K is required and has one value per row)."""
    for tensor in inputs:
        if tensor.name() == "TOP_K":
            return int(tensor.as_numpy().shape[0])
    return 1
