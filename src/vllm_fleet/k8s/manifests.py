"""Plain Kubernetes manifests for a validated deployment's services.

`k8s/deployment.py` puts them together with the gateway's (k8s/gateway.py): the Pulumi component registers these
manifests, and `vllm-fleet k8s render` writes them as YAML.
Secret values are never here: a value that comes from Pulumi config is a `ConfigSecret`
placeholder, which the component resolves to a secret Output and `render` writes as a marker.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from vllm_fleet.engine_args import (
    ADAPTERS_MOUNT,
    MODEL_MOUNT,
    SERVER_MODULE,
    STOP_MARGIN_SECONDS,
    lora_modules_args,
    render_engine_args,
)
from vllm_fleet.k8s.model import MULTI_NODE_RUNTIME, ClusterSettings
from vllm_fleet.k8s.validation import GCS_KEY, HF_KEY, MODELSCOPE_KEY, S3_KEYS, cluster_settings
from vllm_fleet.spec.model import Accelerator, S3Credentials, SecretRef, Service
from vllm_fleet.units import k8s_size

Manifest = dict[str, Any]

CONTAINER_NAME = "kserve-container"
KSERVE_API = "serving.kserve.io/v1beta1"
A_DEPLOYMENT_MODE = "serving.kserve.io/deploymentMode"
A_AUTOSCALER_CLASS = "serving.kserve.io/autoscalerClass"
A_S3_ENDPOINT = "serving.kserve.io/s3-endpoint"
A_S3_USE_HTTPS = "serving.kserve.io/s3-usehttps"
A_S3_VERIFY_SSL = "serving.kserve.io/s3-verifyssl"
A_S3_REGION = "serving.kserve.io/s3-region"
MANAGED_BY = {"app.kubernetes.io/managed-by": "vllm-fleet"}
API_KEY_FIELD = "api-key"
SHM_VOLUME = "dshm"
CACHE_VOLUME = "model-cache"
HEALTH_PATH = "/health"
# KServe's Python model server (the huggingface runtime) listens on 8080 and answers liveness on /.
RUNTIME_PORT = 8080
RUNTIME_LIVENESS_PATH = "/"
# The huggingface runtime's own flags stand in for the server flags render_engine_args leads with.
_SERVER_FLAGS = frozenset({"--model", "--served-model-name", "--host", "--port"})


@dataclass(frozen=True)
class ConfigSecret:
    """A secret value to be read from Pulumi config key `key` (namespace `vllm-fleet`), after `prefix`."""

    key: str
    prefix: str = ""

    def marker(self) -> str:
        return f"{self.prefix}<secret: set by `pulumi config set --secret {self.key}`>"


def namespace_manifest(name: str) -> Manifest:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": dict(MANAGED_BY)}}


def service_manifests(svc: Service) -> list[Manifest]:
    """Secrets, ServiceAccount, PVC, InferenceService and Ingress of one service."""
    s = cluster_settings(svc)
    out: list[Manifest] = []
    storage_secrets = _storage_secrets(svc, s)
    out.extend(storage_secrets)
    if svc.api_key and svc.api_key.pulumi_config:
        key = ConfigSecret(svc.api_key.pulumi_config)
        out.append(_secret(svc, s, api_key_secret_name(svc), {API_KEY_FIELD: key}))
    attached = sorted({m["metadata"]["name"] for m in storage_secrets} | _existing_storage_secret_names(svc))
    if attached:
        out.append(_service_account(svc, s, attached))
    if s.model_cache and s.model_cache.size:
        out.append(_pvc(svc, s))
    out.append(inference_service(svc, s, service_account=storage_account_name(svc) if attached else None))
    if s.ingress:
        out.append(_ingress(svc, s))
    return out


def api_key_secret_name(svc: Service) -> str:
    return f"{svc.name}-api-key"


def storage_account_name(svc: Service) -> str:
    return f"{svc.name}-storage"


def cache_claim_name(svc: Service, s: ClusterSettings) -> str:
    assert s.model_cache is not None
    return s.model_cache.claim_name or f"{svc.name}-model-cache"


def predictor_service(svc: Service) -> str:
    """The Kubernetes Service KServe puts in front of the predictor (a Standard one, or Knative's)."""
    return f"{svc.name}-predictor" if cluster_settings(svc).is_standard else svc.name


def server_port(svc: Service) -> int:
    """The port the predictor's server listens on in its pod: vLLM's own in container mode, else the runtime's."""
    return svc.port if cluster_settings(svc).mode == "container" else RUNTIME_PORT


def internal_url(svc: Service) -> str:
    """Where pods in the same cluster reach the OpenAI server (Kubernetes DNS)."""
    return f"http://{predictor_service(svc)}.{cluster_settings(svc).namespace}.svc.cluster.local"


def external_url(svc: Service) -> str | None:
    s = cluster_settings(svc)
    if s.ingress is None:
        return None
    scheme = "https" if s.ingress.tls_secret_name else "http"
    path = s.ingress.path.rstrip("/")
    return f"{scheme}://{s.ingress.host}{path}"


def object_meta(svc: Service, s: ClusterSettings, name: str,
                annotations: dict[str, str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": name,
        "namespace": s.namespace,
        "labels": {**MANAGED_BY, "vllm-fleet/service": svc.name},
    }
    if annotations:
        meta["annotations"] = annotations
    return meta


def _secret(svc: Service, s: ClusterSettings, name: str, data: dict[str, ConfigSecret],
            annotations: dict[str, str] | None = None) -> Manifest:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": object_meta(svc, s, name, annotations),
            "type": "Opaque", "stringData": dict(data)}


def _s3_annotations(s3: S3Credentials) -> dict[str, str]:
    if s3.endpoint:
        parts = urlsplit(s3.endpoint)
        endpoint, https = parts.netloc, parts.scheme == "https"
    else:
        endpoint, https = "s3.amazonaws.com", True
    ann = {A_S3_ENDPOINT: endpoint, A_S3_USE_HTTPS: "1" if https else "0",
           A_S3_VERIFY_SSL: "1" if s3.verify_ssl else "0"}
    if s3.region:
        ann[A_S3_REGION] = s3.region
    return ann


def _storage_secrets(svc: Service, s: ClusterSettings) -> list[Manifest]:
    """Secrets the program creates from Pulumi config, keyed as KServe's credential builder expects."""
    creds = svc.storage.credentials
    out = []
    if creds.s3 and creds.s3.access_key_id.pulumi_config:
        data = {S3_KEYS[f]: ConfigSecret(_config_key(getattr(creds.s3, f))) for f in S3_KEYS}
        out.append(_secret(svc, s, f"{svc.name}-s3", data, _s3_annotations(creds.s3)))
    if creds.gcs and creds.gcs.application_credentials.pulumi_config:
        out.append(_secret(svc, s, f"{svc.name}-gcs",
                           {GCS_KEY: ConfigSecret(_config_key(creds.gcs.application_credentials))}))
    if creds.hf_token and creds.hf_token.pulumi_config:
        out.append(_secret(svc, s, f"{svc.name}-hf-token", {HF_KEY: ConfigSecret(creds.hf_token.pulumi_config)}))
    if creds.modelscope_token and creds.modelscope_token.pulumi_config:
        out.append(_secret(svc, s, f"{svc.name}-modelscope-token",
                           {MODELSCOPE_KEY: ConfigSecret(creds.modelscope_token.pulumi_config)}))
    return out


def _config_key(ref: SecretRef) -> str:
    assert ref.pulumi_config is not None
    return ref.pulumi_config


def _existing_storage_secret_names(svc: Service) -> set[str]:
    creds = svc.storage.credentials
    refs = [creds.hf_token, creds.modelscope_token]
    if creds.s3:
        refs += [creds.s3.access_key_id, creds.s3.secret_access_key]
    if creds.gcs:
        refs.append(creds.gcs.application_credentials)
    return {r.k8s_secret.name for r in refs if r and r.k8s_secret}


def _service_account(svc: Service, s: ClusterSettings, secrets: list[str]) -> Manifest:
    creds = svc.storage.credentials
    # KServe also reads the S3 annotations from the account, which covers Secrets it does not own.
    annotations = _s3_annotations(creds.s3) if creds.s3 else None
    sa: Manifest = {"apiVersion": "v1", "kind": "ServiceAccount",
                    "metadata": object_meta(svc, s, storage_account_name(svc), annotations),
                    "secrets": [{"name": n} for n in secrets]}
    return sa


def _pvc(svc: Service, s: ClusterSettings) -> Manifest:
    cache = s.model_cache
    assert cache is not None and cache.size is not None
    spec: dict[str, Any] = {"accessModes": [cache.access_mode], "resources": {"requests": {"storage": cache.size}}}
    if cache.storage_class:
        spec["storageClassName"] = cache.storage_class
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": object_meta(svc, s, cache_claim_name(svc, s)), "spec": spec}


def _ingress(svc: Service, s: ClusterSettings) -> Manifest:
    ing = s.ingress
    assert ing is not None
    backend = {"service": {"name": f"{svc.name}-predictor", "port": {"number": 80}}}
    spec: dict[str, Any] = {"rules": [{"host": ing.host, "http": {"paths": [
        {"path": ing.path, "pathType": "Prefix", "backend": backend}]}}]}
    if ing.class_name:
        spec["ingressClassName"] = ing.class_name
    if ing.tls_secret_name:
        spec["tls"] = [{"hosts": [ing.host], "secretName": ing.tls_secret_name}]
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": object_meta(svc, s, svc.name, dict(ing.annotations) or None), "spec": spec}


def _env(svc: Service, s: ClusterSettings) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = []
    if s.mode == "container" and not svc.adapters:  # with adapters, the predictor's storageUris say it all
        env.append({"name": "STORAGE_URI", "value": svc.uri.kserve_uri(svc.effective_revision)})
    if svc.api_key:
        env.append({"name": "VLLM_API_KEY", "valueFrom": {"secretKeyRef": _key_ref(
            svc.api_key, api_key_secret_name(svc), API_KEY_FIELD)}})
    creds = svc.storage.credentials
    if creds.hf_token:
        env.append({"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": _key_ref(
            creds.hf_token, f"{svc.name}-hf-token", HF_KEY)}})
    if svc.storage.endpoint and svc.uri.scheme == "hf":
        env.append({"name": "HF_ENDPOINT", "value": svc.storage.endpoint})
    if svc.storage.endpoint and svc.uri.scheme == "ms":
        env.append({"name": "MODELSCOPE_DOMAIN", "value": svc.storage.endpoint})
    if s.model_cache:
        env.append({"name": "HF_HOME", "value": f"{s.model_cache.mount_path.rstrip('/')}/huggingface"})
    env.extend({"name": k, "value": v} for k, v in sorted(svc.env.items()))
    return env


