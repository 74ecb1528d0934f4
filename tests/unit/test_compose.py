"""docker-compose.yml and the Dockerfile: valid Compose, and the production wiring we rely on.

No Docker engine here or in CI, so the file is checked offline:
- against the Compose Specification JSON schema, vendored as tests/schemas/compose-spec.json. It is
  the schema that Docker's own `docker-compose` 1.29.2 ships (PyPI wheel `docker-compose==1.29.2`,
  file compose/config/compose_spec.json, Apache-2.0, Docker, Inc.), unmodified: the sha256 below
  guards that;
- with Compose's variable interpolation done here (`${VAR:-default}`, `$$` for a literal `$`), as
  `docker compose` does before it validates;
- for what the deployment needs: services, ports, GPU reservation, shared volumes, health check,
  explicit model control, and the Triton release in the Dockerfile.
"""
from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
from pathlib import Path

import jsonschema  # requirements.txt (jsonschema==4.26.0)
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
SCHEMA_FILE = ROOT / "tests" / "schemas" / "compose-spec.json"
SCHEMA_SHA256 = "0dc04bd346dcfee1b1419628fff79937bbf076925f298f272a2b490e2b112bac"

TRITON_IMAGE = "nvcr.io/nvidia/tritonserver:24.10-py3"
MODEL_REPOSITORY = "/workspace/model_repository"

# Compose interpolation: $$ | ${NAME} | ${NAME:-default} ${NAME-default} ${NAME:?err} ${NAME?err} | $NAME
_VARIABLE = re.compile(
    r"\$(?:(?P<escaped>\$)"
    r"|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}"
    r"|(?P<named>[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<invalid>))"
)


def interpolate(value, env: dict[str, str]):
    """Compose's interpolation of every string in a loaded compose file (keys are left alone)."""
    if isinstance(value, dict):
        return {key: interpolate(item, env) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, env) for item in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match) -> str:
        if match.group("escaped"):
            return "$"
        if match.group("invalid") is not None:
            raise ValueError(f"invalid interpolation (write $$ for a literal $) at {match.start()} in {value!r}")
        name = match.group("braced") or match.group("named")
        op, arg = match.group("op"), match.group("arg")
        current = env.get(name)
        if op in (":-", "-"):
            return arg if (current is None or (op == ":-" and current == "")) else current
        if op in (":?", "?") and (current is None or (op == ":?" and current == "")):
            raise ValueError(f"required variable {name} is missing: {arg}")
        return current or ""

    return _VARIABLE.sub(substitute, value)


def load_compose(env: dict[str, str] | None = None) -> dict:
    return interpolate(yaml.safe_load(COMPOSE_FILE.read_text()), env or {})


@pytest.fixture(scope="module")
def compose() -> dict:
    return load_compose()


@pytest.fixture(scope="module")
def validator():
    assert hashlib.sha256(SCHEMA_FILE.read_bytes()).hexdigest() == SCHEMA_SHA256, (
        "tests/schemas/compose-spec.json differs from the vendored Compose schema")
    schema = json.loads(SCHEMA_FILE.read_text())
    # The draft the schema declares ($schema names it by an older URL jsonschema does not map).
    jsonschema.Draft201909Validator.check_schema(schema)
    return jsonschema.Draft201909Validator(schema)


def service_command(service: dict) -> str:
    command = service["command"]
    return command if isinstance(command, str) else " ".join(command)


def mounts(service: dict) -> dict[str, str]:
    """volume or host path -> container path, for short-syntax volume entries."""
    return {entry.split(":")[0]: entry.split(":")[1] for entry in service.get("volumes", [])}


# ---------------------------------------------------------------- the file is valid Compose


def test_compose_file_matches_the_compose_schema(compose, validator):
    errors = sorted(validator.iter_errors(compose), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors)


