"""A validated spec turned into what one host must run: the typed plan every VM stage reads.

The plan is the contract between Python and Ansible: the fleet plan (planning/fleet.py) hands each host's
`HostPlan.model_dump()` to the play as the fact `vllm_fleet_plan`, and Python code that receives it back (filters,
checks) validates it into these models again instead of reading keys by hand. `tests/vm/test_plan_contract.py` holds
the roles' argument specs against them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from vllm_fleet.engine_args import MODEL_MOUNT, render_engine_args
from vllm_fleet.spec import Deployment, Gate, SecretRef, Service, ServiceSlo, Storage, parse_storage_uri
from vllm_fleet.spec.adapters import derived_limits

CONTAINER_PORT = 8000
# Every container vllm-fleet runs carries labels under this prefix; names are the prefix below + the service name.
LABEL_PREFIX = "io.vllm-fleet"
CONTAINER_PREFIX = "vllm-"
# Where the weights stage publishes models (<root>/<service>/<revision>/) and adapters
# (<root>/<service>/<adapter>/<revision>/) on a host, and where the serving stage mounts them from.
MODELS_ROOT = "/var/lib/vllm-fleet/models"
ADAPTERS_ROOT = "/var/lib/vllm-fleet/adapters"
# Where services publish their ports: the host variable naming an internal address, the default (loopback), and the
# documented opt-out that publishes vLLM's ports, open routes included, on every interface.
BACKEND_ADDRESS_VAR = "vllm_fleet_backend_address"
DIRECT_PORTS_VAR = "vllm_fleet_direct_ports"
LOOPBACK = "127.0.0.1"
ALL_INTERFACES = "0.0.0.0"  # noqa: S104 - only on the explicit opt-out


class PlanModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


class S3Plan(PlanModel):
    region: str | None = None
    endpoint: str | None = None
    verify_ssl: bool = True


class SourcePlan(PlanModel):
    """Where a service's weights come from, as the model_weights role consumes it."""

    uri: str
    display_uri: str
    scheme: str
    revision: str | None = None
    endpoint: str | None = None
    allow_patterns: list[str] = []
    ignore_patterns: list[str] = []
    sha256: dict[str, str] = {}
    timeout_seconds: int = 600
    retries: int = 5
    s3: S3Plan | None = None


# A secret reference as the `vllmfleet.fleet.secret` lookup takes it: one key, env or vault ({env: NAME}); never a
# value.
SecretRefPlan = dict[str, str]


class StorageSecrets(PlanModel):
    """A storage block's credential references, one named field each; the names are the model_weights module's
    parameters that receive the resolved values."""

    hf_token: SecretRefPlan | None = None
    modelscope_token: SecretRefPlan | None = None
    s3_access_key_id: SecretRefPlan | None = None
    s3_secret_access_key: SecretRefPlan | None = None
    s3_session_token: SecretRefPlan | None = None
    gcs_credentials: SecretRefPlan | None = None

    def given(self) -> dict[str, SecretRefPlan]:
        """The references that are set, by field name."""
        return {name: ref for name, ref in self if ref is not None}


class ServiceSecrets(StorageSecrets):
    """A service's secret references: its storage's, and the API key between the gateway and its containers."""

    api_key: SecretRefPlan | None = None

    def storage(self) -> StorageSecrets:
        return StorageSecrets(**self.model_dump(exclude={"api_key"}))


def _ref(ref: SecretRef | None) -> SecretRefPlan | None:
    return ref.model_dump(exclude_none=True) if ref is not None else None


def storage_secrets(storage: Storage) -> StorageSecrets:
    creds = storage.credentials
    s3 = creds.s3
    return StorageSecrets(
        hf_token=_ref(creds.hf_token), modelscope_token=_ref(creds.modelscope_token),
        s3_access_key_id=_ref(s3.access_key_id if s3 else None),
        s3_secret_access_key=_ref(s3.secret_access_key if s3 else None),
        s3_session_token=_ref(s3.session_token if s3 else None),
        gcs_credentials=_ref(creds.gcs.application_credentials if creds.gcs else None))


