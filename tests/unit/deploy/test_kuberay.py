"""The KubeRay manifests (`deploy/kuberay/`) against the schemas they are applied with and
against the project's own facts, so that neither can drift without a failing test.

Every document validates with the official `kubernetes` client's models (pod templates,
Deployments, Services, claims) or KubeRay's ray.io/v1 types (`kuberay_schema`), strictly:
a misspelled field fails instead of being pruned by the API server. The RayService's
`serveConfigV2` validates with Ray's `ServeDeploySchema` and Tandem's `ServeAppConfig`, and
a validate-and-dump round trip must keep every field. Its worker groups must equal
`cluster.yaml`'s node types, its pools `apps/serve.gpu.yaml`'s, and the environment of its
pods must lead Tandem's settings to the cluster's own services. Registry access: MLflow's
arguments and auth config go through MLflow's own command line and config reader (a login,
the admin from a Secret), the NetworkPolicies admit only the Ray pods to MLflow's port, and
every Ray container logs in with that Secret. No cluster, image or network is needed: what
these checks cannot see is listed in docs/kubernetes.md.
"""

from __future__ import annotations

import configparser
import copy
import os
import re
import shlex
import sys
from pathlib import Path
from typing import Any
from unittest import mock
from urllib.parse import urlparse

import pytest
import ray
import yaml
from kubernetes.client import (
    V1ConfigMap,
    V1Deployment,
    V1Namespace,
    V1NetworkPolicy,
    V1PersistentVolumeClaim,
    V1PodTemplateSpec,
    V1Service,
)
from pydantic import ValidationError

from .kuberay_schema import RayJob, RayService

REPO = Path(__file__).resolve().parents[3]
KUBERAY = REPO / "deploy" / "kuberay"
DOCKERFILE = REPO / "deploy" / "Dockerfile"
DOCS = REPO / "docs" / "kubernetes.md"
CLUSTER_PLACEHOLDER = "RAYSERVICE_CLUSTER"  # replaced by the RayService's cluster name at submit time

KIND_MODELS = {
    ("v1", "Namespace"): V1Namespace,
    ("networking.k8s.io/v1", "NetworkPolicy"): V1NetworkPolicy,
    ("v1", "PersistentVolumeClaim"): V1PersistentVolumeClaim,
    ("v1", "ConfigMap"): V1ConfigMap,
    ("v1", "Service"): V1Service,
    ("apps/v1", "Deployment"): V1Deployment,
    ("ray.io/v1", "RayService"): RayService,
    ("ray.io/v1", "RayJob"): RayJob,
}


