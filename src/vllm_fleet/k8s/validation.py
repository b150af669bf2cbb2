"""Cluster-only rules on top of the shared spec."""

from __future__ import annotations

from collections.abc import Iterator

from pydantic import ValidationError

from vllm_fleet.k8s.model import MULTI_NODE_RUNTIME, ClusterSettings, GatewayClusterSettings
from vllm_fleet.spec import Target, TargetRules
from vllm_fleet.spec.errors import SpecIssue, issues_from_validation_error, show_value
from vllm_fleet.spec.model import Accelerator, Deployment, SecretRef, Service
from vllm_fleet.units import k8s_quantity, k8s_size

# The stack config holds the spec under CONFIG_NAMESPACE:SPEC_KEY (Pulumi.<stack>.yaml).
CONFIG_NAMESPACE = "vllm-fleet"
SPEC_KEY = "spec"
SPEC_SOURCE = f"Pulumi config {CONFIG_NAMESPACE}:{SPEC_KEY}"

# KServe names the objects it creates after the InferenceService: a Standard (raw) predictor is the
# Deployment and Service `NAME-predictor`; a Knative one adds the revision suffix `-00001`.
# Both must stay DNS labels of at most 63 characters.
PREDICTOR_SUFFIX = "-predictor"
KNATIVE_REVISION_SUFFIX = "-predictor-00001"

# The keys KServe's credential builder reads from Secrets attached to the predictor's ServiceAccount.
S3_KEYS = {"access_key_id": "AWS_ACCESS_KEY_ID", "secret_access_key": "AWS_SECRET_ACCESS_KEY"}
GCS_KEY = "gcloud-application-credentials.json"
HF_KEY = "HF_TOKEN"
MODELSCOPE_KEY = "MODELSCOPE_API_TOKEN"


def cluster_settings(svc: Service) -> ClusterSettings:
    """The parsed `kubernetes` block of a service that passed validation."""
    return ClusterSettings.model_validate(svc.kubernetes)


def max_name_length(settings: ClusterSettings) -> int:
    suffix = PREDICTOR_SUFFIX if settings.is_standard else KNATIVE_REVISION_SUFFIX
    return 63 - len(suffix)


def cluster_rules(dep: Deployment) -> Iterator[SpecIssue]:
    parsed: dict[int, ClusterSettings] = {}
    for i, svc in enumerate(dep.services):
        at = f"services[{i}]"
        try:
            settings = ClusterSettings.model_validate(svc.kubernetes)
        except ValidationError as exc:
            yield from issues_from_validation_error(exc, ("services", i, "kubernetes"), model=ClusterSettings)
            continue
        parsed[i] = settings
        if svc.gate is not None:
            yield SpecIssue(f"{at}.gate", "(set)",
                            "is a step of the VM rollout (benchmark the first updated host, roll it back); a "
                            "cluster rolls out through KServe, which this program does not gate",
                            "remove gate from the cluster's spec (KServe's own staged rollout is "
                            "canaryTrafficPercent, which this program does not set)")
        yield from _name_rules(svc, settings, at)
        yield from _gpu_rules(svc, settings, at)
        yield from _scaling_rules(settings, at)
        yield from _credential_rules(svc, settings, at)
        yield from _mode_rules(svc, settings, at)
        yield from _adapter_rules(svc, settings, at)
        if svc.nodes > 1:
            yield from _group_rules(svc, settings, at)
    yield from _shared_object_rules(parsed)
    if dep.gateway is not None:
        yield from _gateway_rules(dep, parsed)


