"""What one planned service becomes on a host: the community.docker.docker_container parameters.

The vllm_server role calls `container_params` through the `vllm_container` filter. Everything that should
restart the service when it changes (image id, engine args, weights dir and revision, env, GPUs, port, shm,
the API key's digest) goes into one spec hash, recorded as a container label: the role compares that label,
not docker's own idea of a difference, so an unchanged re-run restarts nothing and a changed one is rolled
out through the readiness check.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from vllm_fleet.engine_args import ADAPTERS_MOUNT, MODEL_MOUNT, STOP_MARGIN_SECONDS, lora_modules_args
from vllm_fleet.vm.planning.plan import LABEL_PREFIX, PlanModel, ServicePlan, adapter_key

# The API key reaches vLLM from a root-only file on the host, mounted read-only here and read by a wrapper that
# exports it and execs the image's own entrypoint: it is in no argv, no container config and no inspect output.
API_KEY_MOUNT = "/run/secrets/vllm-api-key"
API_KEY_WRAPPER = ["/bin/sh", "-c", f'VLLM_API_KEY="$(cat {API_KEY_MOUNT})" && export VLLM_API_KEY && exec "$@"',
                   "vllm-fleet-api-key"]
HEALTH_PATH = "/health"
# vLLM's own cache (VLLM_CACHE_ROOT): model inspection results, torch.compile artifacts. Kept on the host per
# service, so a restart, a canary or a rollback reuses what an earlier start of the service worked out (on CPU
# the model inspection alone was a quarter of a tiny model's start: 40 s -> 27 s measured).
VLLM_CACHE_MOUNT = "/var/cache/vllm"
# A service's adapters directory on the host (<adapters_root>/<service>/<weights_name>/<revision>/), read-only in the
# container: an adapter the weights stage publishes later is visible to the running engine, which loads it at
# runtime (VLLM_ALLOW_RUNTIME_LORA_UPDATING) without a restart.
RUNTIME_LORA_ENV = "VLLM_ALLOW_RUNTIME_LORA_UPDATING"


class ServingError(ValueError):
    """A service cannot be turned into a container as asked."""


class ContainerSettings(PlanModel):
    """The vllm_server role's host-wide settings a container is built from (its vars/main.yml passes them)."""

    hf_home: str
    vllm_cache: str
    adapters_root: str
    tz: str
    restart_policy: str
    log_max_size: str
    log_max_file: int
    registry_mirror: str = ""
    ipc_host: bool = False
    secrets_dir: str = "/etc/vllm-fleet/secrets"
    health_interval: int = 15
    health_start_period: int = 600
    # The prefix of every label the container carries (vllm_server_label_prefix).
    label_prefix: str = LABEL_PREFIX


class HostPaths(PlanModel):
    """What the role prepares on the host before a container starts: its vLLM cache directory and, with an API
    key, the key's file (the sources of the mounts at VLLM_CACHE_MOUNT and API_KEY_MOUNT)."""

    vllm_cache: str
    api_key_file: str | None = None


def weights_dir(service: ServicePlan, weights_dirs: Mapping[str, Any]) -> str:
    """The completed weights directory on the host: from the weights stage (model_weights_paths entries are
    {path, revision, ...}; a plain path works too), else a file:// path."""
    name = service.name
    given = weights_dirs.get(name)
    if isinstance(given, Mapping) and given.get("path"):
        return str(given["path"])
    if given and isinstance(given, str):
        return given
    source = service.source
    if source.scheme == "file":
        return source.uri[len("file://"):]
    raise ServingError(
        f"service {name}: no completed weights directory is known for {source.display_uri}; "
        "run the weights stage first (tags: weights), or set vllm_server_weights_dirs"
    )


def adapters_dir(service: ServicePlan, settings: ContainerSettings) -> str:
    return f"{settings.adapters_root.rstrip('/')}/{service.name}"