def test_schema_rejects_what_compose_rejects(compose, validator):
    """The vendored schema really validates: typical mistakes fail."""
    import copy

    bad = copy.deepcopy(compose)
    bad["services"]["triton"]["deploy"]["resources"]["reservations"]["devices"][0]["capabilitie"] = ["gpu"]
    assert not validator.is_valid(bad)
    bad = copy.deepcopy(compose)
    bad["services"]["triton"]["depends_on"]["build"]["condition"] = "service_done"
    assert not validator.is_valid(bad)
    bad = copy.deepcopy(compose)
    bad["services"]["triton"]["healthcheck"]["test"] = {"curl": "x"}
    assert not validator.is_valid(bad)


def test_interpolation_is_valid_and_overridable():
    with pytest.raises(ValueError):
        interpolate("echo $(date)", {})  # what `$$` in the command scripts avoids
    custom = load_compose({"TRITON_GRPC_PORT": "9001", "LOCUST_WEB_PORT": "9089"})
    assert "9001:8001" in custom["services"]["triton"]["ports"]
    assert "9089:8089" in custom["services"]["locust"]["ports"]


def test_command_scripts_are_valid_shell(compose):
    sh = shutil.which("sh")
    if sh is None:
        pytest.skip("no sh")
    for name, service in compose["services"].items():
        command = service.get("command")
        if isinstance(command, list) and command[:2] == ["sh", "-c"]:
            result = subprocess.run([sh, "-n", "-c", command[2]], capture_output=True, text=True)
            assert result.returncode == 0, f"{name}: {result.stderr}"


# ---------------------------------------------------------------- the deployment's wiring


def test_services(compose):
    assert {"build", "triton", "indexer", "locust"} <= set(compose["services"])


def test_one_shot_services_do_not_restart(compose):
    for name in ("build", "indexer"):
        assert compose["services"][name]["restart"] == "no"


def test_build_service_builds_models_with_device_auto(compose):
    command = compose["services"]["build"]["command"]
    assert command == "python3 build_models.py --preset demo --device auto"  # defaults
    custom = load_compose({"BUILD_MODELS_ARGS": "--preset clip --checkpoint /checkpoints"})
    assert custom["services"]["build"]["command"] == "python3 build_models.py --preset clip --checkpoint /checkpoints"


def test_triton_ports(compose):
    ports = compose["services"]["triton"]["ports"]
    assert {port.split(":")[-1] for port in ports} == {"8000", "8001", "8002"}
    assert {"8000:8000", "8001:8001", "8002:8002"} == set(ports)  # defaults


def test_model_repository_volume_shared_by_build_triton_indexer(compose):
    assert "model-repository" in compose["volumes"]
    for name in ("build", "triton", "indexer"):
        assert mounts(compose["services"][name]).get("model-repository") == MODEL_REPOSITORY, name
    # the catalog the build writes is the one the indexer reads
    assert mounts(compose["services"]["build"])["catalog-data"] == mounts(compose["services"]["indexer"])["catalog-data"]
    # the admin key triton makes is the one the indexer sends
    assert mounts(compose["services"]["triton"])["run"] == mounts(compose["services"]["indexer"])["run"]


def test_triton_reserves_a_gpu(compose):
    devices = compose["services"]["triton"]["deploy"]["resources"]["reservations"]["devices"]
    assert any(d.get("driver") == "nvidia" and "gpu" in d.get("capabilities", []) and d.get("count") in ("all", 1)
               for d in devices)


def test_triton_runs_tritonserver_in_explicit_mode(compose):
    command = service_command(compose["services"]["triton"])
    assert "exec tritonserver" in command
    assert f"--model-repository={MODEL_REPOSITORY}" in command
    assert "--model-control-mode=explicit" in command
    assert "productsearch.control.deploy --url 127.0.0.1:8001 restore" in command  # the serving generation back
    assert "--grpc-restricted-protocol=model-repository,shared-memory,logging,trace,statistics:" in command


