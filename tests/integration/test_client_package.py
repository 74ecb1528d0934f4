"""The client package installs alone (`pip install ./clients` into an empty virtualenv: no torch,
no server package) and searches the session's real tritonserver from there."""
from __future__ import annotations

import os
import subprocess
import venv

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.integration
ALONE = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # nothing of a checkout on the venv's path


@pytest.fixture(scope="module")
def client_venv(tmp_path_factory):
    home = tmp_path_factory.mktemp("client-venv")
    venv.EnvBuilder(with_pip=True).create(home / "venv")
    python = home / "venv" / "bin" / "python"
    # a copy of clients/ outside the repository, so nothing of the server package is on its path
    subprocess.run(["cp", "-r", str(ROOT / "clients"), str(home / "clients")], check=True)
    install = subprocess.run([str(python), "-m", "pip", "install", "-q", str(home / "clients")],
                             capture_output=True, text=True, timeout=600, env=ALONE)
    assert install.returncode == 0, install.stderr[-2000:]
    return python, home


def test_installs_without_torch_or_the_server_package(client_venv):
    python, home = client_venv
    probe = ("import importlib.util as u, clients.search, clients.contract; "
             "print([m for m in ('torch', 'productsearch', 'faiss', 'transformers') if u.find_spec(m)])")
    out = subprocess.run([str(python), "-c", probe], capture_output=True, text=True, cwd=home, timeout=120, env=ALONE)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_the_installed_cli_searches_the_real_server(client_venv, triton):
    python, home = client_venv
    out = subprocess.run([str(python), "-m", "clients.search", "red mug", "--top-k", "3", "--url", triton.grpc_url],
                         capture_output=True, text=True, cwd=home, timeout=120, env=ALONE)
    assert out.returncode == 0, out.stderr
    rows = [line for line in out.stdout.splitlines()[1:] if line.strip()]
    assert len(rows) == 3 and all("mug" in row.lower() or "杯" in row for row in rows), out.stdout  # 马克杯: mug
