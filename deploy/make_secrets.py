"""Makes the credentials of Milvus and its MinIO once, into deploy/secrets/ (git-ignored, mode 0600),
so that no shipped file carries a default password: compose's `secrets:` read these files, and
for Kubernetes they become a Secret and a Helm values file (deploy/kubernetes/README.md).

    python3 deploy/make_secrets.py [--out deploy/secrets]      (make deploy-secrets)

A file that exists is kept: Milvus and MinIO keep the credentials they first started with, so a
new random value would lock them out of their own data. Standard library only: it runs on a host
that has only the checkout and Docker.
"""
from __future__ import annotations

import argparse
import os
import secrets
from pathlib import Path

DEFAULT_OUT = Path(__file__).resolve().parent / "secrets"
ROOT_PASSWORD = "milvus_root_password"  # Milvus's `root` user, set on its first start
TOKEN = "milvus_token"  # root:<password>, what the Triton replicas sign in with (PRODUCTSEARCH_MILVUS_TOKEN_FILE)
MINIO_ACCESS_KEY = "minio_access_key"  # MinIO's root user, which Milvus stores its segments with
MINIO_SECRET_KEY = "minio_secret_key"
HELM_VALUES = "milvus-credentials.values.yaml"  # helm install ... -f milvus-values.yaml -f <this>


def write_once(path: Path, value: str) -> str:
    """`value` into `path` (0600) unless it exists; what the file holds."""
    if path.exists():
        return path.read_text().strip()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(value)
    return value


def helm_values(root_password: str, access_key: str, secret_key: str) -> str:
    """The Milvus chart's credential values: MinIO's keys, and Milvus's user.yaml with
    authentication on and the root password (the chart has no Secret field for either)."""
    return (f"# made by deploy/make_secrets.py: never commit\n"
            f'minio:\n  accessKey: "{access_key}"\n  secretKey: "{secret_key}"\n'
            f"extraConfigFiles:\n  user.yaml: |+\n    common:\n      security:\n"
            f'        authorizationEnabled: true\n        defaultRootPassword: "{root_password}"\n')


def make(out: Path = DEFAULT_OUT) -> dict[str, Path]:
    """Every credential file in `out` (made where missing); name -> path."""
    out.mkdir(parents=True, exist_ok=True)
    os.chmod(out, 0o700)
    password = write_once(out / ROOT_PASSWORD, secrets.token_urlsafe(24))
    write_once(out / TOKEN, f"root:{password}")
    access_key = write_once(out / MINIO_ACCESS_KEY, "productsearch-" + secrets.token_hex(6))
    secret_key = write_once(out / MINIO_SECRET_KEY, secrets.token_urlsafe(30))
    write_once(out / HELM_VALUES, helm_values(password, access_key, secret_key))
    return {name: out / name for name in (ROOT_PASSWORD, TOKEN, MINIO_ACCESS_KEY, MINIO_SECRET_KEY, HELM_VALUES)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder of the credential files")
    args = parser.parse_args(argv)
    for name, path in make(args.out).items():
        print(f"{name}: {path}")  # paths only, never a value
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
