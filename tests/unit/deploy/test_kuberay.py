"""The KubeRay manifests (`deploy/kuberay/`) against the schemas they are applied with and
against the project's own facts, so that neither can drift without a failing test.

Every document validates with the official `kubernetes` client's models (pod templates,
Deployments, Services, claims) or KubeRay's ray.io/v1 types (`kuberay_schema`), strictly:
a misspelled field fails instead of being pruned by the API server. The RayService's
`serveConfigV2` validates with Ray's `ServeDeploySchema` and Tandem's `ServeAppConfig`, and
a validate-and-dump round trip must keep every field. Its worker groups must equal
`cluster.yaml`'s node types, its pools `apps/serve.gpu.yaml`'s, and the environment of its
pods must lead Tandem's settings to the cluster's own services. No cluster, image or
network is needed: what these checks cannot see is listed in docs/kubernetes.md.
"""

from __future__ import annotations

import copy
import re
import shlex
import sys
from pathlib import Path
from typing import Any
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


def pod_templates() -> list[tuple[str, dict[str, Any]]]:
    """(id, pod template) of every pod the manifests make."""
    service = manifest("RayService")
    cluster = service["spec"]["rayClusterConfig"]
    found = [("rayservice:head", cluster["headGroupSpec"]["template"])]
    found += [(f"rayservice:{group['groupName']}", group["template"])
              for group in cluster["workerGroupSpecs"]]
    found += [(f"deployment:{doc['metadata']['name']}", doc["spec"]["template"])
              for _, doc in MANIFESTS if doc["kind"] == "Deployment"]
    for _, doc in MANIFESTS:
        if doc["kind"] == "RayJob":
            spec = doc["spec"]
            if "submitterPodTemplate" in spec:
                found.append((f"rayjob:{doc['metadata']['name']}:submitter", spec["submitterPodTemplate"]))
            if "rayClusterSpec" in spec:
                found.append((f"rayjob:{doc['metadata']['name']}:head",
                              spec["rayClusterSpec"]["headGroupSpec"]["template"]))
    return found


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
        "NetworkPolicy/tandem-pods"])


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
    submits (`tandem.jobs`, `Settings.service_env`) get the same MLflow."""
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
    operator to the dashboard and its agent, and anyone else to the API port alone."""
    assert serve_config()["http_options"]["host"] == "0.0.0.0"
    for name, _, container in ray_containers():
        assert pod_env(container).get("RAY_SERVE_ENABLE_HA_PROXY") == "1", name
    policy = manifest("NetworkPolicy")["spec"]
    own = policy["podSelector"]["matchLabels"]
    for name, template in pod_templates():
        labels = template.get("metadata", {}).get("labels", {})
        assert own.items() <= labels.items(), f"{name} is outside the policy"
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
    for _, _, container in ray_containers():
        wanted |= set(secret_refs(container).values())
    for secret, key in sorted(wanted):
        command = re.search(rf"create secret generic {secret}\b[^\n]*", docs)
        assert command, f"docs/kubernetes.md does not create Secret {secret}"
        assert f"--from-literal={key}=" in command.group(0), f"docs/kubernetes.md: {secret} lacks key {key}"


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