def _key_ref(ref: SecretRef, created_name: str, created_key: str) -> dict[str, str]:
    if ref.k8s_secret:
        return {"name": ref.k8s_secret.name, "key": ref.k8s_secret.key}
    return {"name": created_name, "key": created_key}


def _resources(svc: Service, s: ClusterSettings) -> dict[str, Any]:
    amounts = {"cpu": s.resources.cpu, "memory": s.resources.memory}
    if svc.accelerator is Accelerator.NVIDIA and svc.gpu_count:
        amounts[s.gpu_resource] = str(svc.gpu_count)
    return {"requests": dict(amounts), "limits": dict(amounts)}


def _probes(svc: Service, s: ClusterSettings) -> dict[str, Any]:
    if s.mode == "container":
        get: dict[str, Any] = {"path": HEALTH_PATH, "port": svc.port}
    else:
        get = {"path": RUNTIME_LIVENESS_PATH, "port": RUNTIME_PORT}
    period = s.startup_probe.period_seconds
    return {
        # Loading a large model can take many minutes; until /health answers, liveness does not apply.
        "startupProbe": {"httpGet": dict(get), "periodSeconds": period, "timeoutSeconds": 5,
                         "failureThreshold": math.ceil(s.startup_probe.timeout_seconds / period)},
        "readinessProbe": {"httpGet": dict(get), "periodSeconds": 10, "timeoutSeconds": 5, "failureThreshold": 3},
        "livenessProbe": {"httpGet": dict(get), "periodSeconds": 30, "timeoutSeconds": 10, "failureThreshold": 5},
    }


