"""Makes the credentials of Milvus and its MinIO once, into deploy/secrets/ (git-ignored, mode 0600),
so that no shipped file carries a default password: compose's `secrets:` read these files, and
for Kubernetes they become a Secret and a Helm values file (deploy/kubernetes/README.md).

    python3 deploy/make_secrets.py [--out deploy/secrets]      (make deploy-secrets)
    python3 deploy/make_secrets.py --tls [--tls-name HOST ...]  (also gRPC TLS: make deploy-tls)

`--tls` also writes a trial certificate authority and, signed by it, Triton's server certificate
and one client certificate (the in-network tools' under mutual TLS) into <out>/tls/: what
docker-compose.tls.yml mounts and the Kubernetes grpc-tls component's Secret holds. The server
certificate names the addresses clients dial there (TLS_NAMES, plus each --tls-name). For
production, put certificates of your own CA in the same files.

A file that exists is kept: Milvus and MinIO keep the credentials they first started with, so a
new random value would lock them out of their own data (delete tls/server.crt to issue it again
with other names). Standard library only, and the `openssl` command for --tls: it runs on a host
that has only the checkout and Docker.
"""
from __future__ import annotations

import argparse
import os
import secrets
import subprocess
import tempfile
from pathlib import Path

DEFAULT_OUT = Path(__file__).resolve().parent / "secrets"
ROOT_PASSWORD = "milvus_root_password"  # Milvus's `root` user, set on its first start
TOKEN = "milvus_token"  # root:<password>, what the Triton replicas sign in with (PRODUCTSEARCH_MILVUS_TOKEN_FILE)
MINIO_ACCESS_KEY = "minio_access_key"  # MinIO's root user, which Milvus stores its segments with
MINIO_SECRET_KEY = "minio_secret_key"
HELM_VALUES = "milvus-credentials.values.yaml"  # helm install ... -f milvus-values.yaml -f <this>
TLS_DIR = "tls"  # under --out: ca.crt/.key, server.crt/.key, client.crt/.key (PEM)
# Where the compose services and the Kubernetes Service are dialled: the in-container tools dial
# 127.0.0.1; the indexers and Locust the compose service names; pods the Service's DNS names.
TLS_NAMES = ("triton", "triton-milvus-a", "triton-milvus-b", "localhost", "127.0.0.1", "productsearch-triton",
             "productsearch-triton.productsearch.svc", "productsearch-triton.productsearch.svc.cluster.local")
CERT_DAYS = 365
CA_EXTENSIONS = "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\n"
LEAF_EXTENSIONS = ("basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
                   "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n")


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


def openssl(*args: str, stdin: str | None = None) -> str:
    """What `openssl ARGS` writes to stdout (PEM); its error in the exception."""
    result = subprocess.run(["openssl", *args], input=stdin, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"openssl {args[0]} failed: {result.stderr.strip()}")
    return result.stdout


def subject_alt_names(names: list[str]) -> str:
    """subjectAltName value: IP: for addresses, DNS: for host names."""
    import ipaddress

    def entry(name: str) -> str:
        try:
            return f"IP:{ipaddress.ip_address(name)}"
        except ValueError:
            return f"DNS:{name}"

    return ",".join(entry(name) for name in dict.fromkeys(names))


def issue(folder: Path, name: str, common_name: str, extensions: str, work: Path) -> None:
    """<name>.key (a new P-256 key, 0600) and <name>.crt signed by the CA in `folder`, where missing."""
    key = folder / f"{name}.key"
    write_once(key, openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"))
    if (folder / f"{name}.crt").exists():
        return
    (work / f"{name}.ext").write_text(LEAF_EXTENSIONS + extensions)
    request = openssl("req", "-new", "-key", str(key), "-subj", f"/CN={common_name}")
    write_once(folder / f"{name}.crt", openssl(
        "x509", "-req", "-CA", str(folder / "ca.crt"), "-CAkey", str(folder / "ca.key"),
        "-set_serial", str(secrets.randbits(63)), "-days", str(CERT_DAYS), "-extfile", str(work / f"{name}.ext"),
        stdin=request))


def make_tls(out: Path = DEFAULT_OUT, names: list[str] | None = None) -> dict[str, Path]:
    """The trial CA, server and client certificates in `out`/tls (made where missing); name -> path."""
    folder = out / TLS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    write_once(folder / "ca.key", openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"))
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        if not (folder / "ca.crt").exists():
            (work / "ca.cnf").write_text("[req]\ndistinguished_name=dn\nx509_extensions=ca\n[dn]\n[ca]\n" + CA_EXTENSIONS)
            write_once(folder / "ca.crt", openssl("req", "-x509", "-new", "-key", str(folder / "ca.key"),
                                                  "-config", str(work / "ca.cnf"), "-subj", "/CN=productsearch trial CA",
                                                  "-days", str(CERT_DAYS)))
        alt_names = subject_alt_names([*TLS_NAMES, *(names or [])])
        issue(folder, "server", "triton", f"extendedKeyUsage=serverAuth\nsubjectAltName={alt_names}\n", work)
        issue(folder, "client", "productsearch tools", "extendedKeyUsage=clientAuth\n", work)
    return {f"tls/{name}": folder / name for name in
            ("ca.crt", "ca.key", "server.crt", "server.key", "client.crt", "client.key")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder of the credential files")
    parser.add_argument("--tls", action="store_true", help="also a trial CA and gRPC TLS certificates in <out>/tls")
    parser.add_argument("--tls-name", action="append", default=[],
                        help="another host name or IP address the server certificate names (repeatable)")
    args = parser.parse_args(argv)
    made = make(args.out)
    if args.tls:
        made.update(make_tls(args.out, args.tls_name))
    for name, path in made.items():
        print(f"{name}: {path}")  # paths only, never a value
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
