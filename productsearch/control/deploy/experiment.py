"""A/B experiments between the serving generation M (control) and a built generation N
(treatment), for one shop: start, stop, promote, report.

    python -m productsearch.control.deploy experiment start --shop S --generation N --share 0.1 [--force]
    python -m productsearch.control.deploy experiment start --shop S --generation N --shadow [--force]
    python -m productsearch.control.deploy experiment stop|promote|report --shop S [--json]

start: the quality gate (quality_gate.py), N's encoders and scorer loaded beside M's (each
generation-numbered query model and the scorer with versions [M, N]; the writer stays M's), the
catalog encoded for N, then the experiment written to `generations/experiments.json`
(runtime/experiments.py): from then on the serving scorer passes each treatment shopper's
request to scorer N (runtime/arm_router.py). stop: the experiment ended in the file first (every
request back to M), then N unloaded. promote: the zero-drop hot swap to N (deploy/swap.py), then
the experiment ended. Each step is audited and counted through catalog_admin `record_swap` (admin
key) like a swap's stages. Products written during an experiment get N's vectors at promote (the
swap encodes what N lacks) or with `experiment start` again; until then N's arm does not find them.
A shadow experiment (`--shadow`) is started, stopped and promoted the same way, with no share:
M answers every shopper and N repeats each search unseen (runtime/shadow.py); its report
compares the two generations' answers and latencies (runtime/shadow_report.py).
"""
from __future__ import annotations

import time
import uuid

from productsearch.catalog.rows import DEFAULT_SHOP
from productsearch.catalog.store import list_shops
from productsearch.runtime import shadow_report
from productsearch.control.deploy.swap import Deployer, DeployError
from productsearch.control.generations import GenerationError, read_manifest, verify_generation, write_json_atomic
from productsearch.control.repository import QUERY_MODELS
from productsearch.runtime.experiment_report import shop_report
from productsearch.runtime.experiments import experiments_path, read_experiments

EXPERIMENT_MODELS = (*QUERY_MODELS, "scorer")  # what a treatment needs loaded beside the control


def running(deployer: Deployer, shop: str) -> dict | None:
    experiment = read_experiments(deployer.repository).get(shop)
    return experiment if experiment and not experiment.get("ended_at") else None


def write_experiment(deployer: Deployer, shop: str, experiment: dict) -> None:
    experiments = read_experiments(deployer.repository)
    experiments[shop] = experiment
    write_json_atomic(experiments_path(deployer.repository), experiments)


def treatments_besides(deployer: Deployer, shop: str) -> list[int]:
    """Generations other shops' running experiments keep loaded."""
    return sorted({int(e["treatment"]) for s, e in read_experiments(deployer.repository).items()
                   if s != shop and not e.get("ended_at")})


def start(deployer: Deployer, shop: str, generation: int, share: float = 0.0, force: bool = False,
          shadow: bool = False) -> dict:
    """`shadow`: every shopper gets M's answer and N repeats each search unseen (`share` unused)."""
    share = 0.0 if shadow else share
    if not shadow and not 0.0 < share < 1.0:
        raise DeployError(f"--share must be between 0 and 1 (exclusive), got {share}")
    serving = deployer.serving_generation()
    if serving is None:
        raise DeployError("refused: no generation serves (search is not loaded)")
    if generation == serving:
        raise DeployError(f"refused: generation {generation} already serves; an experiment needs another generation")
    if running(deployer, shop):
        raise DeployError(f"refused: shop {shop!r} already runs an experiment (experiment stop or promote first)")
    if shop != DEFAULT_SHOP and shop not in list_shops(deployer.catalog):
        raise DeployError(f"refused: shop {shop!r} does not exist")
    try:
        manifest = verify_generation(deployer.repository, generation)
        serving_manifest = read_manifest(deployer.repository, serving)
    except GenerationError as err:
        raise DeployError(f"refused: {err}") from None
    deployer.gate(generation, serving, force)
    if manifest.get("encoders") != serving_manifest.get("encoders"):
        raise DeployError(f"refused: generation {generation} has other encoders than serving generation {serving}: "
                          "the serving scorer passes its own query embeddings on, so an experiment needs generations "
                          "that share their encoders (a new catalog fusion, scorer or index); swap to try other towers")
    versions = sorted({serving, generation, *treatments_besides(deployer, shop)})
    deployer.record_swap("experiment_start", generation)
    try:
        deployer.load_generation_models(versions, models=QUERY_MODELS)
        deployer.log(f"  {deployer.encode_catalog(generation)} products encoded for generation {generation}")
        deployer.load_generation_models(versions, models=("scorer",))
    except DeployError:
        deployer.load_generation_models(sorted({serving, *treatments_besides(deployer, shop)}), models=EXPERIMENT_MODELS)
        raise
    experiment = {"id": uuid.uuid4().hex, "shop": shop, "control": serving, "treatment": generation,
                  "share": share, "started_at": time.time(), **({"shadow": True} if shadow else {})}
    write_experiment(deployer, shop, experiment)
    exposure = "in the shadow of every search" if shadow else f"to {share:.1%} of users"
    deployer.log(f"experiment {experiment['id']}: shop {shop}, generation {generation} {exposure} "
                 f"(control: generation {serving})")
    return experiment


