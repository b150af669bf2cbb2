"""The model spec: one deployment, a list of services, for VMs and clusters alike."""

from __future__ import annotations

import re
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from vllm_fleet.spec.errors import fail, is_secret_name, looks_like_secret, matching, url_has_credentials
from vllm_fleet.spec.uri import StorageUri, UriError, parse_storage_uri
from vllm_fleet.versions import DEFAULT_IMAGE

if TYPE_CHECKING:
    from vllm_fleet.spec.adapters import Adapter, LoraLimits
    from vllm_fleet.spec.gate import Gate
    from vllm_fleet.spec.gateway import Gateway
    from vllm_fleet.spec.monitoring import Monitoring, ServiceSlo

DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
SIZE = re.compile(r"^[1-9][0-9]*(\.[0-9]+)?\s*([kKmMgGtT](i?[bB])?|[bB])?$")
PARSER_NAME = re.compile(r"^[a-z0-9][a-z0-9_.\-]*$")
PluginName = Annotated[str, matching(PARSER_NAME, "is not a vLLM plugin name",
                                     "use the lower-case name vLLM documents, e.g. hermes, gptq")]
# Looks like a credential someone pasted instead of a reference.

# Flags the spec renders itself; repeating them in extra_args would be ambiguous.
MANAGED_FLAGS = frozenset({
    "--model", "--served-model-name", "--host", "--port", "--tensor-parallel-size", "-tp",
    "--pipeline-parallel-size", "-pp", "--max-model-len", "--gpu-memory-utilization", "--dtype",
    "--quantization", "-q", "--enable-prefix-caching", "--no-enable-prefix-caching",
    "--enable-auto-tool-choice", "--tool-call-parser", "--reasoning-parser", "--runner",
    "--convert", "--task", "--chat-template", "--enforce-eager", "--api-key", "--revision", "--shutdown-timeout",
    "--enable-lora", "--max-loras", "--max-cpu-loras", "--max-lora-rank", "--lora-modules",
})


def http_url(value: str | None, form: str) -> str | None:
    if value is not None and not re.match(r"^https?://[^/\s]+", value):
        raise fail("is not an http(s) URL", f"write it as {form}")
    if value is not None and url_has_credentials(value):
        raise fail("carries credentials in the URL (user:password@); they would reach logs and manifests",
                   "remove them from the URL and give them by reference in storage.credentials")
    return value


def checked_storage_uri(value: str) -> str:
    """A storage URI field (a service's or an adapter's): parsed, or refused with the parser's problem and fix."""
    try:
        parse_storage_uri(value)
    except UriError as exc:
        raise fail(exc.problem, exc.fix) from None
    return value


# The type of a storage_uri field: a string the URI parser accepts.
StorageUriField = Annotated[str, AfterValidator(checked_storage_uri)]


def _takes_secret(flag: str) -> bool:
    """A vLLM flag that takes a token, key, secret or password as its value (--hf-token, --api-key, ...)."""
    from vllm_fleet.vllm_flags import known_flags

    entry = known_flags().get(flag.replace("_", "-"))
    return bool(entry and entry["takes_value"]) and bool(re.search(r"-(token|key|secret|password)$", flag))


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Task(StrEnum):
    GENERATE = "generate"
    EMBED = "embed"
    SCORE = "score"


class Accelerator(StrEnum):
    NVIDIA = "nvidia"
    CPU = "cpu"


class SecretKeyRef(Strict):
    name: Annotated[str, matching(DNS1123_LABEL, "is not a valid Kubernetes Secret name",
                                  "use lower-case letters, digits and '-'", max_length=253)]
    key: str