def _gateway_rules(dep: Deployment, parsed: dict[int, ClusterSettings]) -> Iterator[SpecIssue]:
    """On a cluster the gateway block becomes Envoy AI Gateway routes with Envoy Gateway policies, and a
    NetworkPolicy that admits only the Gateway's proxies to each predictor (k8s/gateway.py)."""
    assert dep.gateway is not None
    try:
        GatewayClusterSettings.model_validate(dep.gateway.kubernetes)
    except ValidationError as exc:
        yield from issues_from_validation_error(exc, ("gateway", "kubernetes"), model=GatewayClusterSettings)
    for field in ("balance", "prefix_load_bound"):
        if field in dep.gateway.model_fields_set:
            yield SpecIssue(f"gateway.{field}", show_value(getattr(dep.gateway, field)),
                            "acts on the VM gateway (HAProxy) only; on a cluster requests reach a predictor through "
                            "its Service, which does not balance by prefix, so the setting would be silently ignored",
                            f"remove gateway.{field} from the cluster's spec")
    if dep.gateway.high_availability is not None:
        yield SpecIssue("gateway.high_availability.virtual_address",
                        show_value(dep.gateway.high_availability.virtual_address),
                        "is a VM fleet's virtual address (keepalived); on a cluster the Gateway's Service and Envoy "
                        "Gateway's replicas of its proxy are what survive the loss of a node",
                        "remove high_availability, and scale the Gateway's Envoy proxy with an EnvoyProxy resource")
    for i, s in parsed.items():
        if s.ingress is not None:
            yield SpecIssue(f"services[{i}].kubernetes.ingress", show_value(s.ingress.host),
                            "would reach the predictor beside the gateway, past its keys and scopes; the gateway's "
                            "NetworkPolicy admits only the Gateway's proxies",
                            "remove ingress: clients reach the model through the gateway")
        if not s.is_standard:
            yield SpecIssue(f"services[{i}].kubernetes.deployment_mode", show_value(s.deployment_mode),
                            "routes through Knative's activator and ingress, which the gateway's NetworkPolicy "
                            "does not admit, so the predictor could not be both closed and reached",
                            "use deployment_mode: Standard behind the gateway")
    for i, svc in enumerate(dep.services):
        if svc.api_key is not None and svc.api_key.pulumi_config is None:
            yield SpecIssue(f"services[{i}].api_key", f"{{{svc.api_key.kind}: ...}}",
                            "is the backend key the gateway injects; on a cluster it is written to the Secret AI "
                            "Gateway's BackendSecurityPolicy reads, which this program can do only from Pulumi config",
                            "give {pulumi_config: KEY} (pulumi config set --secret KEY)")
    ids: dict[str, int] = {}
    for i, client in enumerate(dep.gateway.clients):
        ref = client.key.k8s_secret
        if ref is None:
            yield SpecIssue(f"gateway.clients[{i}].key", f"{{{client.key.kind}: ...}}",
                            "is checked by Envoy Gateway against an existing Secret, whose key names the client",
                            f"give {{k8s_secret: {{name: SECRET, key: {client.name}}}}}")
        elif ref.key in ids:
            # Envoy Gateway forwards the Secret's key as the client id; two clients with one id share a scope.
            yield SpecIssue(f"gateway.clients[{i}].key.k8s_secret.key", show_value(ref.key),
                            f"is the client id of gateway.clients[{ids[ref.key]}] too (Envoy Gateway names a "
                            "client by its Secret key), so the two could not be told apart",
                            f"store this client's key under its own Secret key, e.g. {client.name}")
        else:
            ids[ref.key] = i


def _shared_object_rules(parsed: dict[int, ClusterSettings]) -> Iterator[SpecIssue]:
    """Two services must not create the same claim or route the same host and path."""
    claims: dict[tuple[str, str], int] = {}
    routes: dict[tuple[str, str], int] = {}
    for i, s in parsed.items():
        cache = s.model_cache
        if cache and cache.size and cache.claim_name:
            key = (s.namespace, cache.claim_name)
            if key in claims:
                yield SpecIssue(f"services[{i}].kubernetes.model_cache.size", show_value(cache.size),
                                f"creates the claim '{cache.claim_name}', which services[{claims[key]}] creates too",
                                "set size on one service only; the others share the claim by claim_name")
            claims.setdefault(key, i)
        if s.ingress:
            route = (s.ingress.host, s.ingress.path)
            if route in routes:
                yield SpecIssue(f"services[{i}].kubernetes.ingress", show_value(s.ingress.host),
                                f"routes {s.ingress.host}{s.ingress.path}, as services[{routes[route]}] does",
                                "give each service its own host or path")
            routes.setdefault(route, i)


def _name_rules(svc: Service, s: ClusterSettings, at: str) -> Iterator[SpecIssue]:
    limit = max_name_length(s)
    if len(svc.name) > limit:
        suffix = PREDICTOR_SUFFIX if s.is_standard else KNATIVE_REVISION_SUFFIX
        yield SpecIssue(f"{at}.name", show_value(svc.name),
                        f"is {len(svc.name)} characters long; KServe names the predictor '{svc.name}{suffix}', "
                        f"which must be a DNS label of at most 63, so the name may have at most {limit}",
                        f"shorten the name to {limit} characters or fewer")
    if not svc.name[:1].isalpha():
        yield SpecIssue(f"{at}.name", show_value(svc.name),
                        "starts with a digit; KServe requires InferenceService names to start with a letter",
                        f"rename it, e.g. 'm-{svc.name}'")


