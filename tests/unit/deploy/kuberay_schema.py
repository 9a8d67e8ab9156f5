"""KubeRay's custom resources (ray.io/v1 RayService and RayJob) as strict pydantic models.

Field names and types follow KubeRay's Go types (`ray-operator/apis/ray/v1/*_types.go`,
v1.7.0); the pod templates, services and resource requirements inside them are the
official `kubernetes` client's models. Only fields a Tandem manifest could use are listed,
and any other key is an error: an API server prunes unknown fields of a custom resource
(at most warning), so a misspelled `maxReplicas` would otherwise vanish without a trace.
Fields KubeRay defaults but the manifests must state (group sizes) are required here.
"""

from __future__ import annotations

from typing import Literal

from kubernetes.client import (
    V1EnvFromSource,
    V1EnvVar,
    V1ObjectMeta,
    V1PodTemplateSpec,
    V1ResourceRequirements,
    V1SecurityContext,
    V1Service,
    V1VolumeMount,
)
from pydantic import BaseModel, ConfigDict


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class AuthOptions(_Strict):
    mode: Literal["disabled", "token"] | None = None
    secretName: str | None = None
    enableK8sTokenAuth: bool | None = None


class AutoscalerOptions(_Strict):
    resources: V1ResourceRequirements | None = None
    image: str | None = None
    imagePullPolicy: str | None = None
    securityContext: V1SecurityContext | None = None
    idleTimeoutSeconds: int | None = None
    upscalingMode: Literal["Default", "Aggressive", "Conservative"] | None = None
    version: Literal["v1", "v2"] | None = None
    env: list[V1EnvVar] | None = None
    envFrom: list[V1EnvFromSource] | None = None
    volumeMounts: list[V1VolumeMount] | None = None
    command: list[str] | None = None
    args: list[str] | None = None


class HeadGroupSpec(_Strict):
    template: V1PodTemplateSpec
    headService: V1Service | None = None
    enableIngress: bool | None = None
    resources: dict[str, str] | None = None
    labels: dict[str, str] | None = None
    rayStartParams: dict[str, str] | None = None
    serviceType: str | None = None


class WorkerGroupSpec(_Strict):
    groupName: str
    replicas: int
    minReplicas: int
    maxReplicas: int
    idleTimeoutSeconds: int | None = None
    priority: int | None = None
    resources: dict[str, str] | None = None
    labels: dict[str, str] | None = None
    rayStartParams: dict[str, str] | None = None
    template: V1PodTemplateSpec
    numOfHosts: int | None = None


class RayClusterSpec(_Strict):
    headGroupSpec: HeadGroupSpec
    workerGroupSpecs: list[WorkerGroupSpec] | None = None
    rayVersion: str | None = None
    enableInTreeAutoscaling: bool | None = None
    autoscalerOptions: AutoscalerOptions | None = None
    authOptions: AuthOptions | None = None
    headServiceAnnotations: dict[str, str] | None = None
    suspend: bool | None = None
    managedBy: str | None = None


class RayServiceUpgradeStrategy(_Strict):
    type: Literal["NewCluster", "NewClusterWithIncrementalUpgrade", "None"] | None = None


class RayServiceSpec(_Strict):
    serveConfigV2: str
    rayClusterConfig: RayClusterSpec
    serveService: V1Service | None = None
    upgradeStrategy: RayServiceUpgradeStrategy | None = None
    rayClusterDeletionDelaySeconds: int | None = None
    serviceUnhealthySecondThreshold: int | None = None
    deploymentUnhealthySecondThreshold: int | None = None
    excludeHeadPodFromServeSvc: bool | None = None
    managedBy: str | None = None
    suspend: bool | None = None


class SubmitterConfig(_Strict):
    backoffLimit: int | None = None


class RayJobSpec(_Strict):
    entrypoint: str
    runtimeEnvYAML: str | None = None
    clusterSelector: dict[str, str] | None = None
    rayClusterSpec: RayClusterSpec | None = None
    submissionMode: Literal["K8sJobMode", "HTTPMode", "InteractiveMode", "SidecarMode"] | None = None
    submitterPodTemplate: V1PodTemplateSpec | None = None
    submitterConfig: SubmitterConfig | None = None
    metadata: dict[str, str] | None = None
    jobId: str | None = None
    entrypointNumCpus: float | None = None
    entrypointNumGpus: float | None = None
    entrypointResources: str | None = None
    activeDeadlineSeconds: int | None = None
    ttlSecondsAfterFinished: int | None = None
    shutdownAfterJobFinishes: bool | None = None
    suspend: bool | None = None
    managedBy: str | None = None


class RayService(_Strict):
    apiVersion: Literal["ray.io/v1"]
    kind: Literal["RayService"]
    metadata: V1ObjectMeta
    spec: RayServiceSpec


class RayJob(_Strict):
    apiVersion: Literal["ray.io/v1"]
    kind: Literal["RayJob"]
    metadata: V1ObjectMeta
    spec: RayJobSpec