def _volumes(svc: Service, s: ClusterSettings) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    volumes: list[dict[str, Any]] = [{"name": SHM_VOLUME, "emptyDir": {"medium": "Memory",
                                                                     "sizeLimit": k8s_size(svc.shm_size)}}]
    mounts: list[dict[str, Any]] = [{"name": SHM_VOLUME, "mountPath": "/dev/shm"}]
    if s.model_cache:
        volumes.append({"name": CACHE_VOLUME, "persistentVolumeClaim": {"claimName": cache_claim_name(svc, s)}})
        mounts.append({"name": CACHE_VOLUME, "mountPath": s.model_cache.mount_path})
    return volumes, mounts


# The parallel sizes of an engine group: KServe's multi-node runtime takes them from predictor.workerSpec only.
_GROUP_FLAGS = frozenset({"--tensor-parallel-size", "--pipeline-parallel-size"})


def _runtime_args(svc: Service) -> list[str]:
    """The engine flags for KServe's huggingface runtime, which names the model with --model_name."""
    args = render_engine_args(svc, port=svc.port, model_path=MODEL_MOUNT)
    dropped = _SERVER_FLAGS | (_GROUP_FLAGS if svc.nodes > 1 else frozenset())
    kept: list[str] = []
    skip = False
    for arg in args:
        if skip:
            skip = False
            continue
        if arg in dropped:
            skip = True
            continue
        kept.append(arg)
    return [f"--model_name={svc.model_name}", *kept]


