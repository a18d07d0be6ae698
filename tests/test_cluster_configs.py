"""Every shipped cluster config and manifest loads, validates, and keeps its doors locked.

What is validated, honestly:
- cluster/aws.yaml, cluster/gcp.yaml: Ray's own cluster-config schema (ray/autoscaler/ray-schema.json,
  via jsonschema), after Ray fills in the provider defaults exactly as `ray up` does (no cloud calls).
- cluster/kuberay/*.yaml, core Kubernetes kinds: the Kubernetes 1.37 OpenAPI schemas bundled with
  kubernetes-validate, in strict mode (unknown fields fail).
- cluster/kuberay/*.yaml, ray.io/v1 kinds: the KubeRay CRDs are not available offline, so a schema
  of our own (cluster/kuberay/schema/kuberay-v1-subset.json, closed over the fields we use) checks
  the RayCluster/RayJob fields, and every embedded pod template is checked against the real
  Kubernetes PodTemplateSpec schema. KubeRay's CEL rules are not checked.
"""
from __future__ import annotations

import copy
import functools
import json
import re
import subprocess
from pathlib import Path

import jsonschema
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
CLUSTER = REPO / "cluster"
LAUNCHER_CONFIGS = ["aws.yaml", "gcp.yaml"]
MANIFESTS = sorted((CLUSTER / "kuberay").glob("*.yaml"))
K8S_VERSION = "1.37.0"
POD_KINDS = {"RayCluster", "RayJob", "Deployment", "StatefulSet", "Job"}


# ------------------------------------------------------------------------------------------
# Ray cluster launcher configs

@functools.cache
def _ray_schema() -> dict:
    import ray.autoscaler

    return json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())


def _prepared(name: str) -> dict:
    """The config as `ray up` sees it after filling in the provider's defaults (no cloud calls)."""
    from ray.autoscaler._private.util import prepare_config

    return prepare_config(yaml.safe_load((CLUSTER / name).read_text()))


@pytest.mark.parametrize("name", LAUNCHER_CONFIGS)
def test_launcher_config_validates_against_rays_schema(name):
    from ray.autoscaler._private.util import validate_config

    raw = yaml.safe_load((CLUSTER / name).read_text())
    errors = sorted(error.message for error in jsonschema.Draft7Validator(_ray_schema()).iter_errors(raw))
    assert errors == [], errors  # the file as written
    validate_config(_prepared(name))  # raises: Ray's own check of the filled-in config, schema plus node types


@pytest.mark.parametrize("mutate", [
    lambda c: c.update(max_worker=3),                                   # misspelt top-level key
    lambda c: c["available_node_types"]["gpu_1x"].update(resources={"GPU": "one"}),
    lambda c: c["available_node_types"]["head"].pop("node_config"),
    lambda c: c.update(head_start_ray_commands="ray start --head"),     # a string, not a list
], ids=["misspelt-key", "bad-resource", "no-node-config", "commands-not-a-list"])
def test_a_broken_launcher_config_fails_validation(mutate):
    config = yaml.safe_load((CLUSTER / "aws.yaml").read_text())
    mutate(config)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(config, _ray_schema())


