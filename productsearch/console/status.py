"""The Status page: the server's readiness, its models and their versions (generation N is version
N) with their state, each shop's size and sequence, and the service's recent refusals.

Triton restricts its model-repository protocol to the admin key (the server's
`--grpc-restricted-protocol`): signed in with it, the page lists every model and version; with
a shop's key, the readiness of the public models alone."""
from __future__ import annotations

from clients.contract import CATALOG_ADMIN, RECOMMEND, SEARCH, UPDATE_FIELDS, UPSERT
from productsearch.console.sessions import Session

REPOSITORY_HEADER = "triton-grpc-protocol-admin-key"  # Triton's gRPC header of the restricted model-repository protocol
PUBLIC_MODELS = (SEARCH, RECOMMEND, UPSERT, UPDATE_FIELDS, CATALOG_ADMIN)


def models(session: Session) -> tuple[list[dict], str]:
    """Every model version and its state (admin key), else the public models' readiness; a note."""
    triton = session.client.client
    try:
        index = triton.get_model_repository_index(headers={REPOSITORY_HEADER: session.client.key}, as_json=True)
        return sorted(({"name": m.get("name"), "version": m.get("version", ""), "state": m.get("state", "UNAVAILABLE"),
                        "reason": m.get("reason", "")} for m in index.get("models", [])),
                      key=lambda m: (m["name"], m["version"])), ""
    except Exception:  # noqa: BLE001 - not the admin key: the public models' readiness instead
        rows = [{"name": name, "version": "", "state": "READY" if triton.is_model_ready(name) else "UNAVAILABLE", "reason": ""}
                for name in PUBLIC_MODELS]
        return rows, "every model and version is listed for the admin key only"


def service_status(session: Session, problem) -> dict:
    """What the service says about itself (Triton's health and repository index, `catalog_admin`)."""
    out = {"errors": list(session.errors), "models": [], "shops": {}, "note": ""}
    client = session.client
    try:
        out["ready"] = client.client.is_server_ready()
        out["models"], out["note"] = models(session)
    except Exception as err:  # noqa: BLE001 - shown to the operator
        out["ready"], out["error"] = False, problem(err)
        return out
    try:
        out["shops"] = client.shops()
    except Exception:  # noqa: BLE001 - a key that may not list shops still sees its own
        try:
            out["shops"] = {session.shop or "default": client.info(session.shop)}
        except Exception as err:  # noqa: BLE001
            out["error"] = problem(err)
    return out
