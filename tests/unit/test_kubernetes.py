"""deploy/kubernetes/: valid Kubernetes, and the wiring the replicas rely on.

No cluster here or in CI, so the manifests are checked offline:
- every resource against the JSON schemas of one Kubernetes release, strict (an unknown or
  misspelt field fails), as bundled by kubernetes-validate (requirements.txt);
- kinds those schemas do not have (the Prometheus Operator's ServiceMonitor) by an explicit
  check of their fields below: a new kind with no schema and no check fails the test;
- the Helm values files (Milvus, prometheus-adapter) for what the manifests depend on;
- the wiring: probes against ports and Service, HPA against Deployment and adapter rule, the
  Secret key, the image against compose, the volumes' access modes, the kustomization's list.
"""
from __future__ import annotations

import copy
import re
import shutil
import subprocess
from pathlib import Path

import kubernetes_validate  # requirements.txt (kubernetes-validate==1.37.0)
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "kubernetes"
KUBERNETES_VERSION = "1.31.0"  # a release every maintained distribution still runs
NAMESPACE = "productsearch"
VALUES_FILES = {"milvus-values.yaml", "prometheus-adapter-values.yaml"}  # Helm values, not resources
TEMPLATES = {"admin-key-secret.template.yaml", "triton-tls-secret.template.yaml"}  # applied by hand (kubectl create secret), never by -k
CATALOG_URL = "milvus://milvus.productsearch.svc:19530?images=/srv/catalog-images"


def load(name: str) -> list[dict]:
    return [doc for doc in yaml.safe_load_all((K8S / name).read_text()) if doc is not None]


def kustomization() -> dict:
    return load("kustomization.yaml")[0]


def resources() -> list[dict]:
    return [doc for name in kustomization()["resources"] for doc in load(name)]