def adapter_modules(service: ServicePlan, settings: ContainerSettings, weights_dirs: Mapping[str, Any]
                    ) -> list[dict[str, str]]:
    """Each adapter whose files the weights stage completed, as vLLM is told of it: {name, path}, the path inside
    the container. An adapter must lie in the service's adapters directory to be seen there."""
    root = adapters_dir(service, settings)
    modules = []
    for adapter in service.adapters:
        given = weights_dirs.get(adapter_key(service.name, adapter.name))
        path = str(given.get("path") or "") if isinstance(given, Mapping) else str(given or "")
        if not path:
            raise ServingError(f"service {service.name}: no completed files are known for its adapter "
                               f"{adapter.name} ({adapter.source.display_uri}); run the weights stage first "
                               "(tags: weights)")
        if not path.startswith(root + "/"):
            raise ServingError(f"service {service.name}: adapter {adapter.name} is at {path}, outside {root}, "
                               "the directory its container sees; let the weights stage publish it there")
        modules.append({"name": adapter.name, "path": f"{ADAPTERS_MOUNT}/{path[len(root) + 1:]}"})
    return modules


def _revision(service: ServicePlan, weights_dirs: Mapping[str, Any]) -> str:
    given = weights_dirs.get(service.name)
    if isinstance(given, Mapping) and given.get("revision"):
        return str(given["revision"])
    return service.source.revision or ""


def mirror_image(image: str, mirror: str) -> str:
    """Rewrite an image reference to pull through a registry mirror (host[:port][/prefix])."""
    if not mirror:
        return image
    first, _, rest = image.partition("/")
    has_registry = bool(rest) and ("." in first or ":" in first or first == "localhost")
    path = rest if has_registry else image
    if not has_registry and "/" not in image:
        path = f"library/{image}"
    return f"{mirror.rstrip('/')}/{path}"


def spec_hash(params: Mapping[str, Any], image_id: str, api_key: str | None) -> str:
    digest = hashlib.sha256()
    digest.update(json.dumps(params, sort_keys=True, default=str).encode())
    digest.update(image_id.encode())
    digest.update(hashlib.sha256((api_key or "").encode()).digest())
    return digest.hexdigest()[:16]


def api_key_file(service: ServicePlan, settings: ContainerSettings, api_key: str) -> str:
    """The key's file on the host, named per key so that a container rolled back keeps reading its own key."""
    digest = hashlib.sha256(api_key.encode()).hexdigest()[:16]
    return f"{settings.secrets_dir}/{service.name}-{digest}.api-key"