def _gpu_rules(svc: Service, s: ClusterSettings, at: str) -> Iterator[SpecIssue]:
    if svc.tp_auto:
        yield SpecIssue(f"{at}.tensor_parallel_size", show_value(svc.tensor_parallel_size),
                        "is chosen from a host's GPU facts, which a cluster deployment does not have",
                        "give tensor_parallel_size and gpus as numbers (vllm-fleet validate against a VM "
                        "inventory with vllm_fleet_gpus shows the size auto would pick)")
    if svc.device_ids is not None:
        yield SpecIssue(f"{at}.gpus", show_value(svc.gpus),
                        "lists device ids; on a cluster the scheduler picks the GPUs",
                        f"give a count instead: gpus: {svc.gpu_count}")
    if svc.accelerator is Accelerator.NVIDIA and svc.gpu_count == 0:
        yield SpecIssue(f"{at}.gpus", show_value(svc.gpus), "is 0 on accelerator nvidia",
                        "give at least 1 GPU, or set accelerator: cpu")
    if svc.gpu_count > s.max_gpus_per_node:
        yield SpecIssue(f"{at}.gpus", show_value(svc.gpus),
                        f"asks for {svc.gpu_count} GPUs in one pod, more than a node has "
                        f"(kubernetes.max_gpus_per_node = {s.max_gpus_per_node})",
                        "use fewer GPUs, or raise max_gpus_per_node if your nodes really have more")
    if svc.accelerator is Accelerator.CPU and s.runtime_class_name == "nvidia":
        yield SpecIssue(f"{at}.kubernetes.runtime_class_name", show_value(s.runtime_class_name),
                        "is the NVIDIA runtime on accelerator cpu",
                        "remove runtime_class_name, or use accelerator: nvidia")


def _scaling_rules(s: ClusterSettings, at: str) -> Iterator[SpecIssue]:
    k = f"{at}.kubernetes"
    if s.min_replicas < 0:
        yield SpecIssue(f"{k}.min_replicas", show_value(s.min_replicas), "is a negative replica count",
                        "give 0 or more (0 only with scale to zero)")
    if s.max_replicas is not None and s.max_replicas < 1:
        yield SpecIssue(f"{k}.max_replicas", show_value(s.max_replicas), "is less than 1",
                        "give at least 1, or remove it")
    elif s.max_replicas is not None and s.max_replicas < s.min_replicas:
        yield SpecIssue(f"{k}.max_replicas", show_value(s.max_replicas),
                        f"is less than min_replicas ({s.min_replicas})", f"give at least {s.min_replicas}")
    if s.min_replicas == 0 and s.is_standard and s.autoscaler_class != "keda":
        yield SpecIssue(f"{k}.min_replicas", "0",
                        "scale to zero needs deployment_mode Knative or autoscaler_class keda",
                        "give min_replicas: 1, or set deployment_mode: Knative")
    if s.autoscaler_class is not None and not s.is_standard:
        yield SpecIssue(f"{k}.autoscaler_class", show_value(s.autoscaler_class),
                        f"applies to deployment_mode Standard only, not {s.deployment_mode}",
                        "remove autoscaler_class; Knative scales with its own autoscaler")
    if s.scale_metric in ("concurrency", "rps") and s.is_standard:
        yield SpecIssue(f"{k}.scale_metric", show_value(s.scale_metric),
                        "is a Knative metric; a Standard deployment scales on cpu or memory",
                        "use scale_metric: cpu or memory, or deployment_mode: Knative")
    if s.scale_target is not None and s.scale_metric is None:
        yield SpecIssue(f"{k}.scale_target", show_value(s.scale_target), "is set without scale_metric",
                        "set scale_metric too")


