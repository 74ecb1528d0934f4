"""Deploy CLI: list, swap, roll back and prune model generations on a running Triton.

    python -m clients.deploy list
    python -m clients.deploy swap 2
    python -m clients.deploy rollback
    python -m clients.deploy prune --keep 2

Uses the model-repository API, which only answers callers with the admin header: the key comes
from PRODUCTSEARCH_ADMIN_KEY or run/admin_key (made by the launcher). Any failure leaves the
old generation serving and says why (exit code 1).
"""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from productsearch.deploy import GENERATION_MODELS, Deployer, DeployError
from productsearch.generations import GenerationError, manifest_path, read_serving, verify_generation
from productsearch.launcher import DEFAULT_MODEL_REPOSITORY, admin_headers
from productsearch.repository import built_generations


def list_generations(deployer: Deployer) -> str:
    serving = deployer.serving_generation()
    recorded = read_serving(deployer.repository)
    rows = [f"{'gen':>4}  {'state':<10} {'catalog':>8}  check"]
    for generation in built_generations(deployer.repository):
        try:
            manifest = verify_generation(deployer.repository, generation)
            check, count = "ok", str(manifest["catalog"]["count"])
        except GenerationError as err:
            check, count = str(err), "-"
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
        for model in GENERATION_MODELS:
            shutil.rmtree(deployer.repository / model / str(generation), ignore_errors=True)
        manifest_path(deployer.repository, generation).unlink(missing_ok=True)
        log(f"pruned generation {generation}")
    return doomed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m clients.deploy", description=__doc__.split("\n")[0])
    parser.add_argument("--url", default="localhost:8001")
    parser.add_argument("--model-repository", type=Path, default=DEFAULT_MODEL_REPOSITORY)
    sub = parser.add_subparsers(dest="action", required=True)
    sub.add_parser("list", help="generations on disk and which one serves")
    swap = sub.add_parser("swap", help="serve generation N (load beside, pin ensembles, unload old)")
    swap.add_argument("generation", type=int)
    sub.add_parser("rollback", help="back to the previous generation")
    prune_cmd = sub.add_parser("prune", help="delete old generations from disk")
    prune_cmd.add_argument("--keep", type=int, default=2)
    args = parser.parse_args(argv)

    with Deployer(args.url, args.model_repository, admin_headers()) as deployer:
        try:
            if args.action == "list":
                print(list_generations(deployer))
            elif args.action == "swap":
                deployer.swap(args.generation)
            elif args.action == "rollback":
                deployer.rollback()
            else:
                prune(deployer, args.keep)
        except DeployError as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