class ContainerPlan(PlanModel):
    """The names a service's containers take on the host: the serving one, a canary beside it, and the previous
    one kept to fall back to while a replacement passes its readiness check."""

    name: str
    candidate: str
    fallback: str


class AdapterPlan(PlanModel):
    """A LoRA adapter of a service: the model name clients call, where its files come from, and the directory
    its revisions are published in (under the service's adapters directory on the host)."""

    name: str
    weights_name: str
    source: SourcePlan
    secrets: StorageSecrets = StorageSecrets()
    rank: int | None = None


class ServicePlan(PlanModel):
    """One service on one host: everything the weights, serve and smoke stages need, and nothing to re-derive."""

    name: str
    task: str
    served_model_name: str
    image: str
    accelerator: str
    gpu_count: int
    device_ids: list[int] | None = None
    tensor_parallel_size: int | Literal["auto"]
    pipeline_parallel_size: int
    port: int
    container_port: int = CONTAINER_PORT
    # The host address the port is published on (see backend_address); never all interfaces unless opted out.
    bind_address: str = LOOPBACK
    # Where the host itself reaches the service (readiness, smoke tests): the bind address, or loopback.
    local_address: str = LOOPBACK
    shm_size: str
    shutdown_timeout: int
    env: dict[str, str] = {}
    engine_args: list[str]
    tools_enabled: bool = False
    source: SourcePlan
    secrets: ServiceSecrets = ServiceSecrets()
    endpoint: str
    container: ContainerPlan
    max_model_len_sized: int | None = None
    # The gateway's name for this service's pool (one per served model) and for this host's server in it.
    gateway_backend: str
    gateway_server: str
    # The benchmark a change of this service passes on its first updated host (roles/vllm_server tasks/gate.yml).
    gate: Gate | None = None
    # LoRA adapters and the limits vLLM starts with (--max-loras, --max-lora-rank; None without adapters).
    adapters: list[AdapterPlan] = []
    max_loras: int | None = None
    max_lora_rank: int | None = None


class AdapterFit(PlanModel):
    """What an adapter's files must fit: its service's --max-lora-rank, the hub repo the service serves (compared
    with the adapter's base_model_name_or_path) and the service's file:// model directory (its hidden size against
    the adapter's projections); either may be unknown."""

    max_rank: int
    base_repo: str | None = None
    base_dir: str | None = None


class WeightsPlan(PlanModel):
    """One set of files the weights stage fetches, once per fleet: a service's model or one of its adapters.
    A model's revisions go to <models_root>/<directory>/, an adapter's to <adapters_root>/<service>/<directory>/
    (the directory its container sees)."""

    name: str
    service: str
    kind: Literal["model", "adapter"]
    directory: str
    # A name for what the stage runs for it (the fan-out's transient systemd unit): letters, digits and ._-
    slug: str
    source: SourcePlan
    secrets: StorageSecrets = StorageSecrets()
    # An adapter's: what the stage checks its files against before it publishes them (AdapterFit).
    fit: AdapterFit | None = None


class GpuSummary(PlanModel):
    """A host's GPUs as the prepare stage's gpu_facts sums them up (its `summary`, published to the serve stage as
    vllm_fleet_gpus): how many, the smallest memory, the lowest compute capability, the ids in MIG mode."""

    count: int = 0
    memory_mib: int = 0
    compute_capability: str | None = None
    mig_gpus: list[int] = []


def gpu_summary(value: Any) -> GpuSummary | None:
    """vllm_fleet_gpus (or gpu_facts' summary) as a GpuSummary; None when the host's GPUs are not known."""
    return GpuSummary.model_validate(dict(value)) if value else None


class Settled(PlanModel):
    """What the controller's serving checks settle for a service from the host's GPUs and its config.json: a
    max_model_len when the spec gives none, and for tensor_parallel_size auto the size and the GPUs it takes."""

    max_model_len: int | None = None
    tensor_parallel_size: int | None = None
    gpus: int | list[int] | None = None