@pytest.mark.parametrize("name", LAUNCHER_CONFIGS)
def test_launcher_config_runs_token_auth_and_localhost_dashboards(name):
    text = (CLUSTER / name).read_text()
    config = _prepared(name)
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        starts = [c for c in config[key] if "ray start" in c]
        assert starts, key
        assert all("RAY_AUTH_MODE=token" in c for c in config[key]), f"{key}: every Ray command runs with token auth"
    head_start = " ".join(config["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head_start
    assert "mlflow-client.env" in head_start, "the head's Ray (and so every job driver) gets the MLflow user"
    assert config["file_mounts"].get("~/.ray/auth_token") == "~/.ray/auth_token", "one token on every node"
    assert "0.0.0.0" not in text


@pytest.mark.parametrize("name", LAUNCHER_CONFIGS)
def test_launcher_config_has_a_cpu_head_and_autoscaling_gpu_workers(name):
    config = _prepared(name)
    types = config["available_node_types"]
    head = types[config["head_node_type"]]
    assert head["resources"].get("CPU") == 0 and not head["resources"].get("GPU"), "the head runs no trials"
    workers = {k: v for k, v in types.items() if k != config["head_node_type"]}
    assert all(v["resources"].get("GPU", 0) >= 1 and v["min_workers"] < v["max_workers"] for v in workers.values())
    assert max(v["resources"]["GPU"] for v in workers.values()) >= 2, "a node type with several GPUs"
    setup = " ".join(config["setup_commands"])
    assert "cluster/vm/setup-node.sh" in setup
    head_setup = " ".join(config["head_setup_commands"])
    assert re.search(r"setup-mlflow\.sh (s3|gs)://", head_setup), "MLflow artifacts go to the object store"


def test_vm_setup_installs_maskvae_and_serves_mlflow_locked_on_localhost():
    node = (CLUSTER / "vm" / "setup-node.sh").read_text()
    assert re.search(r'pip" install .*-e "\$HOME/maskvae"', node)
    assert "export RAY_AUTH_MODE=token" in node
    mlflow = (CLUSTER / "vm" / "setup-mlflow.sh").read_text()
    assert "--app-name basic-auth" in mlflow and "--host 127.0.0.1" in mlflow
    assert "postgresql+psycopg://" in mlflow and "apt-get install -y -q postgresql" in mlflow
    assert "openssl rand" in mlflow, "passwords are generated on the head"
    ini = re.search(r'basic_auth\.ini" <<INI\n(.*?)\nINI\n', mlflow, re.S).group(1)
    assert "default_permission" in ini and "admin_password" not in ini, "no admin password in the auth config"
    assert "0.0.0.0" not in node + mlflow


@pytest.mark.parametrize("script,args", [
    ("aws-security-group.sh", ["vpc-0123", "0.0.0.0/0"]),
    ("gcp-firewall.sh", ["my-project", "::/0"]),
])
def test_firewall_scripts_refuse_to_open_ssh_to_the_internet(script, args, tmp_path):
    # No cloud CLI on PATH: a script that did not refuse first would fail differently (127).
    result = subprocess.run(["bash", str(CLUSTER / "vm" / script), *args], capture_output=True, text=True,
                            env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert result.returncode == 2, result.stderr
    assert "refusing" in result.stderr


# ------------------------------------------------------------------------------------------
# Kubernetes manifests

def _documents() -> list[tuple[str, dict]]:
    docs = []
    for path in MANIFESTS:
        docs.extend((path.name, doc) for doc in yaml.safe_load_all(path.read_text()) if doc)
    return docs


@pytest.fixture(scope="module")
def kuberay_validator():
    from kubernetes_validate.utils import schema_contents
    from referencing import Registry, Resource

    k8s = schema_contents(f"kubernetes-json-schema/v{K8S_VERSION}-local-strict/_definitions.json", K8S_VERSION)
    subset = json.loads((CLUSTER / "kuberay" / "schema" / "kuberay-v1-subset.json").read_text())
    registry = Registry().with_resources([(k8s["$id"], Resource.from_contents(k8s)),
                                          (subset["$id"], Resource.from_contents(subset))])

    def validate(doc: dict) -> None:
        schema = {"$ref": f"{subset['$id']}#/$defs/{doc['kind']}"}
        jsonschema.Draft202012Validator(schema, registry=registry).validate(doc)

    return validate


def _validate(doc: dict, kuberay_validator) -> None:
    import kubernetes_validate

    if doc["apiVersion"] == "ray.io/v1":
        kuberay_validator(doc)
    else:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_every_manifest_validates(kuberay_validator):
    docs = _documents()
    kinds = {doc["kind"] for _, doc in docs}
    assert {"RayCluster", "RayJob", "Deployment", "Service", "StatefulSet", "NetworkPolicy"} <= kinds
    failures = []
    for name, doc in docs:
        try:
            _validate(doc, kuberay_validator)
        except Exception as error:  # collect them all, then fail once with every problem named
            failures.append(f"{name}: {doc['kind']}/{doc['metadata']['name']}: {getattr(error, 'message', error)}")
    assert not failures, "\n".join(failures)


def _find(kind: str, name: str | None = None) -> dict:
    for _, doc in _documents():
        if doc["kind"] == kind and (name is None or doc["metadata"]["name"] == name):
            return copy.deepcopy(doc)
    raise AssertionError(f"no {kind} {name or ''} shipped")


@pytest.mark.parametrize("kind,mutate", [
    ("RayCluster", lambda d: d["spec"].update(workerGroupSpec=[])),                        # misspelt CRD field
    ("RayCluster", lambda d: d["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0].update(imag="x")),
    ("RayCluster", lambda d: d["spec"]["workerGroupSpecs"][0].update(maxReplicas="8")),    # string, not integer
    ("RayJob", lambda d: d["spec"].update(submissionMode="Batch")),
    ("Deployment", lambda d: d["spec"]["template"]["spec"]["containers"][0]["ports"][0].update(containerPort="http")),
    ("Service", lambda d: d["spec"].update(typ="ClusterIP")),
], ids=["raycluster-key", "pod-template-field", "replicas-type", "rayjob-mode", "deployment-port", "service-key"])
def test_manifest_validation_catches_mistakes(kind, mutate, kuberay_validator):
    doc = _find(kind)
    _validate(doc, kuberay_validator)
    mutate(doc)
    with pytest.raises(jsonschema.ValidationError):
        _validate(doc, kuberay_validator)


def _containers(doc: dict) -> list[dict]:
    spec = doc["spec"]
    templates = []
    if doc["kind"] == "RayCluster":
        templates = [spec["headGroupSpec"]["template"]] + [g["template"] for g in spec.get("workerGroupSpecs", [])]
    elif doc["kind"] == "RayJob":
        templates = [spec["submitterPodTemplate"]]
    elif "template" in spec:
        templates = [spec["template"]]
    return [c for t in templates for c in t["spec"]["containers"]]


def _env(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container.get("env", [])}


def test_every_ray_container_runs_token_auth_from_a_secret():
    ray_docs = [doc for _, doc in _documents() if doc["apiVersion"] == "ray.io/v1"]
    cluster = _find("RayCluster")
    assert cluster["spec"]["authOptions"] == {"mode": "token", "secretName": "maskvae-ray-token"}
    for doc in ray_docs:
        for container in _containers(doc):
            env = _env(container)
            assert env["RAY_AUTH_MODE"]["value"] == "token", container["name"]
            assert env["RAY_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == "maskvae-ray-token"


def test_nothing_is_exposed_outside_the_cluster_and_no_secret_is_shipped():
    docs = [doc for _, doc in _documents()]
    assert not [d for d in docs if d["kind"] in ("Secret", "Ingress")], "users create Secrets; nothing is published"
    services = [d for d in docs if d["kind"] == "Service"]
    assert services and all(s["spec"]["type"] == "ClusterIP" for s in services)
    cluster = _find("RayCluster")["spec"]["headGroupSpec"]
    assert cluster["serviceType"] == "ClusterIP" and cluster["enableIngress"] is False
    containers = [c for d in docs if d["kind"] in POD_KINDS for c in _containers(d)]
    assert len(containers) >= 7  # MLflow, its user job, PostgreSQL, Ray head, 2 worker groups, submitter
    for container in containers:
        assert not any("hostPort" in p for p in container.get("ports", [])), container["name"]
        for name, var in _env(container).items():
            if re.search(r"PASSWORD|TOKEN|SECRET", name):
                assert "valueFrom" in var and "value" not in var, f"{name} must come from a Secret"
    for doc in docs:
        if doc["kind"] in ("Deployment", "StatefulSet", "Job"):
            assert not doc["spec"]["template"]["spec"].get("hostNetwork", False)
    protected = {tuple(sorted(d["spec"]["podSelector"].get("matchLabels", {}).items()))
                 for d in docs if d["kind"] == "NetworkPolicy"}
    assert (("app", "mlflow"),) in protected and (("app", "postgres"),) in protected
    assert (("ray.io/cluster", "maskvae"),) in protected


def test_mlflow_server_uses_basic_auth_postgres_and_object_store_artifacts():
    deployment = _find("Deployment", "mlflow")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    args = container["args"]
    assert container["command"] == ["mlflow", "server"] and "--app-name=basic-auth" in args
    assert any(re.match(r"--artifacts-destination=(s3|gs)://", a) for a in args)
    env = _env(container)
    assert env["MLFLOW_BACKEND_STORE_URI"]["value"].startswith("postgresql+psycopg://")
    assert "@" in env["MLFLOW_BACKEND_STORE_URI"]["value"] and ":" not in env["MLFLOW_BACKEND_STORE_URI"]["value"].split(
        "://", 1)[1].split("@")[0], "no password inside the URI"
    for name in ("PGPASSWORD", "MLFLOW_AUTH_ADMIN_PASSWORD", "MLFLOW_FLASK_SERVER_SECRET_KEY"):
        assert "secretKeyRef" in env[name]["valueFrom"]
    ini = _find("ConfigMap", "maskvae-mlflow-auth")["data"]["basic_auth.ini"]
    assert "admin_password" not in ini and "postgresql+psycopg://" in ini


def test_the_rayjob_runs_the_paper_study_on_shared_storage():
    job = _find("RayJob")
    entrypoint = job["spec"]["entrypoint"]
    assert entrypoint.startswith("maskvae study run --preset paper")
    assert re.search(r"data\.path=(s3|gs)://", entrypoint) and re.search(r"ray\.storage_path=(s3|gs)://", entrypoint)
    assert job["spec"]["clusterSelector"] == {"ray.io/cluster": _find("RayCluster")["metadata"]["name"]}