def test_triton_healthcheck_and_runtime_settings(compose):
    triton = compose["services"]["triton"]
    assert "http://localhost:8000/v2/health/ready" in " ".join(triton["healthcheck"]["test"])
    assert triton["depends_on"]["build"]["condition"] == "service_completed_successfully"
    assert triton["shm_size"]
    assert triton["ulimits"]["memlock"] == -1
    assert triton["ulimits"]["stack"] == 67108864


def test_clients_wait_for_a_healthy_triton(compose):
    services = compose["services"]
    assert services["indexer"]["depends_on"]["triton"]["condition"] == "service_healthy"
    assert "triton:8001" in service_command(services["indexer"])
    assert "clients.index" in service_command(services["indexer"])
    assert services["locust"]["depends_on"]["triton"]["condition"] == "service_healthy"
    assert services["locust"]["depends_on"]["indexer"]["condition"] == "service_completed_successfully"
    assert "loadtest/locustfile.py" in service_command(services["locust"])
    assert "--host triton:8001" in service_command(services["locust"])
    assert "8089:8089" in services["locust"]["ports"]


def test_server_services_share_one_image(compose):
    images = {compose["services"][name]["image"] for name in ("build", "triton", "indexer")}
    assert len(images) == 1
    for name in ("build", "triton", "indexer"):
        assert compose["services"][name]["build"]["target"] == "server"
    assert compose["services"]["locust"]["build"]["target"] == "loadtest"


# ---------------------------------------------------------------- profile `scale`: Triton replicas on Milvus

SCALE = {"milvus-etcd", "milvus-minio", "milvus", "triton-milvus-a", "triton-milvus-b", "indexer-milvus"}
MILVUS_CATALOG = "milvus://milvus:19530?images=/srv/catalog-images"


def in_profile(service: dict, profile: str) -> bool:
    return profile in service.get("profiles", [])


def test_default_up_is_unchanged_by_the_scale_profile(compose):
    """`docker compose up` (no profile) starts exactly the four services it always did."""
    default = {name for name, service in compose["services"].items() if not service.get("profiles")}
    assert default == {"build", "triton", "indexer", "locust"}
    assert "PRODUCTSEARCH_CATALOG" not in compose["services"]["triton"]["environment"]  # SQLite in the volume
    for name in default:  # nothing the default services need waits on the profile
        assert not set(compose["services"][name].get("depends_on", {})) & SCALE, name


def test_scale_profile_services(compose):
    services = compose["services"]
    assert {name for name, s in services.items() if in_profile(s, "scale")} == SCALE
    assert re.fullmatch(r"milvusdb/milvus:v2\.6\.\d+", services["milvus"]["image"])
    assert services["milvus"]["command"][:2] == ["sh", "-c"]
    assert services["milvus"]["command"][2].rstrip().endswith("exec milvus run standalone")
    env = services["milvus"]["environment"]
    assert env["ETCD_ENDPOINTS"] == "milvus-etcd:2379" and env["MINIO_ADDRESS"] == "milvus-minio:9000"
    assert services["milvus"]["depends_on"] == {"milvus-etcd": {"condition": "service_healthy"},
                                                "milvus-minio": {"condition": "service_healthy"}}
    # health checks as in Milvus's own compose file: what `service_healthy` waits on
    assert "http://localhost:9091/healthz" in services["milvus"]["healthcheck"]["test"]
    assert services["milvus-etcd"]["healthcheck"]["test"] == ["CMD", "etcdctl", "endpoint", "health"]
    assert "http://localhost:9000/minio/health/live" in services["milvus-minio"]["healthcheck"]["test"]
    for name in ("milvus-etcd", "milvus-minio", "milvus"):
        assert mounts(services[name]), f"{name} keeps its data in a named volume"
        assert set(mounts(services[name])) <= set(compose["volumes"]), name