class SecretRef(Strict):
    """Where a secret comes from. Exactly one of the fields is set; never the secret itself."""

    env: str | None = Field(None, description="environment variable on the controller")
    vault: str | None = Field(None, description="Ansible variable, encrypted with Ansible Vault")
    k8s_secret: SecretKeyRef | None = Field(None, description="an existing Kubernetes Secret key")
    pulumi_config: str | None = Field(None, description="a Pulumi secret config key")

    @model_validator(mode="before")
    @classmethod
    def _no_literal(cls, data: Any) -> Any:
        if isinstance(data, str):
            raise fail(
                "is a literal secret; secrets are given by reference only",
                "write {env: VARIABLE} or {vault: ansible_variable} (VMs), "
                "or {k8s_secret: {name: SECRET, key: KEY}} or {pulumi_config: KEY} (clusters)",
            )
        return data

    @model_validator(mode="after")
    def _exactly_one(self) -> SecretRef:
        given = [k for k in ("env", "vault", "k8s_secret", "pulumi_config") if getattr(self, k) is not None]
        if len(given) != 1:
            raise fail(
                f"sets {len(given)} sources ({', '.join(given) or 'none'})",
                "set exactly one of env, vault, k8s_secret or pulumi_config",
            )
        for field in ("env", "vault", "pulumi_config"):
            value = getattr(self, field)
            if value is not None and looks_like_secret(value):
                raise fail(f"{field} holds what looks like the secret itself, where the NAME of a variable belongs "
                           "(not shown here)",
                           f"put the secret in a variable and give its name, e.g. {{{field}: HF_TOKEN}}")
            if value is not None and not ENV_NAME.match(value.replace(".", "_").replace(":", "_")):
                raise fail(f"{field} is not a variable name", f"give the NAME of the {field} entry, not its value")
            if value is not None and field == "env" and not ENV_NAME.match(value):
                raise fail("env is not an environment variable name", "use letters, digits and '_'")
        return self

    @property
    def kind(self) -> str:
        return next(k for k in ("env", "vault", "k8s_secret", "pulumi_config") if getattr(self, k) is not None)


class S3Credentials(Strict):
    access_key_id: SecretRef
    secret_access_key: SecretRef
    session_token: SecretRef | None = None
    region: str | None = None
    endpoint: str | None = Field(None, description="S3-compatible endpoint URL, e.g. https://minio.lan:9000")
    verify_ssl: bool = True

    @field_validator("endpoint")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        return http_url(v, "https://HOST[:PORT]")


class GcsCredentials(Strict):
    application_credentials: SecretRef


class StorageCredentials(Strict):
    hf_token: SecretRef | None = None
    modelscope_token: SecretRef | None = None
    s3: S3Credentials | None = None
    gcs: GcsCredentials | None = None


class Storage(Strict):
    endpoint: str | None = Field(None, description="hub mirror (HF_ENDPOINT / MODELSCOPE_DOMAIN)")
    allow_patterns: list[str] = Field(default_factory=list)
    ignore_patterns: list[str] = Field(default_factory=list)
    sha256: dict[str, str] = Field(default_factory=dict, description="expected sha256 per file, for https://")
    credentials: StorageCredentials = Field(default_factory=StorageCredentials)
    timeout_seconds: int = Field(600, gt=0, le=86400)
    retries: int = Field(5, ge=0, le=100)

    @field_validator("endpoint")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        return http_url(v, "https://HOST[/PATH], e.g. https://hf-mirror.com")

    @field_validator("sha256")
    @classmethod
    def _hex(cls, v: dict[str, str]) -> dict[str, str]:
        for name, digest in v.items():
            if not re.match(r"^[0-9a-f]{64}$", digest):
                raise fail(f"the digest for '{name}' is not 64 lower-case hex digits", "give a sha256 hex digest")
        return v