class HostPlan(PlanModel):
    services: list[ServicePlan]
    # What the weights stage fetches for those services (weights_plan).
    weights: list[WeightsPlan] = []
    label_prefix: str = LABEL_PREFIX
    models_root: str = MODELS_ROOT
    adapters_root: str = ADAPTERS_ROOT
    # The address clients used to reach the host, and the one its services publish their ports on.
    address: str
    backend_address: str = LOOPBACK
    # Each service's latency objectives by service name, for the fleet's alert rules.
    slos: dict[str, ServiceSlo] = {}


def gateway_backend_name(model: str) -> str:
    """HAProxy backend of a served model's pool (names allow letters, digits and -_.:)."""
    return "pool_" + re.sub(r"[^A-Za-z0-9_.:-]", "_", model)


def gateway_server_name(host: str, service: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.:-]", "_", f"{host}.{service}")


def backend_address(variables: Mapping[str, Any] | None) -> str:
    """Where a host's services publish: vllm_fleet_backend_address, else loopback; all interfaces only when
    vllm_fleet_direct_ports is true (vLLM's open routes reachable by anyone who reaches the host)."""
    variables = variables or {}
    if str(variables.get(DIRECT_PORTS_VAR, False)).lower() in ("true", "yes", "1"):
        return ALL_INTERFACES
    return str(variables.get(BACKEND_ADDRESS_VAR) or LOOPBACK)


def probe_address(bind: str, host_address: str) -> str:
    """The address a service bound to `bind` answers at from outside the host."""
    return host_address if bind == ALL_INTERFACES else bind


def container_plan(name: str, prefix: str = CONTAINER_PREFIX) -> ContainerPlan:
    return ContainerPlan(name=f"{prefix}{name}", candidate=f"{prefix}{name}-candidate",
                         fallback=f"{prefix}{name}-previous")


def source_plan(storage_uri: str, revision: str | None, storage: Storage) -> SourcePlan:
    """Where weights (a service's or an adapter's) come from, as the model_weights role reads it."""
    uri = parse_storage_uri(storage_uri)
    s3 = storage.credentials.s3
    return SourcePlan(
        uri=storage_uri,
        display_uri=uri.display(),
        scheme=uri.scheme,
        revision=revision,
        endpoint=storage.endpoint,
        allow_patterns=list(storage.allow_patterns),
        ignore_patterns=list(storage.ignore_patterns),
        sha256=dict(storage.sha256),
        timeout_seconds=storage.timeout_seconds,
        retries=storage.retries,
        s3=S3Plan(region=s3.region, endpoint=s3.endpoint, verify_ssl=s3.verify_ssl) if s3 else None,
    )


def adapter_plans(svc: Service) -> list[AdapterPlan]:
    return [
        AdapterPlan(
            name=a.name,
            weights_name=a.directory,
            source=source_plan(a.storage_uri, a.effective_revision, a.storage),
            secrets=storage_secrets(a.storage),
            rank=a.rank,
        )
        for a in svc.adapters
    ]


def service_plan(svc: Service, host_address: str, container_prefix: str = CONTAINER_PREFIX, host: str = "",
                 bind: str = LOOPBACK) -> ServicePlan:
    loras, lora_rank = derived_limits(svc.adapters, svc.lora) if svc.adapters else (None, None)
    return ServicePlan(
        name=svc.name,
        task=svc.task.value,
        served_model_name=svc.model_name,
        image=svc.image,
        accelerator=svc.accelerator.value,
        gpu_count=svc.gpu_count,
        device_ids=svc.device_ids,
        tensor_parallel_size=svc.tensor_parallel_size,
        pipeline_parallel_size=svc.pipeline_parallel_size,
        port=svc.port,
        bind_address=bind,
        local_address=LOOPBACK if bind == ALL_INTERFACES else bind,
        shm_size=svc.shm_size,
        shutdown_timeout=svc.engine.shutdown_timeout,
        env={str(k): str(v) for k, v in svc.env.items()},
        engine_args=render_engine_args(svc, port=CONTAINER_PORT, model_path=MODEL_MOUNT),
        tools_enabled=bool(svc.engine.tool_call_parser),
        source=source_plan(svc.storage_uri, svc.effective_revision, svc.storage),
        secrets=ServiceSecrets(**storage_secrets(svc.storage).given(), api_key=_ref(svc.api_key)),
        endpoint=f"http://{probe_address(bind, host_address)}:{svc.port}/v1",
        container=container_plan(svc.name, container_prefix),
        gateway_backend=gateway_backend_name(svc.model_name),
        gateway_server=gateway_server_name(host or host_address, svc.name),
        gate=svc.gate,
        adapters=adapter_plans(svc),
        max_loras=loras,
        max_lora_rank=lora_rank,
    )


