"""The deploy command line: generations on disk, swap, rollback, restore after a start, prune.

    python -m productsearch.control.deploy [--url host:8001[,host2:8001 ...]] list | swap N | rollback
                                           | restore [--wait S] | prune --keep 2 | swap N --force
    python -m productsearch.control.deploy experiment start --shop S --generation N --share 0.1 [--force]
                                           | experiment start --shop S --generation N --shadow [--force]
                                           | experiment stop|promote|report --shop S [--json]
Several addresses: Triton replicas on one catalog store (Milvus); swap and rollback move all of
them together (productsearch/control/deploy/swap.py: Deployer.swap with peers), restore brings back each one.
Needs the admin key (PRODUCTSEARCH_ADMIN_KEY or run/admin_key) and this host's model repository,
whose manifests it verifies. Any failure leaves the old generation serving and says why (exit 1).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from clients.connection import add_connection_arguments, tls_from_args
from productsearch.control.admin import admin_headers
from productsearch.control.deploy.swap import Deployer, DeployError
from productsearch.control.generations import GenerationError, read_serving, remove_generation, verify_generation
from productsearch.control.paths import DEFAULT_MODEL_REPOSITORY
from productsearch.control.repository import GENERATION_MODELS, built_generations


def list_generations(deployer: Deployer) -> str:
    serving = deployer.serving_generation()
    recorded = read_serving(deployer.repository)
    rows = [f"{'gen':>4}  {'state':<10} {'vectors':>8}  check"]
    stores = deployer.stores()
    for generation in built_generations(deployer.repository):
        count = str(sum(int(s.info()["vectors"].get(str(generation), 0)) for s in stores))
        try:
            verify_generation(deployer.repository, generation)
            check = "ok"
        except GenerationError as err:
            check = str(err)
        state = "SERVING" if generation == serving else ("previous" if generation == recorded.get("previous") else "")
        rows.append(f"{generation:>4}  {state:<10} {count:>8}  {check}")
    return "\n".join(rows)


def prune(deployer: Deployer, keep: int, log=print) -> list[int]:
    """Delete generations beyond the newest `keep`, never the serving or the previous one."""
    serving = deployer.serving_generation()
    protected = {serving, read_serving(deployer.repository).get("previous")}
    generations = built_generations(deployer.repository)
    doomed = [g for g in generations[: max(len(generations) - keep, 0)] if g not in protected]
    for generation in doomed:
        loaded = [m for m in GENERATION_MODELS if generation in deployer.loaded_versions(m)]
        if loaded:
            log(f"keeping generation {generation}: still loaded in {', '.join(loaded)}")
            continue
        remove_generation(deployer.repository, generation)
        log(f"pruned generation {generation}")
    return doomed


def run_experiment(deployer: Deployer, args: argparse.Namespace) -> None:
    from productsearch.control.deploy import experiment

    if args.step == "start":
        experiment.start(deployer, args.shop, args.generation, args.share, args.force, args.shadow)
    elif args.step == "stop":
        experiment.stop(deployer, args.shop)
    elif args.step == "promote":
        experiment.promote(deployer, args.shop, args.force)
    else:
        result = experiment.report(deployer, args.shop)
        print(json.dumps(result, indent=1) if args.json else experiment.format_report(result))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m productsearch.control.deploy", description=__doc__.split("\n")[0])
    add_connection_arguments(parser)
    parser.add_argument("--model-repository", type=Path, default=DEFAULT_MODEL_REPOSITORY)
    sub = parser.add_subparsers(dest="action", required=True)
    sub.add_parser("list", help="generations on disk and which one serves")
    swap = sub.add_parser("swap", help="serve generation N (load beside, pin ensembles, unload old)")
    swap.add_argument("generation", type=int)
    swap.add_argument("--force", action="store_true", help="past the quality gate (held-out figures worse than serving's)")
    sub.add_parser("rollback", help="back to the previous generation")
    restore = sub.add_parser("restore", help="after a start: serve the recorded generation (else the newest built)")
    restore.add_argument("--wait", type=float, default=0.0, help="seconds to wait for the server to be up first")
    prune_cmd = sub.add_parser("prune", help="delete old generations from disk")
    prune_cmd.add_argument("--keep", type=int, default=2)
    experiment_cmd = sub.add_parser("experiment", help="A/B experiment of a generation against the serving one")
    experiment_cmd.add_argument("step", choices=("start", "stop", "promote", "report"))
    experiment_cmd.add_argument("--shop", default="default")
    experiment_cmd.add_argument("--generation", type=int, help="start: the treatment generation")
    experiment_cmd.add_argument("--share", type=float, default=0.1, help="start: the treatment's share of users")
    experiment_cmd.add_argument("--shadow", action="store_true",
                                help="start: every shopper gets the serving generation's answer and N scores each "
                                     "search too, unseen; the report compares their answers (overlap@10) and latency")
    experiment_cmd.add_argument("--force", action="store_true", help="start, promote: past the quality gate")
    experiment_cmd.add_argument("--json", action="store_true", help="report: as JSON")
    args = parser.parse_args(argv)
    if args.action == "experiment" and args.step == "start" and args.generation is None:
        parser.error("experiment start needs --generation N")

    urls = [u.strip() for u in args.url.split(",") if u.strip()]
    deployers = [Deployer(url, args.model_repository, admin_headers(), tls=tls_from_args(args)) for url in urls]
    deployer, peers = deployers[0], tuple(deployers[1:])
    try:
        if args.action == "restore":
            for one in deployers:
                deadline = time.monotonic() + args.wait
                while not one.server_live() and time.monotonic() < deadline:
                    time.sleep(1.0)
                print(f"{one.url}: serving generation {one.serving_generation() or one.restore()}")
        elif args.action == "list":
            print(list_generations(deployer))
        elif args.action == "swap":
            deployer.swap(args.generation, peers, force=args.force)
        elif args.action == "experiment":
            run_experiment(deployer, args)
        elif args.action == "rollback":
            deployer.rollback(peers)
        else:
            prune(deployer, args.keep)
    except DeployError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    finally:
        for one in deployers:
            one.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