def load_manifests() -> list[tuple[str, dict[str, Any]]]:
    """(id, document) of every document of every manifest, e.g. `mlflow.yaml:Service/tandem-mlflow`."""
    found = []
    for path in sorted(KUBERAY.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if doc is not None:
                found.append((f"{path.name}:{doc.get('kind')}/{doc.get('metadata', {}).get('name')}", doc))
    return found


MANIFESTS = load_manifests()


def manifest(kind: str, name: str | None = None) -> dict[str, Any]:
    """A deep copy of the one document of `kind` (named `name`), safe to mutate."""
    docs = [doc for _, doc in MANIFESTS
            if doc["kind"] == kind and name in (None, doc["metadata"]["name"])]
    assert len(docs) == 1, f"expected one {kind} {name or ''}, found {len(docs)}"
    return copy.deepcopy(docs[0])


def lost_fields(original: Any, dumped: Any, path: str = "") -> list[str]:
    """Paths of values in `original` that `dumped` lacks or changed; keys only `dumped` has
    (defaults a schema fills in) are fine."""
    if isinstance(original, dict):
        if not isinstance(dumped, dict):
            return [f"{path or '.'}: {original!r} became {dumped!r}"]
        lost = []
        for key, value in original.items():
            where = f"{path}.{key}" if path else str(key)
            lost += [f"{where}: dropped"] if key not in dumped else lost_fields(value, dumped[key], where)
        return lost
    if isinstance(original, list):
        if not isinstance(dumped, list) or len(dumped) != len(original):
            return [f"{path}: {original!r} became {dumped!r}"]
        return [lost for index, (a, b) in enumerate(zip(original, dumped, strict=True))
                for lost in lost_fields(a, b, f"{path}[{index}]")]
    return [] if original == dumped else [f"{path}: {original!r} became {dumped!r}"]


def differences(ours: Any, theirs: Any, path: str = "") -> list[str]:
    """Every path where two configs differ, both ways."""
    if isinstance(ours, dict) and isinstance(theirs, dict):
        return [diff for key in sorted(set(ours) | set(theirs), key=str)
                for diff in differences(ours.get(key), theirs.get(key), f"{path}.{key}" if path else key)]
    return [] if ours == theirs else [f"{path}: {ours!r} vs {theirs!r}"]


def validate_document(doc: dict[str, Any]) -> list[str]:
    """Validate with the document's model; return the fields a dump would lose."""
    model = KIND_MODELS.get((doc.get("apiVersion"), doc.get("kind")))
    assert model is not None, f"no schema for {doc.get('apiVersion')} {doc.get('kind')}: add one"
    parsed = model.model_validate(doc)
    return lost_fields(doc, parsed.model_dump(by_alias=True, exclude_unset=True))


def pod_templates(docs: list[dict[str, Any]] | None = None) -> list[tuple[str, dict[str, Any]]]:
    """(id, pod template) of every pod the manifests (or `docs`) make."""
    docs = [doc for _, doc in MANIFESTS] if docs is None else docs
    found = []
    for doc in docs:
        name = doc["metadata"]["name"]
        if doc["kind"] == "RayService":
            found += ray_cluster_templates("rayservice", doc["spec"]["rayClusterConfig"])
        elif doc["kind"] == "Deployment":
            found.append((f"deployment:{name}", doc["spec"]["template"]))
        elif doc["kind"] == "RayJob":
            spec = doc["spec"]
            if "submitterPodTemplate" in spec:
                found.append((f"rayjob:{name}:submitter", spec["submitterPodTemplate"]))
            if "rayClusterSpec" in spec:
                found += ray_cluster_templates(f"rayjob:{name}", spec["rayClusterSpec"])
    return found


def ray_cluster_templates(prefix: str, cluster: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(id, pod template) of a Ray cluster's head and worker groups."""
    return [(f"{prefix}:head", cluster["headGroupSpec"]["template"])] + [
        (f"{prefix}:{group['groupName']}", group["template"])
        for group in cluster.get("workerGroupSpecs", [])]


def is_ray_pod(name: str) -> bool:
    """Whether a `pod_templates` id is a Ray node (head or worker), not MLflow or a job submitter."""
    return name.startswith(("rayservice:", "rayjob:")) and not name.endswith(":submitter")


def serve_config() -> dict[str, Any]:
    return yaml.safe_load(manifest("RayService")["spec"]["serveConfigV2"])


def serve_schema_problems(config: dict[str, Any]) -> list[str]:
    """What Ray's Serve schema and Tandem's app-args schema reject or would drop."""
    from ray.serve.schema import ServeDeploySchema
    from tandem.serve.config import ServeAppConfig, tandem_args

    problems = []
    for schema, data in ((ServeDeploySchema, config), (ServeAppConfig, tandem_args(config))):
        try:
            dumped = schema.model_validate(data).model_dump(exclude_unset=True)
        except ValidationError as error:
            problems.append(f"{schema.__name__}: {error}")
            continue
        problems += [f"{schema.__name__}: {lost}" for lost in lost_fields(data, dumped)]
    return problems


def serve_config_drift(ours: dict[str, Any], gpu_yaml: dict[str, Any]) -> list[str]:
    """How the RayService's Serve config differs from apps/serve.gpu.yaml. The proxy's host
    may differ (0.0.0.0 in a pod), and so may the served model; a model profile belongs to
    its model, so it must match only when the models do."""
    from tandem.serve.config import tandem_args

    def comparable(config: dict[str, Any]) -> dict[str, Any]:
        config = copy.deepcopy(config)
        config.get("http_options", {}).pop("host", None)
        args = tandem_args(config)
        model = args.pop("model", None)
        profile = args.pop("model_profile", None)
        config["applications"] = {app["name"]: app for app in config["applications"]}
        return {"config": config, "model": model, "profile": profile}

    mine, theirs = comparable(ours), comparable(gpu_yaml)
    drift = differences(mine["config"], theirs["config"])
    if mine["model"] == theirs["model"] and mine["profile"] != theirs["profile"]:
        drift.append(f"model_profile of {mine['model']}: {mine['profile']!r} vs {theirs['profile']!r}")
    return drift


def quantity(value: str) -> float:
    """A plain Kubernetes quantity ("8", "0.5"); Ray resources are counts."""
    return float(value)


def cluster_yaml_drift(cluster: dict[str, Any], service: dict[str, Any]) -> list[str]:
    """Each field where cluster.yaml's node types and the RayService's groups disagree: the
    same node types (gpu_h100 <-> group gpu-h100), Ray resources, labels, GPUs per pod,
    min/max workers and idle timeout."""
    spec = service["spec"]["rayClusterConfig"]
    node_types = cluster["available_node_types"]
    head_name = cluster["head_node_type"]
    groups = {group["groupName"]: group for group in spec["workerGroupSpecs"]}
    drift = []

    def gpus(template: dict[str, Any]) -> float:
        limits = template["spec"]["containers"][0].get("resources", {}).get("limits", {})
        return quantity(limits.get("nvidia.com/gpu", "0"))

    def compare(node_name: str, node: dict[str, Any], group_name: str, group: dict[str, Any]) -> None:
        resources = {key: quantity(value) for key, value in (group.get("resources") or {}).items()}
        if resources != node.get("resources", {}):
            drift.append(f"{node_name}.resources = {node.get('resources')} in cluster.yaml, but "
                         f"{group_name}.resources = {group.get('resources')}")
        if (group.get("labels") or {}) != node.get("labels", {}):
            drift.append(f"{node_name}.labels = {node.get('labels', {})} in cluster.yaml, but "
                         f"{group_name}.labels = {group.get('labels') or {}}")
        if gpus(group["template"]) != node.get("resources", {}).get("GPU", 0):
            drift.append(f"{node_name}.resources.GPU = {node.get('resources', {}).get('GPU', 0)} in "
                         f"cluster.yaml, but {group_name} pods get nvidia.com/gpu "
                         f"{gpus(group['template']):g}")

    compare(head_name, node_types[head_name], "headGroupSpec", spec["headGroupSpec"])
    for node_name, node in node_types.items():
        if node_name == head_name:
            continue
        group_name = node_name.replace("_", "-")
        group = groups.pop(group_name, None)
        if group is None:
            drift.append(f"{node_name}: node type of cluster.yaml without worker group {group_name}")
            continue
        compare(node_name, node, group_name, group)
        for ours, theirs in (("minReplicas", "min_workers"), ("maxReplicas", "max_workers")):
            if group[ours] != node.get(theirs):
                drift.append(f"{node_name}.{theirs} = {node.get(theirs)} in cluster.yaml, but "
                             f"{group_name}.{ours} = {group[ours]}")
        if group["replicas"] != group["minReplicas"]:
            drift.append(f"{group_name}.replicas = {group['replicas']}: start at minReplicas "
                         f"({group['minReplicas']}), as the cluster launcher does")
    drift += [f"{name}: worker group without a node type in cluster.yaml" for name in groups]
    idle = spec.get("autoscalerOptions", {}).get("idleTimeoutSeconds")
    if idle != cluster["idle_timeout_minutes"] * 60:
        drift.append(f"idle_timeout_minutes = {cluster['idle_timeout_minutes']} in cluster.yaml, but "
                     f"autoscalerOptions.idleTimeoutSeconds = {idle}")
    return drift


def ray_containers() -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(id, pod spec, Ray container) of the head and every worker group."""
    return [(name, template["spec"], template["spec"]["containers"][0])
            for name, template in pod_templates() if name.startswith("rayservice:")]


def pod_env(container: dict[str, Any], pod_ip: str = "10.244.1.7") -> dict[str, str]:
    """The container's environment as its pod at `pod_ip` sees it (values, and the pod's IP
    from the downward API); variables a Secret fills are left out."""
    env = {}
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = var["value"]
        elif var.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "status.podIP":
            env[var["name"]] = pod_ip
    return env


def secret_refs(container: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """Environment variable -> (Secret, key) of the variables a Secret fills."""
    return {var["name"]: (ref["name"], ref["key"]) for var in container.get("env", [])
            if (ref := var.get("valueFrom", {}).get("secretKeyRef"))}


def head_ports() -> dict[str, int]:
    head = manifest("RayService")["spec"]["rayClusterConfig"]["headGroupSpec"]["template"]
    return {port["name"]: port["containerPort"] for port in head["spec"]["containers"][0]["ports"]}


def dockerfile_value(pattern: str) -> str:
    found = re.search(pattern, DOCKERFILE.read_text(encoding="utf-8"), re.MULTILINE)
    assert found, f"deploy/Dockerfile has no line matching {pattern!r}"
    return found.group(1)


# Every document, strictly.

@pytest.mark.parametrize("doc", [doc for _, doc in MANIFESTS], ids=[name for name, _ in MANIFESTS])
def test_manifest_validates_and_keeps_every_field(doc):
    assert validate_document(doc) == []
    assert doc["kind"] == "Namespace" or doc["metadata"].get("namespace") == "tandem"


def test_manifests_cover_the_pieces():
    kinds = sorted(name.split(":")[1] for name, _ in MANIFESTS)
    assert kinds == sorted([
        "Namespace/tandem", "PersistentVolumeClaim/tandem-home", "PersistentVolumeClaim/tandem-mlflow",
        "ConfigMap/tandem-mlflow", "Deployment/tandem-mlflow", "Service/tandem-mlflow",
        "RayService/tandem", "RayJob/tandem-finetune", "RayJob/tandem-retrain-watch",
        "NetworkPolicy/tandem-pods", "NetworkPolicy/tandem-mlflow"])


@pytest.mark.parametrize("template", [t for _, t in pod_templates()], ids=[n for n, _ in pod_templates()])
def test_pod_template_validates_with_the_kubernetes_client(template):
    parsed = V1PodTemplateSpec.model_validate(template)
    assert lost_fields(template, parsed.model_dump(by_alias=True, exclude_unset=True)) == []


def test_a_misspelled_pod_template_field_fails():
    template = manifest("RayService")["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["template"]
    template["spec"]["nodeSelectr"] = template["spec"].pop("nodeSelector")
    with pytest.raises(ValidationError, match="nodeSelectr"):
        V1PodTemplateSpec.model_validate(template)
    template["spec"]["nodeSelector"] = template["spec"].pop("nodeSelectr")
    template["spec"]["containers"][0]["volumeMount"] = template["spec"]["containers"][0].pop("volumeMounts")
    with pytest.raises(ValidationError, match="volumeMount"):
        V1PodTemplateSpec.model_validate(template)


def test_a_misspelled_kuberay_field_fails():
    service = manifest("RayService")
    group = service["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]
    group["maxReplica"] = group.pop("maxReplicas")
    with pytest.raises(ValidationError, match="maxReplica"):
        validate_document(service)
    job = manifest("RayJob", "tandem-finetune")
    job["spec"]["clusterSelecter"] = job["spec"].pop("clusterSelector")
    with pytest.raises(ValidationError, match="clusterSelecter"):
        validate_document(job)
    service = manifest("RayService")
    service["spec"]["rayClusterConfig"]["headGroupSpec"]["rayStartParams"]["num-gpus"] = 0
    with pytest.raises(ValidationError, match="num-gpus"):  # KubeRay's map[string]string
        validate_document(service)


# The Serve config.

def test_serve_config_validates_with_ray_and_tandem_and_round_trips():
    assert serve_schema_problems(serve_config()) == []


def test_serve_config_check_catches_misspellings():
    config = serve_config()
    config["applications"][0]["route_prefx"] = config["applications"][0].pop("route_prefix")
    assert any("route_prefx" in problem for problem in serve_schema_problems(config))
    config = serve_config()
    pools = config["applications"][0]["args"]["pools"]
    pools["l4"]["max_ongoing_request"] = pools["l4"].pop("max_ongoing_requests")
    assert any("max_ongoing_request" in problem for problem in serve_schema_problems(config))


def test_serve_config_has_the_pools_of_apps_serve_gpu_yaml():
    gpu_yaml = yaml.safe_load((REPO / "apps" / "serve.gpu.yaml").read_text(encoding="utf-8"))
    assert serve_config_drift(serve_config(), gpu_yaml) == []
    assert serve_config()["http_options"]["host"] == "0.0.0.0", "the proxy must take traffic from the Service"


def test_serve_drift_check_names_the_field():
    gpu_yaml = yaml.safe_load((REPO / "apps" / "serve.gpu.yaml").read_text(encoding="utf-8"))
    ours = serve_config()
    ours["applications"][0]["args"]["pools"]["l4"]["engine"]["max_num_seqs"] = 65
    ours["http_options"]["host"] = "10.0.0.1"
    drift = serve_config_drift(ours, gpu_yaml)
    assert len(drift) == 1 and "pools.l4.engine.max_num_seqs" in drift[0], drift


def test_every_pool_has_a_worker_group_with_its_gpu():
    from tandem.serve.config import ServeAppConfig, tandem_args

    groups = manifest("RayService")["spec"]["rayClusterConfig"]["workerGroupSpecs"]
    gpus_of = {key.removeprefix("accelerator_type:"): quantity(group["resources"]["GPU"])
               for group in groups for key in group["resources"] if key.startswith("accelerator_type:")}
    for name, pool in ServeAppConfig.model_validate(tandem_args(serve_config())).pools.items():
        assert pool.gpu in gpus_of, f"pool {name}: no worker group has accelerator_type:{pool.gpu}"
        assert pool.engine.tensor_parallel_size <= gpus_of[pool.gpu], f"pool {name}: TP > GPUs per pod"


# cluster.yaml.

def test_worker_groups_match_cluster_yaml():
    cluster = yaml.safe_load((REPO / "cluster.yaml").read_text(encoding="utf-8"))
    assert cluster_yaml_drift(cluster, manifest("RayService")) == []


def test_cluster_yaml_drift_names_the_field():
    cluster = yaml.safe_load((REPO / "cluster.yaml").read_text(encoding="utf-8"))
    service = manifest("RayService")
    cluster["available_node_types"]["gpu_l4"]["max_workers"] = 9
    cluster["available_node_types"]["gpu_h200"]["labels"] = {"tandem-pool": "h200x"}
    groups = service["spec"]["rayClusterConfig"]["workerGroupSpecs"]
    groups[0]["resources"]["accelerator_type:H100"] = "4"
    groups[2]["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] = "4"
    del groups[3]
    drift = "\n".join(cluster_yaml_drift(cluster, service))
    for field in ("gpu_h100.resources", "gpu_h200.labels", "gpu_a100.resources.GPU",
                  "gpu_l4: node type of cluster.yaml without worker group gpu-l4"):
        assert field in drift, drift
    del cluster["available_node_types"]["gpu_l4"]
    assert "gpu_l4" not in "\n".join(cluster_yaml_drift(cluster, service))


# What Tandem's code sees inside the pods.

def mlflow_service_url() -> str:
    """MLflow's in-cluster URL as mlflow.yaml's Service makes it: its name (the pods share
    its namespace) and port."""
    service = manifest("Service", "tandem-mlflow")
    return f"http://{service['metadata']['name']}:{service['spec']['ports'][0]['port']}"


def mlflow_allowed_hosts() -> list[str]:
    return manifest("ConfigMap", "tandem-mlflow")["data"]["allowed-hosts"].split(",")


@pytest.mark.parametrize("pod_ip", ["10.244.1.7", "172.20.3.4", "192.168.5.6"])
def test_tandem_settings_in_the_ray_pods_lead_to_ray_and_mlflow(pod_ip):
    """Tandem reaches MLflow at its Service (TANDEM_MLFLOW_URI) from every Ray pod, and Ray
    at the pod's own IP (TANDEM_HOST), where the head has Ray's ports; jobs the watcher
    submits (`tandem.ray_jobs`, `Settings.service_env`) get the same MLflow."""
    from mlflow.server.security_utils import is_allowed_host_header
    from tandem.settings import load_settings

    url = mlflow_service_url()
    namespace = manifest("Service", "tandem-mlflow")["metadata"]["namespace"]
    assert manifest("RayService")["metadata"]["namespace"] == namespace, (
        f"{url} resolves only in the Service's namespace")
    for name, _, container in ray_containers():
        settings = load_settings(pod_env(container, pod_ip))
        assert settings.host == pod_ip, f"{name}: TANDEM_HOST is not the pod's IP"
        assert settings.mlflow_url == url, f"{name}: MLflow at {settings.mlflow_url}, not {url}"
        job_env = settings.service_env()
        assert job_env["MLFLOW_TRACKING_URI"] == url, name
        assert load_settings(job_env).mlflow_url == url, f"{name}: a submitted job loses MLflow's URL"
        assert is_allowed_host_header(mlflow_allowed_hosts(), urlparse(settings.mlflow_url).netloc), (
            f"MLflow would refuse Host: {urlparse(settings.mlflow_url).netloc}")

    settings = load_settings(pod_env(ray_containers()[0][2], pod_ip))
    ports = head_ports()
    assert (settings.ray_port, settings.dashboard_port, settings.api_port) == (
        ports["gcs-server"], ports["dashboard"], ports["serve"])
    assert settings.ray_address == f"{pod_ip}:{ports['gcs-server']}"
    assert settings.dashboard_url == f"http://{pod_ip}:{ports['dashboard']}"
    assert settings.api_port == serve_config()["http_options"]["port"]
    serve_ports = manifest("RayService")["spec"]["serveService"]["spec"]["ports"]
    assert [port["port"] for port in serve_ports] == [settings.api_port]


def test_mlflow_service_reaches_the_server_and_admits_its_names_and_port_forwards():
    from mlflow.server.security_utils import is_allowed_host_header

    service, mlflow = manifest("Service", "tandem-mlflow"), manifest("Deployment", "tandem-mlflow")
    port = service["spec"]["ports"][0]
    container = mlflow["spec"]["template"]["spec"]["containers"][0]
    named = {entry["name"]: entry["containerPort"] for entry in container["ports"]}
    assert f"--port={named[port['targetPort']]}" in container["args"]
    assert service["spec"]["selector"].items() <= mlflow["spec"]["template"]["metadata"]["labels"].items()
    allowed = mlflow_allowed_hosts()
    name, namespace = service["metadata"]["name"], service["metadata"]["namespace"]
    for host in (name, f"{name}.{namespace}", f"{name}.{namespace}.svc",
                 f"{name}.{namespace}.svc.cluster.local", "localhost", "127.0.0.1"):
        assert is_allowed_host_header(allowed, f"{host}:{port['port']}"), (
            f"MLflow would refuse Host: {host}:{port['port']}")
    for host in ("attacker.example", "10.244.1.7", "192.168.5.6"):  # no pod IPs: no relays
        assert not is_allowed_host_header(allowed, f"{host}:{port['port']}"), host


def test_every_ray_pod_has_the_environment_and_the_shared_tandem_home():
    claims = {doc["metadata"]["name"]: doc for _, doc in MANIFESTS if doc["kind"] == "PersistentVolumeClaim"}
    containers = ray_containers()
    head_env = containers[0][2]["env"]
    for name, pod, container in containers:
        assert container["env"] == head_env, f"{name}: a different environment than the head"
        home = pod_env(container)["TANDEM_HOME"]
        volumes = {volume["name"]: volume for volume in pod["volumes"]}
        mount = next((m for m in container["volumeMounts"] if m["mountPath"] == home), None)
        assert mount is not None, f"{name}: nothing mounted at TANDEM_HOME ({home})"
        claim = volumes[mount["name"]]["persistentVolumeClaim"]["claimName"]
        assert claims[claim]["spec"]["accessModes"] == ["ReadWriteMany"], f"{name}: {claim} is not shared"


def test_haproxy_and_the_replicas_bind_every_interface_behind_the_network_policy():
    """In a pod, HAProxy, the replicas and Ray listen on every interface (the other pods
    must reach them); the NetworkPolicy admits Tandem's own pods to any port, the KubeRay
    operator to the dashboard and its agent, and anyone else to the API port alone. The
    replicas' HTTP servers take Tandem's request-id guard."""
    from tandem.serve.request_ids import MIDDLEWARES

    assert serve_config()["http_options"]["host"] == "0.0.0.0"
    for name, _, container in ray_containers():
        assert pod_env(container).get("RAY_SERVE_ENABLE_HA_PROXY") == "1", name
        assert pod_env(container).get("RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH") == MIDDLEWARES, name
    policies = network_policies()
    for name, template in pod_templates():
        selectors = [policy["spec"]["podSelector"] for policy in policies]
        assert any(label_selects(selector, pod_labels(template)) for selector in selectors), (
            f"{name} is outside every NetworkPolicy: any pod or address reaches all its ports")
    policy = manifest("NetworkPolicy", "tandem-pods")["spec"]
    own = policy["podSelector"]["matchLabels"]
    assert policy["policyTypes"] == ["Ingress"]
    rules = policy["ingress"]
    assert [rule for rule in rules if "ports" not in rule] == [
        {"from": [{"podSelector": {"matchLabels": own}}]}]
    ports = {port["port"] for rule in rules for port in rule.get("ports", [])
             if rule["from"] == [{"namespaceSelector": {}}]}
    api = manifest("RayService")["spec"]["serveService"]["spec"]["ports"][0]["targetPort"]
    assert ports == {api} == {head_ports()["serve"]}
    operator = next(rule for rule in rules if rule["from"] == [{"namespaceSelector": {
        "matchLabels": {"kubernetes.io/metadata.name": "kuberay-system"}}}])
    assert {port["port"] for port in operator["ports"]} == {head_ports()["dashboard"], 52365}


def test_api_keys_come_from_a_secret_under_the_names_tandem_reads(tmp_path):
    from tandem.auth import ADMIN, INFERENCE, load_keys

    for name, _, container in ray_containers():
        assert {"TANDEM_API_KEY", "TANDEM_ADMIN_KEY"} <= secret_refs(container).keys(), name
    environ = {variable: f"tdm-{variable.lower()}-a,tdm-{variable.lower()}-b"
               for variable in ("TANDEM_API_KEY", "TANDEM_ADMIN_KEY")}
    keys = load_keys(tmp_path, environ)
    assert sorted(key.kind for key in keys) == [ADMIN, ADMIN, INFERENCE, INFERENCE]


def test_ray_token_is_the_secret_kuberay_uses_and_where_tandem_reads_it():
    from tandem.settings import load_settings, ray_token_file

    cluster = manifest("RayService")["spec"]["rayClusterConfig"]
    assert cluster["authOptions"] == {"mode": "token", "secretName": "tandem-ray-token"}
    for name, pod, container in ray_containers():
        volumes = {volume["name"]: volume for volume in pod["volumes"]}
        token_file = ray_token_file(load_settings(pod_env(container)))
        found = [Path(mount["mountPath"]) / item["path"] for mount in container["volumeMounts"]
                 if "secret" in volumes[mount["name"]]
                 for item in volumes[mount["name"]]["secret"]["items"]
                 if volumes[mount["name"]]["secret"]["secretName"] == cluster["authOptions"]["secretName"]
                 and item["key"] == "auth_token"]  # KubeRay's key in the token Secret
        assert found == [token_file], f"{name}: Ray's token is not at {token_file}"


def test_docs_create_every_secret_the_manifests_read():
    docs = DOCS.read_text(encoding="utf-8").replace("\\\n", " ")  # one line per command
    wanted = {("tandem-ray-token", "auth_token")}
    for _, template in pod_templates():
        for container in template["spec"]["containers"]:
            wanted |= set(secret_refs(container).values())
    for secret, key in sorted(wanted):
        command = re.search(rf"create secret generic {secret}\b[^\n]*", docs)
        assert command, f"docs/kubernetes.md does not create Secret {secret}"
        assert f"--from-literal={key}=" in command.group(0), f"docs/kubernetes.md: {secret} lacks key {key}"


# Registry access: MLflow's login, and who reaches its port.

MLFLOW_ADMIN_ENV = ("MLFLOW_AUTH_ADMIN_USERNAME", "MLFLOW_AUTH_ADMIN_PASSWORD")  # the admin MLflow creates
MLFLOW_CLIENT_ENV = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")  # what MLflow's client sends


def all_docs() -> list[dict[str, Any]]:
    """A deep copy of every document, safe to mutate."""
    return copy.deepcopy([doc for _, doc in MANIFESTS])


def find(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    [doc] = [doc for doc in docs if doc["kind"] == kind and doc["metadata"]["name"] == name]
    return doc


def pod_labels(template: dict[str, Any]) -> dict[str, str]:
    return template.get("metadata", {}).get("labels", {})


def label_selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Whether a Kubernetes label selector (matchLabels and matchExpressions) selects `labels`."""
    if not selector.get("matchLabels", {}).items() <= labels.items():
        return False
    for expression in selector.get("matchExpressions", []):
        key, values = expression["key"], expression.get("values", [])
        matched = {"In": key in labels and labels[key] in values,
                   "NotIn": key not in labels or labels[key] not in values,
                   "Exists": key in labels, "DoesNotExist": key not in labels}[expression["operator"]]
        if not matched:
            return False
    return True


def network_policies(docs: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    docs = [doc for _, doc in MANIFESTS] if docs is None else docs
    return [doc for doc in docs if doc["kind"] == "NetworkPolicy"]


def rule_admits_port(ports: list[dict[str, Any]] | None, number: int, name: str) -> bool:
    """Whether an ingress rule's `ports` (absent: every port) include TCP port `number` named `name`."""
    return ports is None or any(
        entry.get("protocol", "TCP") == "TCP" and (
            entry.get("port") in (None, number, name)
            or (isinstance(entry.get("port"), int) and entry["port"] <= number <= entry.get("endPort", 0)))
        for entry in ports)


def mlflow_access_problems(docs: list[dict[str, Any]]) -> list[str]:
    """Who besides the Ray pods the NetworkPolicies let reach MLflow's port, and which Ray
    pods they keep out. Policies add up: every one that selects MLflow's pod counts."""
    templates = pod_templates(docs)
    mlflow = dict(templates)["deployment:tandem-mlflow"]
    [port] = [port for port in mlflow["spec"]["containers"][0]["ports"] if port["name"] == "http"]
    selecting = [policy for policy in network_policies(docs)
                 if label_selects(policy["spec"]["podSelector"], pod_labels(mlflow))
                 and "Ingress" in policy["spec"].get("policyTypes", ["Ingress"])]
    if not selecting:
        return ["no NetworkPolicy selects MLflow's pod: every pod and address reaches it"]
    problems, admitted = [], set()
    for policy in selecting:
        for rule in policy["spec"].get("ingress", []):
            if not rule_admits_port(rule.get("ports"), port["containerPort"], port["name"]):
                continue
            for peer in rule.get("from", [{}]):  # no `from`: every source
                if set(peer) != {"podSelector"}:
                    problems.append(f"{policy['metadata']['name']}: {peer} admits other namespaces or "
                                    "addresses to MLflow's port")
                    continue
                admitted |= {name for name, template in templates
                             if label_selects(peer["podSelector"], pod_labels(template))}
    problems += [f"{name} reaches MLflow's port but is not a Ray pod" for name in sorted(admitted)
                 if not is_ray_pod(name)]
    problems += [f"{name} is a Ray pod that cannot reach MLflow's port" for name, _ in templates
                 if is_ray_pod(name) and name not in admitted]
    return problems


def mounted_file(template: dict[str, Any], container: dict[str, Any], path: str | None,
                 config_map: dict[str, Any]) -> str | None:
    """The text of `config_map` that the pod finds at `path`, or None if no key is mounted there."""
    volumes = {volume["name"]: volume for volume in template["spec"].get("volumes", [])}
    for mount in container.get("volumeMounts", []):
        source = volumes[mount["name"]].get("configMap")
        if path is None or not source or source["name"] != config_map["metadata"]["name"]:
            continue
        items = source.get("items") or [{"key": key, "path": key} for key in config_map["data"]]
        for item in items:
            if "subPath" in mount:
                where = Path(mount["mountPath"]) if item["path"] == mount["subPath"] else None
            else:
                where = Path(mount["mountPath"]) / item["path"]
            if where == Path(path):
                return config_map["data"][item["key"]]
    return None


def on_a_claim(template: dict[str, Any], container: dict[str, Any], path: str) -> bool:
    volumes = {volume["name"]: volume for volume in template["spec"].get("volumes", [])}
    return any(Path(path).is_relative_to(mount["mountPath"])
               and "persistentVolumeClaim" in volumes[mount["name"]]
               for mount in container.get("volumeMounts", []))


def mlflow_auth_problems(docs: list[dict[str, Any]], tmp_path: Path) -> list[str]:
    """Why MLflow would answer without a login, or create its admin with a password other than
    the Secret's. The server's arguments go through MLflow's own `mlflow server` command line,
    the mounted basic_auth.ini and the Secret's values through MLflow's own config reader."""
    from mlflow.cli import server
    from mlflow.server.auth.config import read_auth_config

    template = dict(pod_templates(docs))["deployment:tandem-mlflow"]
    container = template["spec"]["containers"][0]
    assert container["command"] == ["mlflow", "server"]
    problems = []
    app = server.make_context("server", list(container["args"])).params["app_name"]
    if app != "basic-auth":
        problems.append(f"mlflow server runs app {app!r}, not basic-auth: no login")
    refs = secret_refs(container)
    problems += [f"{var} is not read from a Secret"
                 for var in (*MLFLOW_ADMIN_ENV, "MLFLOW_FLASK_SERVER_SECRET_KEY") if var not in refs]
    path = pod_env(container).get("MLFLOW_AUTH_CONFIG_PATH")
    text = mounted_file(template, container, path, find(docs, "ConfigMap", "tandem-mlflow"))
    if text is None:
        return problems + [f"MLFLOW_AUTH_CONFIG_PATH={path} is no file of ConfigMap tandem-mlflow in the "
                           "pod: MLflow would read the basic_auth.ini it ships"]
    ini = configparser.ConfigParser()
    ini.read_string(text)
    if "admin_password" in ini["mlflow"]:
        problems.append("basic_auth.ini in the ConfigMap holds an admin password")
    config_file = tmp_path / "basic_auth.ini"
    config_file.write_text(text, encoding="utf-8")
    environ = {var: f"{secret}-{key}-from-the-secret" for var, (secret, key) in refs.items()}
    with mock.patch.dict(os.environ, {**environ, "MLFLOW_AUTH_CONFIG_PATH": str(config_file)}):
        for var in set(MLFLOW_ADMIN_ENV) - environ.keys():
            os.environ.pop(var, None)
        config = read_auth_config()
    for var, value in zip(MLFLOW_ADMIN_ENV, (config.admin_username, config.admin_password), strict=True):
        if var in environ and value != environ[var]:
            problems.append(f"MLflow's admin gets {value!r}, not the Secret's {var}")
    database = config.database_uri
    if database.startswith("sqlite:") and not (database.startswith("sqlite:////") and on_a_claim(
            template, container, database.removeprefix("sqlite:///"))):
        problems.append(f"the auth database {database} is not on a claim: a restart loses its users")
    return problems


def mlflow_credential_problems(docs: list[dict[str, Any]]) -> list[str]:
    """Containers of Ray pods that do not log in to MLflow as the admin the server creates
    from the Secret (the same Secret and keys)."""
    templates = pod_templates(docs)
    server = secret_refs(dict(templates)["deployment:tandem-mlflow"]["spec"]["containers"][0])
    if not set(MLFLOW_ADMIN_ENV) <= server.keys():
        return [f"MLflow's server does not read {MLFLOW_ADMIN_ENV} from a Secret"]
    problems = []
    for name, template in templates:
        if not is_ray_pod(name):
            continue
        for container in template["spec"]["containers"]:
            refs = secret_refs(container)
            problems += [f"{name}/{container['name']}: {client} is {refs.get(client)}, not {server[admin]}"
                         for client, admin in zip(MLFLOW_CLIENT_ENV, MLFLOW_ADMIN_ENV, strict=True)
                         if refs.get(client) != server[admin]]
    return problems


def test_mlflow_requires_a_login_whose_admin_comes_from_the_secret(tmp_path):
    assert mlflow_auth_problems(all_docs(), tmp_path) == []
    mlflow = manifest("Deployment", "tandem-mlflow")["spec"]["template"]["spec"]["containers"][0]
    assert mlflow["readinessProbe"]["httpGet"]["path"] == "/health"  # the one route basic-auth leaves open


def test_mlflow_auth_check_catches_an_open_server_and_a_committed_password(tmp_path):
    docs = all_docs()
    container = find(docs, "Deployment", "tandem-mlflow")["spec"]["template"]["spec"]["containers"][0]
    container["args"].remove("--app-name=basic-auth")
    password = next(var for var in container["env"] if var["name"] == "MLFLOW_AUTH_ADMIN_PASSWORD")
    del password["valueFrom"]
    password["value"] = "committed-password"
    data = find(docs, "ConfigMap", "tandem-mlflow")["data"]
    data["basic-auth.ini"] = (data["basic-auth.ini"].replace("sqlite:////mlflow/", "sqlite:///")
                              + "admin_password = committed-password\n")
    problems = "\n".join(mlflow_auth_problems(docs, tmp_path))
    for expected in ("not basic-auth", "MLFLOW_AUTH_ADMIN_PASSWORD is not read from a Secret",
                     "holds an admin password", "sqlite:///basic_auth.db is not on a claim"):
        assert expected in problems, problems
    container["env"] = [var for var in container["env"] if var["name"] != "MLFLOW_AUTH_CONFIG_PATH"]
    assert "the basic_auth.ini it ships" in "\n".join(mlflow_auth_problems(docs, tmp_path))


def test_only_ray_pods_reach_mlflows_port():
    assert mlflow_access_problems(all_docs()) == []


def test_mlflow_access_check_catches_wider_policies_and_unlabelled_ray_pods():
    docs = all_docs()
    del find(docs, "NetworkPolicy", "tandem-pods")["spec"]["podSelector"]["matchExpressions"]
    problems = mlflow_access_problems(docs)
    assert "rayjob:tandem-finetune:submitter reaches MLflow's port but is not a Ray pod" in problems, problems
    assert "deployment:tandem-mlflow reaches MLflow's port but is not a Ray pod" in problems, problems
    docs = all_docs()
    peers = find(docs, "NetworkPolicy", "tandem-mlflow")["spec"]["ingress"][0]["from"]
    peers.append({"namespaceSelector": {}})
    assert any("admits other namespaces" in problem for problem in mlflow_access_problems(docs))
    docs = all_docs()
    groups = find(docs, "RayService", "tandem")["spec"]["rayClusterConfig"]["workerGroupSpecs"]
    del groups[-1]["template"]["metadata"]["labels"]["app.kubernetes.io/component"]
    assert mlflow_access_problems(docs) == [
        f"rayservice:{groups[-1]['groupName']} is a Ray pod that cannot reach MLflow's port"]
    docs = all_docs()
    docs.remove(find(docs, "NetworkPolicy", "tandem-mlflow"))
    assert mlflow_access_problems(docs) == [
        "no NetworkPolicy selects MLflow's pod: every pod and address reaches it"]


def test_ray_pods_log_in_to_mlflow_as_the_admin_of_the_secret():
    """Every container of a Ray pod (serve replicas, job drivers, the watcher, Train workers)
    gets MLflow's login from the Secret the server creates its admin from, under the names
    MLflow's client reads (checked with the client's own credential lookup); jobs' runtime_env
    (shown by Ray's dashboard) does not carry it."""
    from mlflow.utils.credentials import get_default_host_creds
    from tandem.settings import load_settings

    assert mlflow_credential_problems(all_docs()) == []
    for name, _, container in ray_containers():
        environ = {var: f"{secret}/{key}" for var, (secret, key) in secret_refs(container).items()
                   if var in MLFLOW_CLIENT_ENV}
        with mock.patch.dict(os.environ, environ):
            creds = get_default_host_creds(mlflow_service_url())
        assert (creds.username, creds.password) == tuple(environ[var] for var in MLFLOW_CLIENT_ENV), name
        assert not set(MLFLOW_CLIENT_ENV) & load_settings(pod_env(container)).service_env().keys()


def test_mlflow_credential_check_names_the_container_without_the_login():
    docs = all_docs()
    groups = find(docs, "RayService", "tandem")["spec"]["rayClusterConfig"]["workerGroupSpecs"]
    container = groups[0]["template"]["spec"]["containers"][0]
    container["env"] = [var for var in container["env"] if var["name"] != "MLFLOW_TRACKING_PASSWORD"]
    assert mlflow_credential_problems(docs) == [
        f"rayservice:{groups[0]['groupName']}/{container['name']}: MLFLOW_TRACKING_PASSWORD is None, "
        "not ('tandem-mlflow-auth', 'password')"]


def test_no_secret_is_committed():
    assert [name for name, doc in MANIFESTS if doc["kind"] == "Secret"] == []
    for name, template in pod_templates():
        for container in template["spec"]["containers"]:
            literal = [var["name"] for var in container.get("env", [])
                       if "value" in var and re.search(r"PASSWORD|SECRET|TOKEN|_KEY\b", var["name"])]
            assert literal == [], f"{name}: {literal} set in the manifest, not from a Secret"


def test_the_image_has_mlflows_basic_auth_app():
    import tomllib

    import mlflow
    from packaging.requirements import Requirement

    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    dependencies = pyproject["project"]["dependencies"]
    [requirement] = [req for req in map(Requirement, dependencies) if req.name == "mlflow"]
    assert "auth" in requirement.extras, "the image lacks Flask-WTF, which `--app-name basic-auth` imports"
    assert requirement.specifier.contains(mlflow.__version__)
    installs_project = r'^RUN pip install [^\n]*"\.(\[[\w,]+\])?"'
    assert re.search(installs_project, DOCKERFILE.read_text(encoding="utf-8"), re.MULTILINE), (
        "deploy/Dockerfile does not install the project with its dependencies")


# Images, versions and the jobs.

def test_one_image_at_the_pinned_ray_and_python_versions():
    service = manifest("RayService")
    assert service["spec"]["rayClusterConfig"]["rayVersion"] == ray.__version__
    pyproject = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    assert re.search(rf'"ray\[[a-z,]+\]=={re.escape(ray.__version__)}"', pyproject)
    python = f"py{sys.version_info.major}{sys.version_info.minor}"
    assert dockerfile_value(r"^ARG RAY_IMAGE=(\S+)$") == f"rayproject/ray:{ray.__version__}-{python}-gpu"
    images = {name: {container["image"] for container in template["spec"]["containers"]}
              for name, template in pod_templates()}
    assert len(set().union(*images.values())) == 1, f"one Tandem image everywhere: {images}"


def rayjob_entrypoint(name: str) -> tuple[str, dict[str, str], list[str]]:
    """(script, the script's own options, `--key=value` config overrides) of a RayJob's
    `python SCRIPT ...` entrypoint; the script must exist and declare its options."""
    python, script, *args = shlex.split(manifest("RayJob", name)["spec"]["entrypoint"])
    assert python == "python" and (REPO / script).is_file(), f"{name}: {python} {script}"
    declared = set(re.findall(r'add_argument\("(--[\w-]+)"', (REPO / script).read_text(encoding="utf-8")))
    options, overrides = {}, []
    while args:
        arg = args.pop(0)
        option, _, value = arg.partition("=")
        if option in declared:
            options[option] = value or args.pop(0)
        else:
            assert arg.startswith("--") and "=" in arg, f"{name}: {script} has no option {arg}"
            overrides.append(arg)
    return script, options, overrides


def test_rayjobs_run_from_the_image_on_the_serving_cluster():
    from ray.runtime_env import RuntimeEnv

    project_dir = dockerfile_value(r"^WORKDIR (\S+)$")
    assert dockerfile_value(r"^ENV PYTHONPATH=(\S+)") == project_dir
    docs = DOCS.read_text(encoding="utf-8")
    jobs = {doc["metadata"]["name"]: doc["spec"] for _, doc in MANIFESTS if doc["kind"] == "RayJob"}
    scripts = {rayjob_entrypoint(name)[0] for name in jobs}
    assert scripts == {"jobs/finetune.py", "jobs/retrain_watch.py"}
    for name, spec in jobs.items():
        assert spec["clusterSelector"] == {"ray.io/cluster": CLUSTER_PLACEHOLDER}, name
        runtime_env = yaml.safe_load(spec["runtimeEnvYAML"])
        assert set(runtime_env) <= RuntimeEnv.known_fields, name
        assert runtime_env["working_dir"] == project_dir, f"{name} runs outside the image's project"
        assert name in docs
    assert CLUSTER_PLACEHOLDER in docs and ".status.activeServiceStatus.rayClusterName" in docs


def test_finetune_rayjob_trains_a_shipped_config_that_the_watcher_watches():
    from tandem.config import load_config
    from tandem.train.config import FinetuneConfig

    _, options, overrides = rayjob_entrypoint("tandem-finetune")
    config = load_config(FinetuneConfig, REPO / options["--config"], overrides)
    _, options, overrides = rayjob_entrypoint("tandem-retrain-watch")
    assert options["--model"] == config.registered_model
    assert overrides == []


def test_docs_name_every_manifest():
    docs = DOCS.read_text(encoding="utf-8")
    for path in [*KUBERAY.glob("*.yaml"), DOCKERFILE]:
        assert f"{path.parent.name}/{path.name}" in docs, f"docs/kubernetes.md does not mention {path.name}"