def test_scale_tritons_are_the_triton_service_on_milvus(compose):
    services = compose["services"]
    triton = services["triton"]
    ports = set()
    for name in ("triton-milvus-a", "triton-milvus-b"):
        replica = services[name]
        assert replica["environment"]["PRODUCTSEARCH_CATALOG"] == MILVUS_CATALOG, name
        assert "PRODUCTSEARCH_ADMIN_KEY" in replica["environment"]
        for key in ("command", "image", "healthcheck", "deploy", "shm_size", "ulimits", "init", "restart"):
            assert replica[key] == triton[key], f"{name}.{key} differs from triton's"
        assert mounts(replica)["catalog-images"] == MILVUS_CATALOG.split("images=")[1]  # shared image folder
        assert mounts(replica)["model-repository"] == MODEL_REPOSITORY
        assert mounts(replica)["run"] == mounts(triton)["run"]  # one admin key for all replicas
        assert {p.split(":")[-1] for p in replica["ports"]} == {"8000", "8001", "8002"}
        ports |= {p.split(":")[0] for p in replica["ports"]}
    assert len(ports) == 6 and not ports & {p.split(":")[0] for p in triton["ports"]}  # no host port clash
    a, b = services["triton-milvus-a"], services["triton-milvus-b"]
    assert a["depends_on"]["milvus"]["condition"] == "service_healthy"
    assert a["depends_on"]["triton"]["condition"] == "service_healthy"  # admin key and serving generation exist
    assert b["depends_on"]["triton-milvus-a"]["condition"] == "service_healthy"
    indexer = services["indexer-milvus"]
    assert "--url triton-milvus-a:8001,triton-milvus-b:8001" in service_command(indexer)
    assert all(indexer["depends_on"][n]["condition"] == "service_healthy" for n in ("triton-milvus-a", "triton-milvus-b"))


def test_scale_ports_are_overridable():
    custom = load_compose({"TRITON_SCALE_B_GRPC_PORT": "9201"})
    assert "9201:8001" in custom["services"]["triton-milvus-b"]["ports"]


# ---------------------------------------------------------------- profile `scale`: credentials

SHIPPED = [COMPOSE_FILE, DOCKERFILE, *sorted((ROOT / "deploy").rglob("*.yaml")), *sorted((ROOT / "deploy").rglob("*.yml"))]
DEFAULT_CREDENTIALS = ("minioadmin", "root:milvus", "defaultrootpassword: milvus", "defaultrootpassword: \"milvus\"")


def test_no_shipped_file_carries_a_default_credential():
    for path in SHIPPED:
        if "secrets" in path.relative_to(ROOT).parts:  # made by make_secrets.py, git-ignored
            continue
        text = path.read_text().lower()
        for default in DEFAULT_CREDENTIALS:
            assert default not in text, f"{path.relative_to(ROOT)} carries {default!r}"


def make_secrets_names() -> set[str]:
    module = make_secrets_module()
    return {module.ROOT_PASSWORD, module.TOKEN, module.MINIO_ACCESS_KEY, module.MINIO_SECRET_KEY}


def test_milvus_and_minio_take_their_credentials_from_the_secrets(compose):
    services = compose["services"]
    secrets = compose["secrets"]
    assert set(secrets) == make_secrets_names()  # every secret is a file make_secrets.py makes
    for name, secret in secrets.items():
        assert secret["file"] == f"./deploy/secrets/{name}"
    assert "deploy/secrets/" in (ROOT / ".gitignore").read_text().splitlines()
    minio = services["milvus-minio"]
    assert set(minio["secrets"]) == {"minio_access_key", "minio_secret_key"}
    assert "environment" not in minio or not {"MINIO_ACCESS_KEY", "MINIO_SECRET_KEY", "MINIO_ROOT_USER",
                                               "MINIO_ROOT_PASSWORD"} & set(minio["environment"])
    script = minio["command"][2]
    assert 'MINIO_ROOT_USER="$(cat /run/secrets/minio_access_key)"' in script
    assert 'MINIO_ROOT_PASSWORD="$(cat /run/secrets/minio_secret_key)"' in script
    milvus = services["milvus"]
    assert set(milvus["secrets"]) == {"milvus_root_password", "minio_access_key", "minio_secret_key"}
    script = milvus["command"][2]
    assert "authorizationEnabled: true" in script  # Milvus asks every caller to sign in
    assert "defaultRootPassword: \\\"$(cat /run/secrets/milvus_root_password)" in script
    assert "> /milvus/configs/user.yaml" in script
    for name in ("triton-milvus-a", "triton-milvus-b"):
        replica = services[name]
        assert replica["secrets"] == ["milvus_token"]
        assert replica["environment"]["PRODUCTSEARCH_MILVUS_TOKEN_FILE"] == "/run/secrets/milvus_token"
        assert "PRODUCTSEARCH_MILVUS_TOKEN" not in replica["environment"]  # the file, not a value