def container_params(
    service: ServicePlan,
    *,
    settings: ContainerSettings,
    weights_dirs: Mapping[str, Any] | None = None,
    image_id: str = "",
    image_entrypoint: list[str] | None = None,
    api_key: str | None = None,
) -> dict[str, Any]:
    """docker_container parameters for one service. With an API key, the container mounts the key file the role
    writes (api_key_file) and starts through API_KEY_WRAPPER, followed by the image's entrypoint and vLLM's
    arguments; the key itself is not in the result. Besides docker_container's parameters, `host_paths` says
    what the role prepares on the host first (HostPaths), so that no task finds a mount by its target.
    """
    name = service.container.name
    weights = weights_dir(service, weights_dirs or {})
    cache = f"{settings.vllm_cache.rstrip('/')}/{service.name}"
    port = service.port
    container_port = service.container_port
    env = {
        "HF_HOME": "/root/.cache/huggingface",
        "TZ": settings.tz,
        "HF_HUB_OFFLINE": "1",
        "VLLM_CACHE_ROOT": VLLM_CACHE_MOUNT,
        **service.env,
    }
    params: dict[str, Any] = {
        "name": name,
        "image": mirror_image(service.image, settings.registry_mirror),
        "command": list(service.engine_args),
        "published_ports": [f"{service.bind_address}:{port}:{container_port}"],
        "env": env,
        "mounts": [
            {"type": "bind", "source": weights, "target": MODEL_MOUNT, "read_only": True},
            {"type": "bind", "source": settings.hf_home, "target": "/root/.cache/huggingface"},
            {"type": "bind", "source": cache, "target": VLLM_CACHE_MOUNT},
        ],
        "restart_policy": settings.restart_policy,
        # docker stop sends SIGTERM, then SIGKILL after this: room for vLLM's drain (--shutdown-timeout).
        "stop_timeout": service.shutdown_timeout + STOP_MARGIN_SECONDS,
        "log_driver": "json-file",
        "log_options": {"max-size": settings.log_max_size, "max-file": str(settings.log_max_file)},
        "healthcheck": {
            "test": ["CMD", "curl", "-fsS", "-o", "/dev/null", f"http://127.0.0.1:{container_port}{HEALTH_PATH}"],
            "interval": f"{settings.health_interval}s",
            "timeout": "5s",
            "retries": 3,
            "start_period": f"{settings.health_start_period}s",
        },
    }
    key_file = api_key_file(service, settings, api_key) if api_key else None
    if key_file:
        params["entrypoint"] = list(API_KEY_WRAPPER)
        params["command"] = [*(image_entrypoint or []), *service.engine_args]
        params["mounts"].append({"type": "bind", "source": key_file, "target": API_KEY_MOUNT, "read_only": True})
    if settings.ipc_host:
        params["ipc_mode"] = "host"
    else:
        params["shm_size"] = service.shm_size
    if service.accelerator == "nvidia":
        request: dict[str, Any] = {"driver": "nvidia", "capabilities": [["gpu"]]}
        if service.device_ids:
            request["device_ids"] = [str(i) for i in service.device_ids]
        else:
            request["count"] = service.gpu_count
        params["device_requests"] = [request]
    prefix = settings.label_prefix
    labels = {
        f"{prefix}.managed": "true",
        f"{prefix}.service": service.name,
        f"{prefix}.model": service.served_model_name,
        f"{prefix}.task": service.task,
        f"{prefix}.revision": _revision(service, weights_dirs or {}),
        f"{prefix}.weights": weights,
        f"{prefix}.port": str(port),
    }
    params["labels"] = labels
    if service.adapters:
        params["env"][RUNTIME_LORA_ENV] = "True"
        params["mounts"].append({"type": "bind", "source": adapters_dir(service, settings), "target": ADAPTERS_MOUNT,
                                 "read_only": True})
    params["labels"][f"{prefix}.spec-hash"] = spec_hash(params, image_id, api_key)
    if service.adapters:
        # After the hash: which adapters a container starts with is no reason to restart one that runs; the serve
        # stage loads and unloads adapters in a running engine to match the plan (vllm_adapters).
        modules = adapter_modules(service, settings, weights_dirs or {})
        params["command"] = [*params["command"], *lora_modules_args(
            [(m["name"], m["path"]) for m in modules], service.served_model_name)]
    params["host_paths"] = HostPaths(vllm_cache=cache, api_key_file=key_file).model_dump()
    return params


def canary_params(params: Mapping[str, Any], service: ServicePlan, port_offset: int,
                  label_prefix: str = LABEL_PREFIX) -> dict[str, Any]:
    """The same container beside the running one: another name and host port, no restarts, no labels that
    would make it look like the serving container. Everything else, the health check included, is the same."""
    bind, host_port, container_port = params["published_ports"][0].rsplit(":", 2)
    canary = dict(params)
    canary["name"] = service.container.candidate
    canary["published_ports"] = [f"{bind}:{int(host_port) + port_offset}:{container_port}"]
    canary["restart_policy"] = "no"
    canary["labels"] = {**params["labels"], f"{label_prefix}.managed": "candidate"}
    return canary




def update_strategy(service: ServicePlan, strategy: str) -> str:
    """auto: a canary beside the running container where there is room for two (CPU), else replace."""
    if strategy == "auto":
        return "canary" if service.accelerator == "cpu" else "replace"
    return strategy
