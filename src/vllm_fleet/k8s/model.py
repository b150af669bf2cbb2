"""The `kubernetes` block of a service: what a KServe user sets besides the shared spec."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from vllm_fleet.spec.errors import fail, matching
from vllm_fleet.spec.model import DNS1123_LABEL, Strict

DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
# A Kubernetes resource quantity: 4, 500m, 32Gi, 1.5, 2e3.
QUANTITY = re.compile(r"^([0-9]+(\.[0-9]*)?|\.[0-9]+)([numkMGTPE]|[KMGTPE]i|[eE][+-]?[0-9]+)?$")
# Label keys: an optional DNS subdomain prefix and a name of at most 63 characters.
LABEL_KEY = re.compile(r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")

# A DNS-1123 label of at most 63 characters: a namespace, runtime, service account or object name.
Label = Annotated[str, matching(DNS1123_LABEL, "is not a DNS-1123 label of at most 63 characters",
                                "use lower-case letters, digits and '-', starting and ending alphanumeric",
                                max_length=63)]
ObjectName = Annotated[str, matching(DNS1123_LABEL, "is not a Kubernetes object name",
                                     "use lower-case letters, digits and '-'", max_length=63)]
ResourceName = Annotated[str, matching(re.compile(r"^(?=.*/)" + LABEL_KEY.pattern.lstrip("^")),
                                       "is not an extended resource name",
                                       "write it as VENDOR/RESOURCE, e.g. nvidia.com/gpu")]

DeploymentMode = Literal["Standard", "Knative", "RawDeployment", "Serverless"]
STANDARD_MODES = ("Standard", "RawDeployment")
# KServe's ServingRuntime for its multi-node form (predictor.workerSpec): the huggingface server's vLLM on a Ray
# head pod and worker pods.
MULTI_NODE_RUNTIME = "kserve-huggingfaceserver-multinode"


def _check_keys(mapping: dict[str, Any], what: str, example: str) -> None:
    for key in mapping:
        if not LABEL_KEY.match(key):
            raise fail(f"'{key}' is not {what}", f"use PREFIX/NAME, e.g. {example}")


def _quantity(v: str | None, example: str) -> str | None:
    if v is not None and not QUANTITY.match(v):
        raise fail("is not a Kubernetes quantity", f"write it as Kubernetes does, e.g. {example}")
    return v


class Resources(Strict):
    """CPU and memory, set as both request and limit; GPUs come from the parallel sizes."""

    cpu: str = "4"
    memory: str = "32Gi"

    @field_validator("cpu")
    @classmethod
    def _cpu(cls, v: str) -> str:
        return _quantity(v, "4 or 3500m") or v

    @field_validator("memory")
    @classmethod
    def _memory(cls, v: str) -> str:
        return _quantity(v, "32Gi") or v


class Toleration(Strict):
    key: str | None = None
    operator: Literal["Equal", "Exists"] = "Equal"
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    toleration_seconds: int | None = Field(None, ge=0)

    @model_validator(mode="after")
    def _shape(self) -> Toleration:
        if self.operator == "Exists" and self.value is not None:
            raise fail("sets a value with operator Exists", "remove value, or use operator: Equal")
        if self.key is None and self.operator != "Exists":
            raise fail("has no key but operator Equal", "give a key, or use operator: Exists to tolerate every taint")
        if self.toleration_seconds is not None and self.effect != "NoExecute":
            raise fail("sets toleration_seconds without effect NoExecute", "set effect: NoExecute, or remove it")
        return self


class StartupProbe(Strict):
    """How long a pod may take to load weights before the kubelet kills it."""

    timeout_seconds: int = Field(1800, ge=60, le=86400)
    period_seconds: int = Field(10, ge=1, le=300)


class ModelCache(Strict):
    """A PersistentVolumeClaim mounted for the model cache (HF_HOME lives under it)."""

    claim_name: str | None = None
    size: str | None = Field(None, description="create the claim with this size; omit to use an existing claim")
    storage_class: str | None = None
    access_mode: Literal["ReadWriteOnce", "ReadWriteMany", "ReadOnlyMany"] = "ReadWriteMany"
    mount_path: str = "/root/.cache"

    @field_validator("size")
    @classmethod
    def _size(cls, v: str | None) -> str | None:
        return _quantity(v, "200Gi")

    @field_validator("mount_path")
    @classmethod
    def _abs(cls, v: str) -> str:
        if not v.startswith("/") or v in ("/", "/mnt/models", "/dev/shm"):
            raise fail("is not a free absolute path", "use an absolute path such as /root/.cache")
        return v

    @model_validator(mode="after")
    def _which(self) -> ModelCache:
        if self.claim_name is None and self.size is None:
            raise fail("names no claim and no size", "give claim_name (an existing claim) or size (a new claim)")
        return self


class Ingress(Strict):
    host: Annotated[str, matching(DNS1123_SUBDOMAIN, "is not a DNS host name",
                                  "give a lower-case host such as llm.example.com", max_length=253)]
    class_name: str | None = None
    tls_secret_name: str | None = None
    path: str = "/"
    annotations: dict[str, str] = Field(default_factory=dict)

    @field_validator("path")
    @classmethod
    def _path(cls, v: str) -> str:
        if not v.startswith("/"):
            raise fail("does not start with '/'", "write it as /PATH")
        return v


class ClusterSettings(Strict):
    """Everything under `services[i].kubernetes`."""

    namespace: Label = "default"
    create_namespace: bool = False
    mode: Literal["container", "runtime"] = "container"
    deployment_mode: DeploymentMode = "Standard"
    runtime: Label | None = Field(None, description="ServingRuntime name, mode runtime only")
    model_format: str = "huggingface"
    resources: Resources = Field(default_factory=Resources)
    gpu_resource: ResourceName = "nvidia.com/gpu"
    runtime_class_name: Label | None = None
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[Toleration] = Field(default_factory=list)
    affinity: dict[str, Any] = Field(default_factory=dict)
    max_gpus_per_node: int = Field(8, ge=1)
    min_replicas: int = 1
    max_replicas: int | None = None
    autoscaler_class: Literal["hpa", "keda", "external", "none"] | None = None
    scale_metric: Literal["cpu", "memory", "concurrency", "rps"] | None = None
    scale_target: int | None = Field(None, gt=0)
    startup_probe: StartupProbe = Field(default_factory=StartupProbe)
    model_cache: ModelCache | None = None
    ingress: Ingress | None = None
    service_account_name: Label | None = None
    image_pull_secrets: list[str] = Field(default_factory=list)
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)

    @field_validator("image_pull_secrets")
    @classmethod
    def _secret_names(cls, v: list[str]) -> list[str]:
        for name in v:
            if len(name) > 253 or not DNS1123_SUBDOMAIN.match(name):
                raise fail(f"'{name}' is not a Secret name", "use lower-case letters, digits, '-' and '.'")
        return v

    @field_validator("node_selector", "labels")
    @classmethod
    def _labels(cls, v: dict[str, str]) -> dict[str, str]:
        _check_keys(v, "a label key", "nvidia.com/gpu.product")
        for key, value in v.items():
            if not isinstance(value, str) or not LABEL_VALUE.match(value):
                raise fail(f"the value of '{key}' is not a label value",
                           "quote it; at most 63 letters, digits, '-', '_' or '.'")
        return v

    @field_validator("annotations")
    @classmethod
    def _annotations(cls, v: dict[str, str]) -> dict[str, str]:
        _check_keys(v, "an annotation key", "example.com/owner")
        for key in v:
            if key.startswith("serving.kserve.io/"):
                raise fail(f"sets '{key}', which the program sets from the kubernetes fields",
                           "use deployment_mode, autoscaler_class or scale_metric instead")
        return v

    @field_validator("affinity")
    @classmethod
    def _affinity(cls, v: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(v) - {"nodeAffinity", "podAffinity", "podAntiAffinity"})
        if unknown:
            raise fail(f"has the unknown key(s) {', '.join(unknown)}",
                       "use the Kubernetes spelling: nodeAffinity, podAffinity or podAntiAffinity")
        return v

    @property
    def is_standard(self) -> bool:
        return self.deployment_mode in STANDARD_MODES


class GatewayParent(Strict):
    """The existing Gateway (Gateway API) the routes attach to; its listener terminates TLS."""

    name: ObjectName
    namespace: ObjectName | None = None
    section_name: str | None = None


class GatewayClusterSettings(Strict):
    """Everything under `gateway.kubernetes`: the Gateway the routes attach to, where its Envoy proxies run (the
    predictors' NetworkPolicy admits them), and the listener's body and time limits."""

    parent: GatewayParent
    hostnames: list[str] = Field(default_factory=list)
    # Envoy Gateway runs a Gateway's Envoy pods in its own namespace unless its deploy type is GatewayNamespace.
    proxy_namespace: ObjectName = "envoy-gateway-system"
    # Namespaces whose pods may reach the predictors too (a Prometheus scraping /metrics, say); none by default.
    admit_namespaces: list[ObjectName] = Field(default_factory=list)
    # The largest request body the Gateway's listener buffers (AI Gateway reads each body whole); None leaves the
    # listener's ClientTrafficPolicy to you (Envoy Gateway's default buffer is 32 KiB).
    max_body_kib: int | None = Field(1024, ge=1, le=1024 * 1024)
    # How long a client may take to send its whole request.
    body_timeout_seconds: int = Field(30, ge=1, le=3600)

    @field_validator("hostnames")
    @classmethod
    def _hosts(cls, v: list[str]) -> list[str]:
        for host in v:
            if len(host) > 253 or not DNS1123_SUBDOMAIN.match(host.removeprefix("*.")):
                raise fail(f"'{host}' is not a DNS host name", "give lower-case hosts such as llm.example.com")
        return v