def test_etcd_and_minio_are_reachable_from_milvus_alone(compose):
    services = compose["services"]
    assert compose["networks"]["milvus-internal"]["internal"] is True
    for name in ("milvus-etcd", "milvus-minio"):
        assert services[name]["networks"] == ["milvus-internal"], name
        assert "ports" not in services[name], f"{name} publishes a host port"
    assert set(services["milvus"]["networks"]) == {"milvus-internal", "default"}
    assert "ports" not in services["milvus"]
    others = {n for n, s in services.items() if "milvus-internal" in s.get("networks", [])}
    assert others == {"milvus-etcd", "milvus-minio", "milvus"}


# ---------------------------------------------------------------- gRPC TLS: docker-compose.tls.yml

TLS_OVERRIDE = ROOT / "docker-compose.tls.yml"
TLS_SERVER_VARIABLES = {"TRITON_GRPC_TLS_CERT", "TRITON_GRPC_TLS_KEY", "TRITON_GRPC_TLS_ROOT"}
CLIENT_VARIABLES = {"TRITON_GRPC_TLS_ROOT", "TRITON_GRPC_TLS_CLIENT_CERT", "TRITON_GRPC_TLS_CLIENT_KEY"}
TLS_LINE = "tls=$(python3 -m productsearch.control.launcher tls-args)"


def merge_override(base: dict, override: dict) -> dict:
    """`docker compose -f base -f override`'s merge for the keys the override uses: a service's
    environment maps merge, its secrets merge by source, other keys are replaced; top-level
    mappings merge (Compose Specification, "Merge and override")."""
    import copy

    merged = copy.deepcopy(base)
    for name, service in override.get("services", {}).items():
        target = merged["services"].setdefault(name, {})
        for key, value in service.items():
            if key == "environment":
                target[key] = {**target.get(key, {}), **value}
            elif key == "secrets":
                target[key] = list(dict.fromkeys([*target.get(key, []), *value]))
            else:
                target[key] = value
    for key, value in override.items():
        if key != "services" and isinstance(value, dict):
            merged[key] = {**merged.get(key, {}), **value}
    return merged


def load_tls_compose(env: dict[str, str] | None = None) -> dict:
    override = interpolate(yaml.safe_load(TLS_OVERRIDE.read_text()), env or {})
    return merge_override(load_compose(env), {k: v for k, v in override.items() if not k.startswith("x-")})


def dials_triton(service: dict) -> bool:
    """Whether the service (or a tool in its command) is a gRPC client of a Triton service."""
    return "command" in service and bool(re.search(r"(127\.0\.0\.1|triton[\w-]*):8001", service_command(service)))


def secret_files(compose_file: dict) -> dict[str, str]:
    """/run/secrets/<name> -> the host file compose mounts there."""
    return {f"/run/secrets/{name}": secret["file"] for name, secret in compose_file.get("secrets", {}).items()}


@pytest.fixture(scope="module")
def tls_compose() -> dict:
    return load_tls_compose()


@pytest.fixture(scope="module")
def trial_pki(tmp_path_factory) -> tuple[Path, dict[str, Path]]:
    if shutil.which("openssl") is None:
        pytest.skip("no openssl CLI")
    out = tmp_path_factory.mktemp("secrets")
    return out, make_secrets_module().make_tls(out, ["search.example.com"])