def _credential_rules(svc: Service, s: ClusterSettings, at: str) -> Iterator[SpecIssue]:
    creds = svc.storage.credentials
    scheme = svc.uri.scheme
    storage_creds = [c for c in (creds.s3, creds.gcs, creds.hf_token, creds.modelscope_token) if c]
    if storage_creds and s.service_account_name:
        yield SpecIssue(f"{at}.kubernetes.service_account_name", show_value(s.service_account_name),
                        "is set together with storage.credentials; KServe reads storage credentials from the "
                        "predictor's ServiceAccount, which the program creates to list them",
                        "remove service_account_name, or remove storage.credentials and attach them to your account")
    if scheme == "s3" and not creds.s3 and not s.service_account_name:
        yield SpecIssue(f"{at}.storage.credentials.s3", "(missing)",
                        "is missing for an s3:// URI; the storage initializer would have no credentials secret",
                        "add storage.credentials.s3 with k8s_secret or pulumi_config references, or set "
                        "kubernetes.service_account_name to an account with S3 access (e.g. IRSA)")
    if scheme == "gs" and not creds.gcs and not s.service_account_name:
        yield SpecIssue(f"{at}.storage.credentials.gcs", "(missing)",
                        "is missing for a gs:// URI; the storage initializer would have no credentials secret",
                        "add storage.credentials.gcs.application_credentials, or set "
                        "kubernetes.service_account_name to an account with GCS access (workload identity)")
    if creds.s3:
        base = f"{at}.storage.credentials.s3"
        if creds.s3.session_token:
            yield SpecIssue(f"{base}.session_token", "{...}",
                            "is not read by KServe's S3 credential builder, and temporary tokens expire",
                            "remove session_token; use long-lived keys or an IRSA service account")
        refs = {f: getattr(creds.s3, f) for f in S3_KEYS}
        kinds = {r.kind for r in refs.values()}
        if len(kinds) > 1:
            yield SpecIssue(base, "{k8s_secret, pulumi_config}", "mixes k8s_secret and pulumi_config references",
                            "give both keys the same kind of reference")
        elif kinds == {"k8s_secret"}:
            yield from _existing_secret_keys(base, refs, S3_KEYS)
    if creds.gcs:
        yield from _existing_secret_keys(f"{at}.storage.credentials.gcs",
                                         {"application_credentials": creds.gcs.application_credentials},
                                         {"application_credentials": GCS_KEY})
    if creds.hf_token:
        yield from _existing_secret_keys(f"{at}.storage.credentials", {"hf_token": creds.hf_token},
                                         {"hf_token": HF_KEY})
    if creds.modelscope_token:
        yield from _existing_secret_keys(f"{at}.storage.credentials", {"modelscope_token": creds.modelscope_token},
                                         {"modelscope_token": MODELSCOPE_KEY})


def _existing_secret_keys(base: str, refs: dict[str, SecretRef], keys: dict[str, str]) -> Iterator[SpecIssue]:
    """KServe finds storage credentials by fixed key names in Secrets the ServiceAccount lists."""
    names = {r.k8s_secret.name for r in refs.values() if r.k8s_secret}
    if len(names) > 1:
        yield SpecIssue(base, show_value(sorted(names)), "names more than one Secret",
                        "keep these keys in one Secret; KServe reads them together")
    for field, ref in refs.items():
        if ref.k8s_secret and ref.k8s_secret.key != keys[field]:
            yield SpecIssue(f"{base}.{field}.k8s_secret.key", show_value(ref.k8s_secret.key),
                            f"is not '{keys[field]}', the key KServe's storage initializer reads",
                            f"store the value under the key {keys[field]}, or use pulumi_config")


def _adapter_rules(svc: Service, s: ClusterSettings, at: str) -> Iterator[SpecIssue]:
    """A pod's adapters come through KServe's storage initializer with the model (storageUris): one set of
    credentials and one hub endpoint per InferenceService, and the vLLM server's own arguments to name them."""
    if not svc.adapters:
        return
    if s.mode == "runtime" and svc.nodes == 1:  # a group's adapters: _group_rules
        yield SpecIssue(f"{at}.adapters", f"{len(svc.adapters)} adapter(s)",
                        "are set in mode runtime; KServe's huggingface runtime is not given vLLM's LoRA arguments "
                        "here", "use mode: container, or serve the adapters on VMs")
    own = svc.storage.credentials.model_dump(exclude_none=True)
    for j, adapter in enumerate(svc.adapters):
        here = f"{at}.adapters[{j}]"
        theirs = adapter.storage.credentials.model_dump(exclude_none=True)
        if theirs and theirs != own:
            yield SpecIssue(f"{here}.storage.credentials", "{...}",
                            "differ from the service's; KServe's storage initializer fetches the model and every "
                            "adapter of a pod with the one set of credentials its ServiceAccount holds",
                            "give the adapter the service's credentials (the same references), or none")
        if adapter.storage.endpoint and adapter.storage.endpoint != svc.storage.endpoint:
            yield SpecIssue(f"{here}.storage.endpoint", show_value(adapter.storage.endpoint),
                            "differs from the service's; a pod's storage initializer reads one hub endpoint",
                            "serve the adapter from the service's endpoint, or leave it out")


