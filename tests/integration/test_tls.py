"""gRPC over mutual TLS end to end: the launcher starts tritonserver with a throwaway CA made
here (openssl CLI; nothing secret is committed), restores the generation and supervises over
TLS; only clients holding a certificate of that CA get answers."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from clients.search import SearchClient, SearchError
from productsearch.control.processes import free_ports
from productsearch.control.service import read_state
from productsearch.control.repository import link_repository
from tests.conftest import ROOT

pytestmark = pytest.mark.integration


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_ca(directory: Path, name: str) -> None:
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", f"{name}.key", "-out", f"{name}.crt", "-days", "1", "-subj", f"/CN={name}", cwd=directory)


def issue(directory: Path, ca: str, name: str, extensions: str) -> None:
    (directory / f"{name}.ext").write_text(extensions + "\n")
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}", cwd=directory)
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key", "-CAcreateserial",
            "-out", f"{name}.crt", "-days", "1", "-extfile", f"{name}.ext", cwd=directory)
    os.chmod(directory / f"{name}.key", 0o600)


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Path:
    if not shutil.which("openssl"):
        pytest.skip("openssl CLI not installed")
    directory = tmp_path_factory.mktemp("pki")
    make_ca(directory, "ca")
    issue(directory, "ca", "server", "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth")
    issue(directory, "ca", "client", "extendedKeyUsage=clientAuth")
    make_ca(directory, "rogue")  # another CA: its certificates must not be accepted
    issue(directory, "rogue", "intruder", "extendedKeyUsage=clientAuth")
    return directory


@pytest.fixture(scope="module")
def tls_service(small_catalog_repository, pki, tmp_path_factory):
    root = tmp_path_factory.mktemp("tls")
    repository = link_repository(small_catalog_repository, root / "model_repository", generations=[1],
                                 with_catalogs=True)
    run_dir = root / "run"
    http, grpc, metrics = free_ports(3)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRITON_", "PRODUCTSEARCH_ADMIN_KEY"))}
    launcher = [sys.executable, "-m", "productsearch.control.launcher"]
    started = subprocess.run(
        [*launcher, "start", "--model-repository", str(repository), "--run-dir", str(run_dir),
         "--host", "0.0.0.0", "--http-port", str(http), "--grpc-port", str(grpc), "--metrics-port", str(metrics),
         "--grpc-tls-cert", str(pki / "server.crt"), "--grpc-tls-key", str(pki / "server.key"),
         "--grpc-tls-root", str(pki / "ca.crt"), "--grpc-tls-mutual",
         "--grpc-tls-client-cert", str(pki / "client.crt"), "--grpc-tls-client-key", str(pki / "client.key")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    try:
        assert started.returncode == 0, started.stderr + started.stdout
        assert "serving generation 1" in started.stdout, "the launcher restored the generation over TLS"
        yield read_state(run_dir), run_dir
    finally:
        subprocess.run([*launcher, "stop", "--run-dir", str(run_dir)], cwd=ROOT, capture_output=True, timeout=120)


def tls_client(url: str, pki: Path, ca: str = "ca", cert: str | None = "client") -> SearchClient:
    return SearchClient(url, timeout_s=5, retries=0, ssl=True, root_certificates=str(pki / f"{ca}.crt"),
                        certificate_chain=str(pki / f"{cert}.crt") if cert else None,
                        private_key=str(pki / f"{cert}.key") if cert else None)


def test_a_client_with_a_certificate_of_the_ca_searches_over_tls(tls_service, pki):
    state, _ = tls_service
    with tls_client(state["grpc_url"], pki) as client:
        result = client.search("red mug", top_k=5)
    assert len(result.ids) == 5 and result.generation == 1
    cli = subprocess.run([sys.executable, "-m", "clients.search", "red mug", "--top-k", "3", "--url", state["grpc_url"],
                          "--root-cert", str(pki / "ca.crt"), "--client-cert", str(pki / "client.crt"),
                          "--client-key", str(pki / "client.key")], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert cli.returncode == 0 and "generation 1" in cli.stdout, cli.stderr


@pytest.mark.parametrize("who", ["plaintext", "no client certificate", "certificate of another CA",
                                 "server not trusted"])
def test_everyone_else_is_refused(tls_service, pki, who):
    state, _ = tls_service
    if who == "plaintext":
        client = SearchClient(state["grpc_url"], timeout_s=5, retries=0)
    elif who == "no client certificate":
        client = tls_client(state["grpc_url"], pki, cert=None)
    elif who == "certificate of another CA":
        client = tls_client(state["grpc_url"], pki, cert="intruder")
    else:
        client = tls_client(state["grpc_url"], pki, ca="rogue")
    with client, pytest.raises(SearchError) as caught:
        client.search("red mug")
    assert caught.value.status == "StatusCode.UNAVAILABLE", caught.value


def test_http_and_metrics_stay_on_loopback_while_grpc_takes_tls_on_every_address(tls_service):
    state, _ = tls_service
    listening = {c.laddr.port: c.laddr.ip for c in psutil.Process(state["pid"]).net_connections(kind="inet")
                 if c.status == psutil.CONN_LISTEN}
    assert listening[state["grpc_port"]] in ("0.0.0.0", "::")
    assert listening[state["http_port"]] == listening[state["metrics_port"]] == "127.0.0.1"


def test_the_supervisor_talks_tls_too(tls_service):
    state, run_dir = tls_service
    log = run_dir / "supervisor.log"
    deadline = time.monotonic() + 30
    while "first check done" not in (log.read_text() if log.exists() else "") and time.monotonic() < deadline:
        time.sleep(0.5)
    assert "first check done" in log.read_text() and "check failed" not in log.read_text(), log.read_text()