def adapter_key(service: str, adapter: str) -> str:
    """The name an adapter's files go by in the weights stage's results (model_weights_paths)."""
    return f"{service}@{adapter}"


def _adapter_fit(svc: ServicePlan) -> AdapterFit:
    uri = parse_storage_uri(svc.source.uri)
    return AdapterFit(max_rank=svc.max_lora_rank or 0, base_repo=uri.repo_id if uri.is_hub else None,
                      base_dir=uri.path if uri.scheme == "file" else None)


def weights_plan(services: list[ServicePlan]) -> list[WeightsPlan]:
    """Each service's model, then its adapters (named <service>@<adapter> in the stage's results)."""
    items = []
    for svc in services:
        storage = svc.secrets.storage()
        items.append(WeightsPlan(name=svc.name, service=svc.name, kind="model", directory=svc.name, slug=svc.name,
                                 source=svc.source, secrets=storage))
        items += [WeightsPlan(name=adapter_key(svc.name, a.name), service=svc.name, kind="adapter",
                              directory=a.weights_name, slug=f"{svc.name}-lora-{a.weights_name}", source=a.source,
                              secrets=a.secrets, fit=_adapter_fit(svc)) for a in svc.adapters]
    return items


def host_plan(dep: Deployment, host_address: str, settled: Mapping[str, Settled] | None = None,
              container_prefix: str = CONTAINER_PREFIX, unavailable_gpus: frozenset[int] = frozenset(),
              host: str = "", bind: str = LOOPBACK) -> HostPlan:
    """The plan of every service; `settled` (from serving_issues) fills in sized values and resolves auto."""
    settled = settled or {}
    services = []
    for svc in dep.services:
        entry = settled.get(svc.name, Settled())
        if entry.tensor_parallel_size is not None:
            svc = svc.model_copy(update={"tensor_parallel_size": entry.tensor_parallel_size, "gpus": entry.gpus})
        plan = service_plan(svc, host_address, container_prefix, host, bind)
        if entry.max_model_len is not None:
            plan.engine_args += ["--max-model-len", str(entry.max_model_len)]
            plan.max_model_len_sized = entry.max_model_len
        services.append(plan)
    assign_gpu_ids(services, unavailable_gpus)
    return HostPlan(services=services, weights=weights_plan(services), address=host_address, backend_address=bind,
                    slos={svc.name: svc.slo for svc in dep.services if svc.slo})


def assign_gpu_ids(services: list[ServicePlan], unavailable: frozenset[int] = frozenset()) -> None:
    """Give every GPU count its own device ids on the host: the lowest ids no other service lists or took, and
    that are not `unavailable` (GPUs in MIG mode).

    Docker hands a `count` request the first GPUs of the host, so two services given counts would share them.
    """
    taken = {i for s in services if s.accelerator == "nvidia" for i in s.device_ids or []} | set(unavailable)
    next_id = 0
    for s in services:
        if s.accelerator != "nvidia" or s.device_ids or not s.gpu_count or s.tensor_parallel_size == "auto":
            continue
        ids: list[int] = []
        while len(ids) < s.gpu_count:
            if next_id not in taken:
                ids.append(next_id)
                taken.add(next_id)
            next_id += 1
        s.device_ids = ids