def _group_rules(svc: Service, s: ClusterSettings, at: str) -> Iterator[SpecIssue]:
    """An engine group on a cluster is KServe's multi-node form (predictor.workerSpec): the huggingface multi-node
    runtime starts a head pod and nodes - 1 worker pods that read one ReadWriteMany volume, in Standard mode,
    without autoscaling (KServe's documented limits)."""
    k = f"{at}.kubernetes"
    if s.mode != "runtime":
        yield SpecIssue(f"{k}.mode", show_value(s.mode),
                        f"is container on a service of nodes: {svc.nodes}; KServe spans nodes only through its "
                        "multi-node runtime (a head pod and worker pods, predictor.workerSpec), not a container "
                        "this program starts",
                        f"set mode: runtime (runtime {MULTI_NODE_RUNTIME}, the default for a group)")
    if not s.is_standard:
        yield SpecIssue(f"{k}.deployment_mode", show_value(s.deployment_mode),
                        "is not Standard; KServe's multi-node form runs in Standard (RawDeployment) mode only",
                        "set deployment_mode: Standard")
    if s.max_replicas not in (None, s.min_replicas) or s.scale_metric or s.autoscaler_class not in (None, "none"):
        yield SpecIssue(f"{k}.max_replicas", show_value(s.max_replicas),
                        "asks for autoscaling, which KServe's multi-node form does not have",
                        "remove max_replicas, scale_metric and autoscaler_class; give the groups in min_replicas")
    if svc.uri.scheme != "pvc":
        yield SpecIssue(f"{at}.storage_uri", show_value(svc.storage_uri),
                        f"is {svc.uri.scheme}://; the head and worker pods of KServe's multi-node form read the "
                        "weights from one ReadWriteMany volume",
                        "copy the weights to a ReadWriteMany PVC and give storage_uri: pvc://CLAIM/PATH")
    if svc.adapters:
        yield SpecIssue(f"{at}.adapters", show_value([a.name for a in svc.adapters]),
                        "are fetched into the predictor's pod by the storage initializer, which KServe's "
                        "multi-node worker pods do not run",
                        "serve the adapters' base model on one node (nodes: 1) to use adapters on a cluster")


def _mode_rules(svc: Service, s: ClusterSettings, at: str) -> Iterator[SpecIssue]:
    k = f"{at}.kubernetes"
    if s.mode == "container" and s.runtime is not None:
        yield SpecIssue(f"{k}.runtime", show_value(s.runtime), "names a ServingRuntime in mode container",
                        "remove runtime, or set mode: runtime")
    if s.mode == "runtime" and svc.api_key is not None:
        yield SpecIssue(f"{at}.api_key", "{...}",
                        "is set in mode runtime; KServe's huggingface runtime does not read VLLM_API_KEY",
                        "use mode: container (the vLLM OpenAI server checks the key), or remove api_key")
    if s.ingress is not None and not s.is_standard:
        yield SpecIssue(f"{k}.ingress", show_value(s.ingress.host),
                        "is for deployment_mode Standard; Knative routes through its own gateway",
                        "remove ingress (configure the Knative domain), or use deployment_mode: Standard")
    if s.model_cache and s.model_cache.claim_name and svc.uri.scheme == "pvc" \
            and s.model_cache.claim_name == svc.uri.authority:
        yield SpecIssue(f"{k}.model_cache.claim_name", show_value(s.model_cache.claim_name),
                        "is the claim storage_uri already mounts at /mnt/models",
                        "use a different claim for the cache, or remove model_cache")
    shm = k8s_quantity(k8s_size(svc.shm_size))
    memory = k8s_quantity(s.resources.memory)
    if shm is not None and memory is not None and shm >= memory:
        yield SpecIssue(f"{at}.shm_size", show_value(svc.shm_size),
                        f"is not below the memory limit ({s.resources.memory}); a Memory emptyDir counts "
                        "against it and the pod would be OOM-killed",
                        "raise kubernetes.resources.memory, or lower shm_size")


CLUSTER_TARGET = TargetRules(Target.K8S, cluster_rules)