class Engine(Strict):
    max_model_len: int | None = Field(None, gt=0)
    gpu_memory_utilization: float = 0.9
    dtype: Literal["auto", "half", "float16", "bfloat16", "float", "float32"] = "auto"
    quantization: PluginName | None = None
    enable_prefix_caching: bool | None = None
    tool_call_parser: PluginName | None = None
    reasoning_parser: PluginName | None = None
    chat_template: str | None = None
    enforce_eager: bool = False
    max_num_seqs: int | None = Field(None, gt=0)
    shutdown_timeout: int = Field(
        30, ge=0, le=3600,
        description="seconds vLLM lets requests in flight finish after SIGTERM (0: abort them); the container's "
                    "or pod's stop grace is this plus a margin")
    extra_args: list[str] = Field(default_factory=list)

    @field_validator("gpu_memory_utilization")
    @classmethod
    def _fraction(cls, v: float) -> float:
        if not 0 < v <= 1:
            raise fail("must be a fraction of GPU memory in (0, 1]", "give a value such as 0.9")
        return v

    @field_validator("extra_args")
    @classmethod
    def _extra(cls, v: list[str]) -> list[str]:
        for arg in v:
            flag = arg.split("=", 1)[0]
            if flag in MANAGED_FLAGS:
                field = flag.lstrip("-").replace("-", "_")
                fix = ("give the key by reference in api_key" if flag == "--api-key"
                       else f"set it through the spec field instead ({field} or the service fields)")
                raise fail(f"repeats {flag}, which the spec renders itself", fix)
            if _takes_secret(flag):
                where = "storage.credentials.hf_token" if flag == "--hf-token" else "api_key or storage.credentials"
                raise fail(f"passes {flag}, which carries a secret on the command line (visible in process lists)",
                           f"give it by reference in {where}: {{env: NAME}} or {{vault: variable}}")
            if flag.startswith("-") and not re.match(r"^--?[a-z][a-z0-9-]*$", flag):
                raise fail(f"has a malformed flag '{flag}'", "write flags as --lower-case-name [VALUE]")
        return v