def inference_service(svc: Service, s: ClusterSettings, service_account: str | None = None) -> Manifest:
    annotations = {A_DEPLOYMENT_MODE: s.deployment_mode, **s.annotations}
    if s.autoscaler_class:
        annotations[A_AUTOSCALER_CLASS] = s.autoscaler_class
    if svc.nodes > 1:  # KServe's multi-node form does not autoscale
        annotations[A_AUTOSCALER_CLASS] = "none"
    volumes, mounts = _volumes(svc, s)
    container: dict[str, Any] = {
        "env": _env(svc, s),
        "resources": _resources(svc, s),
        "volumeMounts": mounts,
        **_probes(svc, s),
    }
    # SIGTERM lets vLLM drain for engine.shutdown_timeout; the pod's grace covers that and the teardown.
    predictor: dict[str, Any] = {"minReplicas": s.min_replicas,
                                 "terminationGracePeriodSeconds": svc.engine.shutdown_timeout + STOP_MARGIN_SECONDS}
    if s.max_replicas is not None:
        predictor["maxReplicas"] = s.max_replicas
    if s.scale_metric:
        predictor["scaleMetric"] = s.scale_metric
    if s.scale_target is not None:
        predictor["scaleTarget"] = s.scale_target
    account = service_account or s.service_account_name
    if account:
        predictor["serviceAccountName"] = account
    if s.runtime_class_name:
        predictor["runtimeClassName"] = s.runtime_class_name
    if s.node_selector:
        predictor["nodeSelector"] = dict(s.node_selector)
    if s.tolerations:
        predictor["tolerations"] = [_toleration(t.model_dump(exclude_none=True)) for t in s.tolerations]
    if s.affinity:
        predictor["affinity"] = s.affinity
    if s.image_pull_secrets:
        predictor["imagePullSecrets"] = [{"name": n} for n in s.image_pull_secrets]
    if s.mode == "container":
        if svc.adapters:
            # KServe's storage initializer fetches the model and each adapter (storageUris, under one root) before
            # vLLM starts, which serves the adapters from there; a changed list rolls out a new revision.
            predictor["storageUris"] = [{"uri": svc.uri.kserve_uri(svc.effective_revision), "mountPath": MODEL_MOUNT},
                                        *({"uri": a.uri.kserve_uri(a.effective_revision),
                                           "mountPath": f"{ADAPTERS_MOUNT}/{a.directory}"} for a in svc.adapters)]
        predictor["containers"] = [{
            "name": CONTAINER_NAME,
            "image": svc.image,
            "command": list(SERVER_MODULE),
            "args": render_engine_args(svc, port=svc.port, model_path=MODEL_MOUNT) + lora_modules_args(
                [(a.name, f"{ADAPTERS_MOUNT}/{a.directory}") for a in svc.adapters], svc.model_name),
            "ports": [{"name": "http1", "containerPort": svc.port, "protocol": "TCP"}],
            **container,
        }]
    else:
        model: dict[str, Any] = {"modelFormat": {"name": s.model_format}}
        if s.runtime or svc.nodes > 1:
            model["runtime"] = s.runtime or MULTI_NODE_RUNTIME
        model["storageUri"] = svc.uri.kserve_uri(svc.effective_revision)
        model["args"] = _runtime_args(svc)
        predictor["model"] = {**model, **container}
        if svc.nodes > 1:
            # A head pod and nodes - 1 worker pods, each with the GPUs of one node (tensor parallel within it).
            assert isinstance(svc.tensor_parallel_size, int)  # auto is refused for groups
            predictor["workerSpec"] = {"tensorParallelSize": svc.tensor_parallel_size,
                                       "pipelineParallelSize": svc.pipeline_parallel_size}
    predictor["volumes"] = volumes
    metadata = object_meta(svc, s, svc.name, annotations)
    metadata["labels"].update(s.labels)
    return {"apiVersion": KSERVE_API, "kind": "InferenceService", "metadata": metadata,
            "spec": {"predictor": predictor}}


def _toleration(t: dict[str, Any]) -> dict[str, Any]:
    if "toleration_seconds" in t:
        t["tolerationSeconds"] = t.pop("toleration_seconds")
    return t