def make_secrets_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_secrets", ROOT / "deploy" / "make_secrets.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tls_override_is_valid_compose_and_off_by_default(compose, tls_compose, validator):
    errors = sorted(validator.iter_errors(tls_compose), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors)
    for name, service in compose["services"].items():  # without the override: no TLS variable anywhere
        assert not set(service.get("environment") or {}) & (TLS_SERVER_VARIABLES | CLIENT_VARIABLES), name
    assert not {name for name in compose["secrets"] if name.startswith("grpc_tls")}


def test_tls_override_turns_on_the_launchers_tls_in_every_triton(tls_compose, trial_pki, monkeypatch, capsys):
    """Each service that execs tritonserver takes the launcher's TLS flags from the variables the
    override sets, and each variable names a file the override mounts as a secret."""
    from productsearch.control import launcher
    from productsearch.control.server import GrpcTls

    out, made = trial_pki
    files = secret_files(tls_compose)
    servers = {name: s for name, s in tls_compose["services"].items()
               if "command" in s and "exec tritonserver" in service_command(s)}
    assert set(servers) == {"triton", "triton-milvus-a", "triton-milvus-b"}
    for name, service in servers.items():
        script = service["command"][2]
        assert TLS_LINE in script and re.search(r"--log-verbose=0 \$tls\n", script), name
        assert script.index(TLS_LINE) < script.index("productsearch.control.supervisor"), "flags checked first"
        env = service["environment"]
        assert TLS_SERVER_VARIABLES <= set(env), name
        for variable, path in env.items():
            if variable.startswith("TRITON_GRPC_TLS_") and variable != "TRITON_GRPC_TLS_MUTUAL":
                assert path in files and Path(path).name in service["secrets"], f"{name}: {variable} not mounted"
        assert "milvus_token" in service["secrets"] or name == "triton"  # the replicas keep their own secret
        # what `launcher tls-args` gives tritonserver there, with the secrets' host files in their place
        for variable in [v for v in env if v.startswith("TRITON_GRPC_TLS_")]:
            value = env[variable]
            host = files.get(value)
            monkeypatch.setenv(variable, str(out / Path(host).relative_to("deploy/secrets")) if host else value)
        assert launcher.main(["tls-args"]) == 0
        flags = capsys.readouterr().out.split()
        expected = GrpcTls(made["tls/server.crt"], made["tls/server.key"], made["tls/ca.crt"]).server_args()
        assert flags == expected, name
    monkeypatch.setenv("TRITON_GRPC_TLS_MUTUAL", "1")  # TRITON_GRPC_TLS_MUTUAL=1 docker compose ... up
    assert load_tls_compose({"TRITON_GRPC_TLS_MUTUAL": "1"})["services"]["triton"]["environment"]["TRITON_GRPC_TLS_MUTUAL"] == "1"
    assert launcher.main(["tls-args"]) == 0
    assert "--grpc-use-ssl-mutual=true" in capsys.readouterr().out.split()


def test_tls_args_are_none_without_tls_and_refuse_a_missing_file(tmp_path, monkeypatch, capsys):
    from productsearch.control import launcher

    for variable in ("TRITON_GRPC_TLS_CERT", "TRITON_GRPC_TLS_KEY", "TRITON_GRPC_TLS_ROOT", "TRITON_GRPC_TLS_MUTUAL"):
        monkeypatch.delenv(variable, raising=False)
    assert launcher.main(["tls-args"]) == 0 and capsys.readouterr().out == ""  # the base file: plain gRPC
    monkeypatch.setenv("TRITON_GRPC_TLS_CERT", str(tmp_path / "missing.crt"))
    monkeypatch.setenv("TRITON_GRPC_TLS_KEY", str(tmp_path / "missing.key"))
    assert launcher.main(["tls-args"]) == 1  # `set -e`: the container stops before tritonserver starts
    assert "TLS file not found" in capsys.readouterr().err