class Service(Strict):
    name: str
    task: Task = Task.GENERATE
    storage_uri: StorageUriField
    revision: str | None = None
    storage: Storage = Field(default_factory=Storage)
    served_model_name: str | None = None
    image: str = DEFAULT_IMAGE
    accelerator: Accelerator = Accelerator.NVIDIA
    gpus: int | list[int] = 1
    tensor_parallel_size: int | Literal["auto"] = Field(
        1, description="a size, or auto: the plan picks the smallest that fits the host's GPUs (gpus is the pool)")
    pipeline_parallel_size: int = Field(1, ge=1)
    nodes: int = Field(
        1, ge=1, le=64,
        description="hosts (or cluster nodes) one engine of this service spans: tensor parallel within a node, "
                    "pipeline parallel across nodes; 1 serves it on one host")
    engine: Engine = Field(default_factory=Engine)
    port: int = 8000
    api_key: SecretRef | None = None
    shm_size: Annotated[str, matching(SIZE, "is not a size", "write a size such as 16g, 1Gi or 512m")] = "16g"
    env: dict[str, str] = Field(default_factory=dict)
    # Defined in spec/monitoring.py; spec/__init__ resolves the reference.
    slo: ServiceSlo | None = Field(None, description="latency objectives the fleet's alerts hold this service to")
    # Defined in spec/gate.py.
    gate: Gate | None = Field(None, description="the benchmark a changed service passes on its first updated host")
    # Defined in spec/adapters.py.
    adapters: list[Adapter] = Field(default_factory=list, description="LoRA adapters on this service's model")
    lora: LoraLimits | None = Field(None, description="what vLLM reserves for adapters (derived when left out)")
    kubernetes: dict[str, Any] = Field(default_factory=dict, description="cluster-only settings")

    @field_validator("name")
    @classmethod
    def _dns_name(cls, v: str) -> str:
        if len(v) > 63:
            raise fail(f"is {len(v)} characters long; DNS-1123 labels have at most 63", "shorten the name")
        if not DNS1123_LABEL.match(v):
            hint = v.lower().replace("_", "-").replace(".", "-")
            hint = re.sub(r"[^a-z0-9-]", "", hint).strip("-") or "my-model"
            raise fail(
                "is not a DNS-1123 label (lower-case letters, digits and '-', starting and ending alphanumeric)",
                f"rename it, e.g. '{hint}'",
            )
        return v

    @field_validator("served_model_name", "revision")
    @classmethod
    def _not_blank(cls, v: str | None) -> str | None:
        if v is not None and not v.strip():
            raise fail("is empty", "give a value, or leave the field out (served_model_name defaults to name; "
                       "an empty revision would deploy the unpinned default branch)")
        return v

    @field_validator("gpus")
    @classmethod
    def _gpus(cls, v: int | list[int]) -> int | list[int]:
        if isinstance(v, int):
            if v < 0:
                raise fail("is a negative GPU count", "give a count >= 0, or a list of device ids like [0, 1]")
            return v
        if not v:
            raise fail("is an empty list of device ids", "list at least one id, or give a count")
        if any(i < 0 for i in v):
            raise fail("has a negative device id", "use the indexes nvidia-smi shows: 0, 1, ...")
        if len(set(v)) != len(v):
            raise fail("lists a device id twice", "list each GPU once")
        return v

    @field_validator("tensor_parallel_size")
    @classmethod
    def _tp(cls, v: int | str) -> int | str:
        if isinstance(v, int) and v < 1:
            raise fail("is below 1", "give a size >= 1, or auto to let the plan choose it")
        return v

    @field_validator("port")
    @classmethod
    def _port(cls, v: int) -> int:
        if not 1024 <= v <= 65535:
            raise fail("is outside the unprivileged port range", "use a port from 1024 to 65535, e.g. 8000")
        return v

    @field_validator("env")
    @classmethod
    def _env(cls, v: dict[str, str]) -> dict[str, str]:
        for key, value in v.items():
            if not ENV_NAME.match(key):
                raise fail(f"'{key}' is not an environment variable name", "use letters, digits and '_'")
            if is_secret_name(key):
                raise fail(f"sets {key}, a credential, as a literal value",
                           "give secrets by reference: api_key: {env: NAME} or storage.credentials "
                           "(hf_token, s3, gcs, modelscope_token: {env: NAME} or {vault: variable})")
            if not isinstance(value, str):
                raise fail(f"the value of {key} is not a string", "quote it")
            if looks_like_secret(value) or url_has_credentials(value):
                raise fail(f"the value of {key} looks like a secret (not shown here); env is for plain settings",
                           "give secrets by reference: api_key or storage.credentials, {env: NAME} or {vault: var}")
        return v

    @property
    def uri(self) -> StorageUri:
        return parse_storage_uri(self.storage_uri)

    @property
    def gpu_count(self) -> int:
        return self.gpus if isinstance(self.gpus, int) else len(self.gpus)

    @property
    def tp_auto(self) -> bool:
        """The tensor-parallel size is chosen by the plan from the host's GPUs and the model's config.json."""
        return self.tensor_parallel_size == "auto"

    @property
    def device_ids(self) -> list[int] | None:
        return None if isinstance(self.gpus, int) else list(self.gpus)

    @property
    def model_name(self) -> str:
        return self.served_model_name or self.name

    @property
    def effective_revision(self) -> str | None:
        return self.revision or self.uri.revision

    def secret_refs(self) -> dict[str, SecretRef]:
        """Every secret reference in this service, keyed by a dotted field path."""
        refs: dict[str, SecretRef] = {}
        if self.api_key:
            refs["api_key"] = self.api_key
        refs |= storage_secret_refs(self.storage)
        for j, adapter in enumerate(self.adapters):
            refs |= {f"adapters[{j}].{path}": ref for path, ref in storage_secret_refs(adapter.storage).items()}
        return refs


def storage_secret_refs(storage: Storage) -> dict[str, SecretRef]:
    """A storage block's credential references, keyed storage.credentials.<field>."""
    creds = storage.credentials
    refs: dict[str, SecretRef] = {}
    for field in ("hf_token", "modelscope_token"):
        ref = getattr(creds, field)
        if ref:
            refs[f"storage.credentials.{field}"] = ref
    if creds.s3:
        for field in ("access_key_id", "secret_access_key", "session_token"):
            ref = getattr(creds.s3, field)
            if ref:
                refs[f"storage.credentials.s3.{field}"] = ref
    if creds.gcs:
        refs["storage.credentials.gcs.application_credentials"] = creds.gcs.application_credentials
    return refs


class Deployment(Strict):
    services: list[Service] = Field(min_length=1)
    # Defined in spec/gateway.py, which builds on the models here; spec/__init__ resolves the reference.
    gateway: Gateway | None = None
    monitoring: Monitoring | None = None