def one(kind: str) -> dict:
    found = [r for r in resources() if r["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def container() -> dict:
    return one("Deployment")["spec"]["template"]["spec"]["containers"][0]


def kubernetes_expand(text: str) -> str:
    """What the kubelet does to command/args: $$ is a literal $ ($(VAR) would be expanded)."""
    return text.replace("$$", "$")


# ---------------------------------------------------------------- schemas


def check_service_monitor(resource: dict) -> list[str]:
    """The fields of monitoring.coreos.com/v1 ServiceMonitor this deployment uses (no schema bundled)."""
    errors = []
    allowed = {"apiVersion", "kind", "metadata", "spec"}
    errors += [f"unknown top-level field {k}" for k in set(resource) - allowed]
    spec = resource.get("spec", {})
    errors += [f"unknown spec field {k}" for k in set(spec) - {"selector", "endpoints", "namespaceSelector"}]
    if not spec.get("selector", {}).get("matchLabels"):
        errors.append("spec.selector.matchLabels is missing")
    for endpoint in spec.get("endpoints", []) or [None]:
        if not isinstance(endpoint, dict) or not isinstance(endpoint.get("port"), str):
            errors.append("every endpoint needs a named port")
            continue
        errors += [f"unknown endpoint field {k}" for k in set(endpoint) - {"port", "path", "interval", "scrapeTimeout"}]
    return errors


HAND_CHECKED = {("monitoring.coreos.com/v1", "ServiceMonitor"): check_service_monitor}


def schema_errors(resource: dict) -> list[str]:
    key = (resource.get("apiVersion"), resource.get("kind"))
    if key in HAND_CHECKED:
        return HAND_CHECKED[key](resource)
    try:
        kubernetes_validate.validate(resource, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as err:
        return [f"{'/'.join(map(str, err.path))}: {err.message}"]
    except kubernetes_validate.SchemaNotFoundError as err:
        return [f"no schema and no hand check: {err.message}"]  # never skipped silently
    return []


def all_documents() -> list[tuple[str, dict]]:
    return [(name, doc) for name in sorted(kustomization()["resources"]) + sorted(TEMPLATES) for doc in load(name)]


@pytest.mark.parametrize("name, resource", all_documents(),
                         ids=[f"{n}:{d['kind']}" for n, d in all_documents()])
def test_resource_matches_its_schema(name, resource):
    assert not schema_errors(resource), f"{name}: " + "; ".join(schema_errors(resource))


def test_schemas_are_strict():
    """The check really validates: a misspelt field, a wrong type, an unknown kind all fail."""
    deployment = copy.deepcopy(one("Deployment"))
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["pth"] = "/x"
    assert schema_errors(deployment)
    deployment = copy.deepcopy(one("Deployment"))
    deployment["spec"]["replicas"] = "two"
    assert schema_errors(deployment)
    hpa = copy.deepcopy(one("HorizontalPodAutoscaler"))
    hpa["spec"]["metrics"][0]["pods"]["metric"]["nam"] = "x"
    assert schema_errors(hpa)
    monitor = copy.deepcopy(one("ServiceMonitor"))
    monitor["spec"]["endpoints"][0]["prot"] = "metrics"
    assert schema_errors(monitor)
    assert schema_errors({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}})


def test_kustomization_lists_every_manifest():
    listed = set(kustomization()["resources"])
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == on_disk - VALUES_FILES - TEMPLATES, "kustomization.yaml resources differ from the manifests in the folder"
    assert kustomization()["namespace"] == NAMESPACE
    assert one("Namespace")["metadata"]["name"] == NAMESPACE
    for resource in resources():  # no resource pins another namespace than the kustomization's
        assert resource["metadata"].get("namespace", NAMESPACE) == NAMESPACE, resource["metadata"]["name"]


# ---------------------------------------------------------------- the replicas


def test_triton_command_matches_compose():
    script = kubernetes_expand(container()["args"][0])
    assert container()["command"] == ["sh", "-c"]
    for flag in ("--model-repository=/workspace/model_repository", "--model-control-mode=explicit",
                 "--strict-readiness=true", "--grpc-header-forward-pattern=^(authorization|x-api-key|catalog-write-key)$",
                 "--grpc-restricted-protocol=model-repository,shared-memory,logging,trace,statistics:admin-key=$key",
                 "--http-restricted-api=model-repository,shared-memory,logging,trace,statistics:admin-key=$key"):
        assert flag in script, flag
    assert "exec tritonserver" in script
    assert "productsearch.control.deploy --url 127.0.0.1:8001 restore" in script
    assert "productsearch.control.supervisor --url 127.0.0.1:8001 --pid $$ " in script  # the shell's PID
    assert 'test -n "$PRODUCTSEARCH_ADMIN_KEY"' in script  # no per-replica key
    assert "python3 -m productsearch.control.admin check" in script  # no placeholder key


def test_triton_command_is_valid_shell():
    sh = shutil.which("sh")
    if sh is None:
        pytest.skip("no sh")
    result = subprocess.run([sh, "-n", "-c", kubernetes_expand(container()["args"][0])], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_probes_hit_the_http_port_and_triton_health():
    ports = {p["name"]: p["containerPort"] for p in container()["ports"]}
    assert ports == {"http": 8000, "grpc": 8001, "metrics": 8002}
    assert container()["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": "http"}
    assert container()["livenessProbe"]["httpGet"] == {"path": "/v2/health/live", "port": "http"}
    startup = container()["startupProbe"]
    assert startup["httpGet"]["port"] == "http"
    assert startup["httpGet"]["path"] == "/v2/models/upsert_products/ready"  # compose's healthcheck waits for it too
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 300  # compose's start_period


def test_service_exposes_the_container_ports():
    service = one("Service")
    deployment = one("Deployment")
    assert service["spec"]["selector"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    assert deployment["spec"]["selector"]["matchLabels"] == service["spec"]["selector"]
    names = {p["name"] for p in container()["ports"]}
    ports = {p["name"]: (p["port"], p["targetPort"]) for p in service["spec"]["ports"]}
    assert ports == {"http": (8000, "http"), "grpc": (8001, "grpc"), "metrics": (8002, "metrics")}
    assert {target for _, target in ports.values()} <= names


def test_one_gpu_per_replica():
    resources_ = container()["resources"]
    assert resources_["limits"]["nvidia.com/gpu"] == 1
    assert resources_["requests"]["nvidia.com/gpu"] == 1


def test_catalog_is_milvus_with_the_shared_images():
    env = {e["name"]: e for e in container()["env"]}
    assert env["PRODUCTSEARCH_CATALOG"]["value"] == CATALOG_URL
    images = CATALOG_URL.split("images=")[1]
    mounts = {m["name"]: m for m in container()["volumeMounts"]}
    assert mounts["catalog-images"]["mountPath"] == images
    assert mounts["model-repository"]["mountPath"] == "/workspace/model_repository"
    assert mounts["model-repository"]["readOnly"] is True
    assert mounts["dshm"]["mountPath"] == "/dev/shm"


def test_volumes_access_modes():
    claims = {c["metadata"]["name"]: c for c in resources() if c["kind"] == "PersistentVolumeClaim"}
    volumes = {v["name"]: v for v in one("Deployment")["spec"]["template"]["spec"]["volumes"]}
    models = claims[volumes["model-repository"]["persistentVolumeClaim"]["claimName"]]
    images = claims[volumes["catalog-images"]["persistentVolumeClaim"]["claimName"]]
    assert models["spec"]["accessModes"] == ["ReadOnlyMany"]
    assert volumes["model-repository"]["persistentVolumeClaim"]["readOnly"] is True
    assert images["spec"]["accessModes"] == ["ReadWriteMany"]  # every replica writes the upserts' images
    assert "s3://" in (K8S / "model-repository-pvc.yaml").read_text()  # the documented alternative


def test_admin_key_comes_from_the_secret_template():
    secret = load("admin-key-secret.template.yaml")[0]
    ref = {e["name"]: e for e in container()["env"]}["PRODUCTSEARCH_ADMIN_KEY"]["valueFrom"]["secretKeyRef"]
    assert ref["name"] == secret["metadata"]["name"]
    assert ref["key"] in secret["stringData"]
    assert not ref.get("optional", False)  # no Secret, no start
    assert secret["stringData"][ref["key"]] == "REPLACE-WITH-A-RANDOM-KEY"  # no real key committed
    assert "Secret" not in {r["kind"] for r in resources()}  # `apply -k` never overwrites the real one


def test_image_is_the_one_compose_builds():
    from tests.unit.test_compose import load_compose

    compose = load_compose()
    assert container()["image"] == compose["services"]["triton"]["image"]
    assert compose["services"]["triton"]["build"]["target"] == "server"


def test_pdb_covers_the_replicas():
    pdb = one("PodDisruptionBudget")
    deployment = one("Deployment")
    assert pdb["spec"]["selector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
    assert pdb["spec"]["maxUnavailable"] == 1
    assert one("HorizontalPodAutoscaler")["spec"]["minReplicas"] >= 2  # one may be disrupted, one serves


# ---------------------------------------------------------------- autoscaling on queue time


def adapter_rules() -> list[dict]:
    return yaml.safe_load((K8S / "prometheus-adapter-values.yaml").read_text())["rules"]["custom"]


def test_hpa_scales_the_deployment_on_the_adapter_metric():
    hpa = one("HorizontalPodAutoscaler")
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["apiVersion"], target["kind"], target["name"]) == ("apps/v1", "Deployment", one("Deployment")["metadata"]["name"])
    metric = hpa["spec"]["metrics"][0]
    assert metric["type"] == "Pods"
    names = {rule["name"]["as"] for rule in adapter_rules()}
    assert metric["pods"]["metric"]["name"] in names
    assert hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]


def test_adapter_rule_is_queue_time_per_request():
    allowed = {"seriesQuery", "seriesFilters", "resources", "name", "metricsQuery"}  # prometheus-adapter's rule fields
    for rule in adapter_rules():
        assert set(rule) <= allowed, set(rule) - allowed
        assert rule["seriesQuery"].startswith("nv_inference_queue_duration_us{")
        assert f'namespace="{NAMESPACE}"' in rule["seriesQuery"]
        assert rule["resources"]["overrides"] == {"namespace": {"resource": "namespace"}, "pod": {"resource": "pod"}}
        query = rule["metricsQuery"]
        assert re.search(r"delta\(nv_inference_queue_duration_us\{<<\.LabelMatchers>>\}\[\w+\]\)\s*/", query)
        assert "nv_inference_request_success{<<.LabelMatchers>>}" in query
        assert "by (<<.GroupBy>>)" in query
        assert query.count("(") == query.count(")")


def test_prometheus_scrapes_the_metrics_port():
    monitor = one("ServiceMonitor")
    service = one("Service")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"][0]["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"


# ---------------------------------------------------------------- Milvus (its own chart)


def test_milvus_values_match_the_catalog_url():
    values = yaml.safe_load((K8S / "milvus-values.yaml").read_text())
    assert values["cluster"]["enabled"] is True
    assert re.fullmatch(r"v2\.6\.\d+", values["image"]["all"]["tag"])
    assert values["etcd"]["replicaCount"] % 2 == 1 and values["etcd"]["replicaCount"] >= 3
    assert values["minio"]["persistence"]["enabled"] and values["etcd"]["persistence"]["enabled"]
    assert values["queryNode"]["replicas"] >= 2
    readme = (K8S / "README.md").read_text()
    # release `milvus` in this namespace is what makes milvus.<ns>.svc:19530
    install = re.search(r"helm install (\S+) milvus/milvus .*-n (\S+) -f deploy/kubernetes/milvus-values.yaml", readme)
    assert install, "README.md lacks the helm install command for milvus-values.yaml"
    host = CATALOG_URL.split("//")[1].split(":")[0]
    assert host == f"{install.group(1)}.{install.group(2)}.svc"


def test_the_secret_templates_placeholder_is_refused(monkeypatch, capsys):
    """The template's value (and any short key) stops the container before tritonserver starts."""
    import yaml as _yaml

    from productsearch.control.admin import main

    template = _yaml.safe_load((K8S / "admin-key-secret.template.yaml").read_text())
    for weak in (template["stringData"]["admin-key"], "short-key"):
        monkeypatch.setenv("PRODUCTSEARCH_ADMIN_KEY", weak)
        assert main(["check"]) == 1
        assert weak not in capsys.readouterr().err  # the message never shows the key
    monkeypatch.setenv("PRODUCTSEARCH_ADMIN_KEY", "a-real-random-key-of-32-characters!")
    assert main(["check"]) == 0
    monkeypatch.delenv("PRODUCTSEARCH_ADMIN_KEY")
    assert main(["check"]) == 1


# ---------------------------------------------------------------- credentials and network policy


def test_milvus_requires_sign_in_and_the_replicas_read_their_token_from_a_secret():
    values = yaml.safe_load((K8S / "milvus-values.yaml").read_text())
    user = yaml.safe_load(values["extraConfigFiles"]["user.yaml"])
    assert user["common"]["security"]["authorizationEnabled"] is True
    assert "accessKey" not in values["minio"] and "secretKey" not in values["minio"]  # from the credentials file
    env = {e["name"]: e for e in container()["env"]}
    token_file = Path(env["PRODUCTSEARCH_MILVUS_TOKEN_FILE"]["value"])
    assert "PRODUCTSEARCH_MILVUS_TOKEN" not in env  # a mounted file, not an environment value
    mounts = {m["mountPath"]: m for m in container()["volumeMounts"]}
    mount = mounts[str(token_file.parent)]
    assert mount["readOnly"] is True
    volume = {v["name"]: v for v in one("Deployment")["spec"]["template"]["spec"]["volumes"]}[mount["name"]]
    assert volume["secret"]["secretName"] == "productsearch-milvus"
    readme = (K8S / "README.md").read_text()
    assert f"create secret generic productsearch-milvus --from-file={token_file.name}=deploy/secrets/milvus_token" in readme
    assert re.search(r"helm install milvus .*-f deploy/kubernetes/milvus-values.yaml -f deploy/secrets/milvus-credentials.values.yaml", readme)


def policies() -> dict[str, dict]:
    return {r["metadata"]["name"]: r for r in resources() if r["kind"] == "NetworkPolicy"}


def test_network_policy_closes_the_namespace_and_opens_only_grpc_and_metrics():
    found = policies()
    deny = found["productsearch-default-deny"]["spec"]
    assert deny == {"podSelector": {}, "policyTypes": ["Ingress"]}  # every pod isolated, no rule
    same = found["productsearch-same-namespace"]["spec"]["ingress"]
    assert same == [{"from": [{"podSelector": {}}]}]  # this namespace's pods only: Milvus, etcd, MinIO stay inside
    triton_labels = one("Deployment")["spec"]["template"]["metadata"]["labels"]
    ports = {p["name"]: p["containerPort"] for p in container()["ports"]}
    grpc = found["productsearch-triton-grpc-from-shops"]["spec"]
    assert grpc["podSelector"]["matchLabels"].items() <= triton_labels.items()
    assert grpc["ingress"] == [{"from": [{"namespaceSelector": {"matchLabels": {"productsearch.io/search-client": "true"}}}],
                                "ports": [{"port": "grpc", "protocol": "TCP"}]}]
    metrics = found["productsearch-metrics-from-prometheus"]["spec"]["ingress"]
    assert len(metrics) == 1 and len(metrics[0]["from"]) == 1
    source = metrics[0]["from"][0]
    assert source["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "monitoring"}
    assert source["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "prometheus"}
    assert {p["port"] for p in metrics[0]["ports"]} == {ports["metrics"], 9091}  # Triton's and Milvus's metrics
    for name, policy in found.items():  # nothing else comes from outside: no ipBlock, no rule open to all
        for rule in policy["spec"].get("ingress", []):
            assert rule.get("from"), f"{name}: a rule without `from` admits every source"
            assert all("ipBlock" not in peer for peer in rule["from"]), name
            if any("namespaceSelector" in peer for peer in rule["from"]):
                assert {p["port"] for p in rule["ports"]} <= {"grpc", ports["metrics"], 9091}, name


# ---------------------------------------------------------------- gRPC TLS: components/grpc-tls

TLS_COMPONENT = K8S / "components" / "grpc-tls"
TLS_OVERLAY = ROOT / "deploy" / "kubernetes-grpc-tls"


def with_tls_patch(deployment: dict) -> dict:
    """The component's strategic-merge patch applied as kustomize does for the fields it sets:
    containers matched by name, their env/volumeMounts and the pod's volumes merged by name."""
    patched = copy.deepcopy(deployment)
    patch = yaml.safe_load((TLS_COMPONENT / "triton-tls-patch.yaml").read_text())["spec"]["template"]["spec"]

    def merge(into: list[dict], items: list[dict]) -> None:
        by_name = {item["name"]: i for i, item in enumerate(into)}
        for item in items:
            if item["name"] in by_name:
                into[by_name[item["name"]]] = {**into[by_name[item["name"]]], **item}
            else:
                into.append(item)

    pod = patched["spec"]["template"]["spec"]
    for patch_container in patch["containers"]:
        target = next(c for c in pod["containers"] if c["name"] == patch_container["name"])
        for key in ("env", "volumeMounts"):
            merge(target.setdefault(key, []), patch_container.get(key, []))
    merge(pod["volumes"], patch["volumes"])
    return patched


def tls_wiring(deployment: dict) -> tuple[dict[str, str], dict[str, dict], dict[str, dict]]:
    pod = deployment["spec"]["template"]["spec"]
    triton = next(c for c in pod["containers"] if c["name"] == "triton")
    env = {e["name"]: e.get("value") for e in triton["env"] if e["name"].startswith("TRITON_GRPC_TLS_")}
    return env, {m["mountPath"]: m for m in triton["volumeMounts"]}, {v["name"]: v for v in pod["volumes"]}


def test_grpc_tls_is_off_in_the_default_manifests():
    env, _, _ = tls_wiring(one("Deployment"))
    assert env == {}
    script = kubernetes_expand(container()["args"][0])
    assert "tls=$(python3 -m productsearch.control.launcher tls-args)" in script  # as compose: the launcher's flags
    assert re.search(r"--log-verbose=0 \$tls\n", script)


def test_grpc_tls_component_mounts_the_secret_and_sets_the_launchers_variables():
    component = yaml.safe_load((TLS_COMPONENT / "kustomization.yaml").read_text())
    assert component["kind"] == "Component" and component["apiVersion"] == "kustomize.config.k8s.io/v1alpha1"
    assert component["patches"] == [{"path": "triton-tls-patch.yaml",
                                      "target": {"kind": "Deployment", "name": one("Deployment")["metadata"]["name"]}}]
    patched = with_tls_patch(one("Deployment"))
    assert not schema_errors(patched), schema_errors(patched)
    env, mounts, volumes = tls_wiring(patched)
    assert set(env) == {"TRITON_GRPC_TLS_CERT", "TRITON_GRPC_TLS_KEY", "TRITON_GRPC_TLS_ROOT"}
    folder = {str(Path(path).parent) for path in env.values()}
    assert len(folder) == 1 and mounts[folder.pop()]["readOnly"] is True
    mount = mounts[str(Path(env["TRITON_GRPC_TLS_CERT"]).parent)]
    secret = load("triton-tls-secret.template.yaml")[0]
    assert volumes[mount["name"]]["secret"]["secretName"] == secret["metadata"]["name"]
    assert volumes[mount["name"]]["secret"]["defaultMode"] == 0o400
    assert secret["type"] == "kubernetes.io/tls"  # what cert-manager and `kubectl create secret tls` write
    assert {Path(path).name for path in env.values()} == set(secret["stringData"]) == {"tls.crt", "tls.key", "ca.crt"}
    assert all(value.startswith("REPLACE") for value in secret["stringData"].values())  # no key committed
    # the tools in the pod (supervisor, restore) trust the CA through the variable clients read
    from clients.connection import TLS_ENV

    assert env[TLS_ENV["root_cert"]].endswith("/ca.crt")
    readme = (K8S / "README.md").read_text()
    assert ("create secret generic productsearch-triton-tls --type=kubernetes.io/tls "
            "--from-file=tls.crt=deploy/secrets/tls/server.crt") in " ".join(readme.replace("\\\n", " ").split())
    assert "kubectl apply -k deploy/kubernetes-grpc-tls" in readme


def test_kustomize_builds_the_tls_overlay_as_the_patch_says():
    """Where kubectl is installed, its kustomize builds the overlay (component included) into the
    default resources with the patch applied, and nothing else changed."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("no kubectl")

    def build(folder: Path) -> list[dict]:
        result = subprocess.run([kubectl, "kustomize", str(folder)], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        return [doc for doc in yaml.safe_load_all(result.stdout) if doc]

    default, tls = build(K8S), build(TLS_OVERLAY)
    assert [(d["kind"], d["metadata"]["name"]) for d in default] == [(d["kind"], d["metadata"]["name"]) for d in tls]
    for before, after in zip(default, tls):
        if before["kind"] == "Deployment":
            assert tls_wiring(after) == tls_wiring(with_tls_patch(before))
            after, before = copy.deepcopy(after), with_tls_patch(before)
            for resource in (before, after):  # the rest is untouched (order of merged lists aside)
                pod = resource["spec"]["template"]["spec"]
                pod["volumes"] = sorted(pod["volumes"], key=lambda v: v["name"])
                for c in pod["containers"]:
                    c["env"] = sorted(c["env"], key=lambda e: e["name"])
                    c["volumeMounts"] = sorted(c["volumeMounts"], key=lambda m: m["name"])
        assert before == after, before["kind"]
