"""The Milvus catalog store signs in to a Milvus server with credentials from a file or the
environment (never the URL or argv), refuses default ones, and still talks to milvus-lite, which
has no users; deploy/make_secrets.py makes those credentials once."""
from __future__ import annotations

import importlib.util
import stat
from pathlib import Path

import pytest

from productsearch.catalog.milvus import client as milvus_client
from productsearch.catalog.milvus.client import TOKEN_ENV, TOKEN_FILE_ENV, client_for, milvus_token
from productsearch.catalog.milvus.schema import parse_url
from productsearch.catalog.rows import StoreError

ROOT = Path(__file__).resolve().parents[2]


def make_secrets_module():
    spec = importlib.util.spec_from_file_location("make_secrets", ROOT / "deploy" / "make_secrets.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_token_comes_from_its_file_before_the_environment(tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text("root:a-long-random-password\n")
    assert milvus_token({TOKEN_FILE_ENV: str(token_file), TOKEN_ENV: "other:x-y-z-w"}) == "root:a-long-random-password"
    assert milvus_token({TOKEN_ENV: "reader:another-random-one"}) == "reader:another-random-one"
    assert milvus_token({}) is None  # no credentials: milvus-lite, or a server without authentication


@pytest.mark.parametrize("token", ["root:Milvus", "root:milvus", "minioadmin:minioadmin", "root:", "root:changeme",
                                   "root:REPLACE-WITH-A-RANDOM-PASSWORD"])
def test_a_default_or_placeholder_password_is_refused_without_showing_it(token):
    with pytest.raises(StoreError, match="default or placeholder") as refusal:
        milvus_token({TOKEN_ENV: token})
    assert token not in str(refusal.value)


def test_a_malformed_or_unreadable_token_is_refused(tmp_path):
    with pytest.raises(StoreError, match="user:password"):
        milvus_token({TOKEN_ENV: "just-a-password-without-a-user"})
    with pytest.raises(StoreError, match="cannot read"):
        milvus_token({TOKEN_FILE_ENV: str(tmp_path / "missing")})


def test_a_server_is_signed_in_to_with_the_token_and_milvus_lite_files_need_none(tmp_path, monkeypatch):
    """milvus-lite ignores users, so this shows the token path connects and calls, not that a
    server refuses a wrong one (no Milvus server here: README "Security")."""
    from productsearch.control.milvus_lite import MilvusLiteServer

    token_file = tmp_path / "token"
    token_file.write_text("root:a-long-random-password")
    monkeypatch.setenv(TOKEN_FILE_ENV, str(token_file))
    server = MilvusLiteServer(tmp_path / "milvus").start()
    try:
        url = parse_url(server.url)
        assert client_for(url).list_collections() == []
        embedded = parse_url(f"milvus+lite://{tmp_path / 'embedded'}")
        assert client_for(embedded).list_collections() == []
    finally:
        milvus_client._clients.pop(parse_url(server.url).uri, None)
        milvus_client._clients.pop(parse_url(f"milvus+lite://{tmp_path / 'embedded'}").uri, None)
        server.stop()


def test_make_secrets_makes_each_credential_once_private_and_random(tmp_path):
    make_secrets = make_secrets_module()
    first = make_secrets.make(tmp_path / "secrets")
    values = {name: path.read_text() for name, path in first.items()}
    assert stat.S_IMODE((tmp_path / "secrets").stat().st_mode) == 0o700
    for path in first.values():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    password = values[make_secrets.ROOT_PASSWORD]
    assert len(password) >= 24 and password.lower() not in milvus_client.DEFAULT_PASSWORDS
    assert milvus_token({TOKEN_FILE_ENV: str(first[make_secrets.TOKEN])}) == f"root:{password}"
    assert "minioadmin" not in "".join(values.values())
    assert make_secrets.make(tmp_path / "secrets") == first  # a second run keeps every value
    assert {name: path.read_text() for name, path in first.items()} == values
    assert make_secrets.make(tmp_path / "other")[make_secrets.ROOT_PASSWORD].read_text() != password


def test_the_helm_credentials_values_turn_authentication_on_with_the_same_secrets(tmp_path):
    import yaml

    make_secrets = make_secrets_module()
    made = make_secrets.make(tmp_path)
    values = yaml.safe_load(made[make_secrets.HELM_VALUES].read_text())
    user = yaml.safe_load(values["extraConfigFiles"]["user.yaml"])
    assert user["common"]["security"]["authorizationEnabled"] is True
    assert user["common"]["security"]["defaultRootPassword"] == made[make_secrets.ROOT_PASSWORD].read_text()
    assert values["minio"]["accessKey"] == made[make_secrets.MINIO_ACCESS_KEY].read_text()
    assert values["minio"]["secretKey"] == made[make_secrets.MINIO_SECRET_KEY].read_text()