def end(deployer: Deployer, shop: str, outcome: str) -> dict:
    experiment = running(deployer, shop)
    if experiment is None:
        raise DeployError(f"shop {shop!r} runs no experiment")
    experiment = {**experiment, "ended_at": time.time(), "outcome": outcome}
    write_experiment(deployer, shop, experiment)
    return experiment


def stop(deployer: Deployer, shop: str) -> dict:
    """Every request back to the control, then the treatment's models unloaded."""
    experiment = end(deployer, shop, "stopped")
    time.sleep(0.2)  # the serving scorer re-reads the file at its next batch; let requests in flight finish
    keep = sorted({int(experiment["control"]), *treatments_besides(deployer, shop)})
    deployer.load_generation_models(keep, models=EXPERIMENT_MODELS)
    deployer.record_swap("experiment_stop", int(experiment["treatment"]))
    deployer.log(f"experiment {experiment['id']} stopped: generation {experiment['treatment']} unloaded")
    return experiment


def promote(deployer: Deployer, shop: str, force: bool = False) -> dict:
    """The zero-drop hot swap to the treatment generation, then the experiment ended."""
    experiment = running(deployer, shop)
    if experiment is None:
        raise DeployError(f"shop {shop!r} runs no experiment")
    deployer.swap(int(experiment["treatment"]), force=force)
    experiment = end(deployer, shop, "promoted")
    deployer.record_swap("experiment_promote", int(experiment["treatment"]))
    return experiment


def report(deployer: Deployer, shop: str) -> dict:
    result = shop_report(deployer.catalog, deployer.repository, shop)
    if result is None:
        raise DeployError(f"shop {shop!r} has had no experiment")
    return result


def format_report(result: dict) -> str:
    if result["experiment"].get("shadow"):
        return shadow_report.format_report(result)
    experiment = result["experiment"]
    state = experiment.get("outcome", "running")
    lines = [f"experiment {experiment['id']} ({state}): shop {experiment['shop']}, control generation "
             f"{experiment['control']}, treatment generation {experiment['treatment']} at {experiment['share']:.1%}",
             "", f"{'arm':<10} {'searches':>9} {'CTR [95% CI]':>24} {'conversion [95% CI]':>24} "
                 f"{'zero-result [95% CI]':>24} {'p50 ms':>8} {'p99 ms':>8}"]
    for arm, a in result["arms"].items():
        cell = lambda k: f"{a[k]:.4f} [{a[k + '_ci'][0]:.4f}, {a[k + '_ci'][1]:.4f}]"  # noqa: E731
        lines.append(f"{arm:<10} {a['searches']:>9} {cell('ctr'):>24} {cell('conversion'):>24} "
                     f"{cell('zero_result'):>24} {a['p50_ms']:>8.2f} {a['p99_ms']:>8.2f}")
    lines.append("")
    lines += [f"{metric}: {line}" for metric, line in result["verdicts"].items()]
    return "\n".join(lines)