def test_every_in_network_client_trusts_the_root_cert(tls_compose, monkeypatch):
    """The supervisor and restore (in the triton containers), the indexers and Locust: each finds
    the CA (and its client certificate, for mutual TLS) in the variables, mounted as secrets."""
    from clients.connection import TLS_ENV, add_connection_arguments, tls_from_args, tls_from_env

    files = secret_files(tls_compose)
    clients = {name for name, s in tls_compose["services"].items() if dials_triton(s)}
    assert clients == {"triton", "triton-milvus-a", "triton-milvus-b", "indexer", "indexer-milvus", "locust"}
    for name in clients:
        service = tls_compose["services"][name]
        env = service["environment"]
        assert set(TLS_ENV.values()) <= set(env), name
        for variable in TLS_ENV.values():
            assert env[variable] in files and Path(env[variable]).name in service["secrets"], f"{name}: {variable}"
        assert files[env["TRITON_GRPC_TLS_ROOT"]] == "./deploy/secrets/tls/ca.crt"
    # the clients' CLIs (clients.*, deploy, supervisor) and Locust read those variables themselves
    env = tls_compose["services"]["indexer"]["environment"]
    for variable in TLS_ENV.values():
        monkeypatch.setenv(variable, env[variable])

    def parsed(*argv: str):
        parser = __import__("argparse").ArgumentParser()
        add_connection_arguments(parser)
        return tls_from_args(parser.parse_args(argv))

    expected = ("/run/secrets/grpc_tls_ca", "/run/secrets/grpc_tls_client_cert", "/run/secrets/grpc_tls_client_key")
    assert tuple(vars(parsed()).values()) == expected
    assert tuple(vars(tls_from_env()).values()) == expected
    assert parsed("--root-cert", "mine.crt").root_cert == "mine.crt"  # a flag wins
    for variable in TLS_ENV.values():
        monkeypatch.delenv(variable)
    assert parsed() is None and tls_from_env() is None  # plain gRPC by default


def test_tls_secrets_are_the_files_make_secrets_writes(tls_compose, trial_pki):
    out, made = trial_pki
    for name, secret in yaml.safe_load(TLS_OVERRIDE.read_text())["secrets"].items():
        relative = Path(secret["file"]).relative_to("deploy/secrets")
        assert out / relative in made.values(), name
    mounted = {Path(f).name for f in secret_files(tls_compose).values() if "/tls/" in f}
    assert "ca.key" not in mounted  # the CA's key signs; no container needs it


def test_make_secrets_writes_a_chain_that_verifies(trial_pki):
    """A TLS handshake in memory (Python's ssl) with the trial files: the server certificate chains
    to the CA and names every address clients dial; the client certificate passes mutual TLS;
    keys are 0600 in a 0700 folder; a second run keeps every file."""
    import ssl
    import stat

    out, made = trial_pki
    assert stat.S_IMODE((out / "tls").stat().st_mode) == 0o700
    for name, path in made.items():
        if name.endswith(".key"):
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, name

    def handshake(hostname: str, client_cert: bool = True, ca: Path = made["tls/ca.crt"]) -> None:
        server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server.load_cert_chain(made["tls/server.crt"], made["tls/server.key"])
        server.load_verify_locations(made["tls/ca.crt"])
        server.verify_mode = ssl.CERT_REQUIRED  # mutual TLS
        client = ssl.create_default_context(cafile=str(ca))
        if client_cert:
            client.load_cert_chain(made["tls/client.crt"], made["tls/client.key"])
        buffers = [ssl.MemoryBIO() for _ in range(4)]
        ends = [client.wrap_bio(buffers[0], buffers[1], server_hostname=hostname),
                server.wrap_bio(buffers[1], buffers[0], server_side=True)]
        done = [False, False]
        for _ in range(20):
            for i, end in enumerate(ends):
                if not done[i]:
                    try:
                        end.do_handshake()
                        done[i] = True
                    except ssl.SSLWantReadError:
                        pass
            if all(done):
                return
        raise AssertionError("handshake did not finish")

    names = make_secrets_module().TLS_NAMES
    assert {"triton", "triton-milvus-a", "triton-milvus-b", "127.0.0.1", "productsearch-triton.productsearch.svc"} <= set(names)
    for hostname in [*names, "search.example.com"]:
        handshake(hostname)
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake("elsewhere.example.com")  # a name the certificate does not carry
    with pytest.raises(ssl.SSLError):
        handshake("triton", client_cert=False)  # mutual TLS without a client certificate
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake("triton", ca=made["tls/server.crt"])  # trusting another CA
    before = {name: path.read_bytes() for name, path in made.items()}
    assert make_secrets_module().make_tls(out) == made
    assert {name: path.read_bytes() for name, path in made.items()} == before


# ---------------------------------------------------------------- Dockerfile


def dockerfile_stages() -> dict[str, str]:
    """stage name -> base image, from the FROM lines."""
    stages = {}
    for line in DOCKERFILE.read_text().splitlines():
        match = re.match(r"\s*FROM\s+(\S+)(?:\s+AS\s+(\S+))?", line, re.IGNORECASE)
        if match:
            stages[match.group(2) or str(len(stages))] = match.group(1)
    return stages


def test_dockerfile_is_based_on_triton_24_10(compose):
    stages = dockerfile_stages()
    assert stages["server"] == TRITON_IMAGE
    assert stages["server"].rsplit(":", 1)[1] == "24.10-py3"
    for service in compose["services"].values():  # every target compose builds exists
        if "build" in service:  # Milvus and its dependencies are published images
            assert service["build"]["target"] in stages


def test_dockerfile_installs_what_the_container_needs():
    text = DOCKERFILE.read_text()
    assert "numpy==1." in text  # numpy 2 breaks the python backend stub
    assert "nvidia-pytriton" not in re.sub(r"#.*", "", text)  # the container has its own server
    assert "download.pytorch.org/whl/cu126" in text  # torch built for the container's CUDA 12.6
    assert "pymilvus==3.0.2" in text  # the catalog store on Milvus (profile scale, Kubernetes)
    assert re.search(r"pip install .*-e \.", text)  # model.py files import productsearch


def test_dockerignore_keeps_local_state_out():
    patterns = {line.strip().rstrip("/") for line in DOCKERIGNORE.read_text().splitlines()
                if line.strip() and not line.startswith("#")}
    assert {".venv", "data", "run", "model_repository/*/[0-9]*/*"} <= patterns
    assert "!model_repository/*/1/model.py" in patterns


# ---------------------------------------------------------------- optional: the real Compose CLI


def compose_cli() -> list[str] | None:
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True)
        if probe.returncode == 0:
            return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


def test_compose_cli_accepts_the_file(tmp_path):
    """Where a Compose CLI is installed (Docker's plugin, or Debian's `docker-compose`), it must
    parse, interpolate and validate the file too; it needs no Docker engine for `config`."""
    cli = compose_cli()
    if cli is None:
        pytest.skip("no docker compose / docker-compose CLI installed")
    result = subprocess.run([*cli, "-f", str(COMPOSE_FILE), "--project-directory", str(ROOT), "config", "-q"],
                            capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr


def test_triton_forwards_and_restricts_as_make_serve_does(compose):
    """The key headers forwarded to the models and the admin-only protocols are the launcher's own
    (a pattern that forgot `authorization` would refuse every keyed request in production)."""
    from pathlib import Path

    from productsearch.control.server import TritonServer
    from productsearch.control.triton_install import TritonInstall

    ours = TritonServer(admin_key="k" * 16).command(TritonInstall(binary=Path("/bin/tritonserver"), backend_dir=Path("/b")))
    command = service_command(compose["services"]["triton"]).replace("$$", "$")
    for name in ("grpc-header-forward-pattern", "http-header-forward-pattern", "grpc-restricted-protocol",
                 "http-restricted-api"):
        value = next(arg.split("=", 1)[1] for arg in ours if arg.startswith(f"--{name}="))
        assert f'"--{name}={value.replace("k" * 16, "$key")}"' in command, name
