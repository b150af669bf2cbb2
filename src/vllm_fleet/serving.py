"""What one planned service becomes on a host: the community.docker.docker_container parameters.

The vllm_server role calls `container_params` through the `vllm_container` filter. Everything that should
restart the service when it changes (image id, engine args, weights dir and revision, env, GPUs, port, shm,
the API key's digest) goes into one spec hash, recorded as a container label: the role compares that label,
not docker's own idea of a difference, so an unchanged re-run restarts nothing and a changed one is rolled
out through the health gate.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from vllm_fleet.engine_args import MODEL_MOUNT

LABEL_PREFIX = "io.vllm-fleet"
HEALTH_PATH = "/health"


class ServingError(ValueError):
    """A service cannot be turned into a container as asked."""


def weights_dir(service: Mapping[str, Any], weights_dirs: Mapping[str, Any]) -> str:
    """The completed weights directory on the host: from the weights stage (model_weights_paths entries are
    {path, revision, ...}; a plain path works too), else a file:// path."""
    name = service["name"]
    given = weights_dirs.get(name)
    if isinstance(given, Mapping) and given.get("path"):
        return str(given["path"])
    if given and isinstance(given, str):
        return given
    source = service["source"]
    if source["scheme"] == "file":
        return str(source["uri"])[len("file://"):]
    raise ServingError(
        f"service {name}: no completed weights directory is known for {source['display_uri']}; "
        "run the weights stage first (tags: weights), or set vllm_server_weights_dirs"
    )


def _revision(service: Mapping[str, Any], weights_dirs: Mapping[str, Any]) -> str:
    given = weights_dirs.get(service["name"])
    if isinstance(given, Mapping) and given.get("revision"):
        return str(given["revision"])
    return str(service["source"].get("revision") or "")


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


def _size_mib(size: str) -> int:
    text = size.strip().lower().replace("ib", "").replace("b", "")
    units = {"k": 1 / 1024, "m": 1, "g": 1024, "t": 1024 * 1024}
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(float(text) / (1024 * 1024))


def shm_mib(service: Mapping[str, Any]) -> int:
    return _size_mib(str(service["shm_size"]))


def container_name(service: Mapping[str, Any], prefix: str) -> str:
    return f"{prefix}{service['name']}"


def spec_hash(params: Mapping[str, Any], image_id: str, api_key: str | None) -> str:
    digest = hashlib.sha256()
    digest.update(json.dumps(params, sort_keys=True, default=str).encode())
    digest.update(image_id.encode())
    # The key itself is visible to anyone who can `docker inspect` the container; its digest adds nothing.
    digest.update(hashlib.sha256((api_key or "").encode()).digest())
    return digest.hexdigest()[:16]


def container_params(
    service: Mapping[str, Any],
    *,
    settings: Mapping[str, Any],
    weights_dirs: Mapping[str, Any] | None = None,
    image_id: str = "",
    api_key: str | None = None,
) -> dict[str, Any]:
    """docker_container parameters for one service, without the secret env (the role adds VLLM_API_KEY).

    settings: prefix, restart_policy, log_max_size, log_max_file, hf_home, tz, ipc_host, health_interval,
    health_start_period, registry_mirror.
    """
    name = container_name(service, settings["prefix"])
    weights = weights_dir(service, weights_dirs or {})
    port = int(service["port"])
    container_port = int(service["container_port"])
    env = {
        "HF_HOME": "/root/.cache/huggingface",
        "TZ": settings["tz"],
        "HF_HUB_OFFLINE": "1",
        **{str(k): str(v) for k, v in service.get("env", {}).items()},
    }
    params: dict[str, Any] = {
        "name": name,
        "image": mirror_image(service["image"], settings.get("registry_mirror", "")),
        "command": list(service["engine_args"]),
        "published_ports": [f"{port}:{container_port}"],
        "env": env,
        "mounts": [
            {"type": "bind", "source": weights, "target": MODEL_MOUNT, "read_only": True},
            {"type": "bind", "source": settings["hf_home"], "target": "/root/.cache/huggingface"},
        ],
        "restart_policy": settings["restart_policy"],
        "log_driver": "json-file",
        "log_options": {"max-size": settings["log_max_size"], "max-file": str(settings["log_max_file"])},
        "healthcheck": {
            "test": ["CMD", "curl", "-fsS", "-o", "/dev/null", f"http://127.0.0.1:{container_port}{HEALTH_PATH}"],
            "interval": f"{settings.get('health_interval', 15)}s",
            "timeout": "5s",
            "retries": 3,
            "start_period": f"{settings.get('health_start_period', 600)}s",
        },
    }
    if settings.get("ipc_host"):
        params["ipc_mode"] = "host"
    else:
        params["shm_size"] = service["shm_size"]
    if service["accelerator"] == "nvidia":
        request: dict[str, Any] = {"driver": "nvidia", "capabilities": [["gpu"]]}
        if service.get("device_ids"):
            request["device_ids"] = [str(i) for i in service["device_ids"]]
        else:
            request["count"] = int(service["gpu_count"])
        params["device_requests"] = [request]
    labels = {
        f"{LABEL_PREFIX}.managed": "true",
        f"{LABEL_PREFIX}.service": str(service["name"]),
        f"{LABEL_PREFIX}.model": str(service["served_model_name"]),
        f"{LABEL_PREFIX}.task": str(service["task"]),
        f"{LABEL_PREFIX}.revision": _revision(service, weights_dirs or {}),
        f"{LABEL_PREFIX}.weights": weights,
        f"{LABEL_PREFIX}.port": str(port),
    }
    params["labels"] = labels
    params["labels"][f"{LABEL_PREFIX}.spec-hash"] = spec_hash(params, image_id, api_key)
    return params


def canary_params(params: Mapping[str, Any], port_offset: int) -> dict[str, Any]:
    """The same container beside the running one: another name and host port, no restarts, no labels that
    would make it look like the serving container."""
    host_port, _, container_port = params["published_ports"][0].partition(":")
    canary = dict(params)
    canary["name"] = f"{params['name']}-candidate"
    canary["published_ports"] = [f"{int(host_port) + port_offset}:{container_port}"]
    canary["restart_policy"] = "no"
    canary["labels"] = {**params["labels"], f"{LABEL_PREFIX}.managed": "candidate"}
    return canary


# vLLM's own floor: it refused to start with 64 MiB and asked for 160 MiB on a tiny model.
MIN_SHM_MIB = 160


def shm_problems(services: list[Mapping[str, Any]], mounts: list[Mapping[str, Any]], ipc_host: bool) -> list[str]:
    """With ipc_mode host, every container shares the host's /dev/shm: it must be at least the largest
    shm_size asked for (and vLLM's floor). Without it, docker gives each container its own shm_size."""
    problems = []
    if ipc_host:
        shm = next((m for m in mounts if m.get("mount") == "/dev/shm"), None)
        have = int(shm["size_total"]) // (1024 * 1024) if shm else 0
        want = max([MIN_SHM_MIB, *(shm_mib(s) for s in services)])
        if have < want:
            problems.append(
                f"/dev/shm on this host is {have} MiB but the services need {want} MiB with ipc_mode host "
                "(vLLM refuses to start and the container restarts in a loop); enlarge /dev/shm "
                "(mount -o remount,size=... /dev/shm) or set vllm_server_ipc_host: false to give each "
                "container its own shm_size")
    for s in services:
        if shm_mib(s) < MIN_SHM_MIB and not ipc_host:
            problems.append(f"service {s['name']}: shm_size {s['shm_size']} is below the {MIN_SHM_MIB} MiB vLLM "
                            "needs; raise shm_size")
    return problems


def _load_config(svc: Any, configs: Mapping[str, Any]) -> dict[str, Any] | None:
    """The model's config.json when the controller can see it: given in vllm_fleet_model_configs (a mapping or a
    path), or a file:// weights directory that exists on the controller."""
    from pathlib import Path

    given = configs.get(svc.name)
    if isinstance(given, Mapping):
        return dict(given)
    path = Path(str(given)) if given else None
    if path is None and svc.uri.scheme == "file":
        path = Path(svc.storage_uri[len("file://"):]) / "config.json"
    if path is not None and path.is_dir():
        path = path / "config.json"
    if path is not None and path.is_file():
        loaded = json.loads(path.read_text())
        return loaded if isinstance(loaded, dict) else None
    return None


def serving_issues(dep: Any, variables: Mapping[str, Any], *, resolve_auto: bool = False
                   ) -> tuple[list[Any], dict[str, dict[str, Any]]]:
    """Controller-side checks of what the serving stage will run, before any host is touched.

    Returns (issues, what the plan settles per service name: max_model_len, and for tensor_parallel_size auto
    the chosen size and the GPUs it takes). Host variables read: vllm_fleet_gpus ({count, memory_mib}: the
    host's GPUs, as the prepare stage's gpu_facts reports them), vllm_fleet_model_configs (service -> config.json
    path or mapping) and vllm_server_ipc_host. A service with tensor_parallel_size auto whose GPUs or config.json
    are not known yet is left for a later plan; with resolve_auto that is an error.
    """
    from vllm_fleet.sizing import SizingError, size
    from vllm_fleet.spec.errors import SpecIssue, show_value
    from vllm_fleet.vllm_flags import check_extra_args

    issues: list[Any] = []
    settled: dict[str, dict[str, Any]] = {}
    gpus = variables.get("vllm_fleet_gpus") or {}
    configs = variables.get("vllm_fleet_model_configs") or {}
    ipc_host = bool(variables.get("vllm_server_ipc_host", False))
    counted = 0
    for i, svc in enumerate(dep.services):
        at = f"services[{i}]"
        for index, problem, fix in check_extra_args(list(svc.engine.extra_args)):
            issues.append(SpecIssue(f"{at}.engine.extra_args[{index}]", show_value(svc.engine.extra_args[index]),
                                    problem, fix))
        if not ipc_host and _size_mib(svc.shm_size) < MIN_SHM_MIB:
            issues.append(SpecIssue(f"{at}.shm_size", show_value(svc.shm_size),
                                    f"is below the {MIN_SHM_MIB} MiB of shared memory vLLM needs to start",
                                    "give at least 1g (16g on multi-GPU hosts)"))
        config = _load_config(svc, configs) if svc.accelerator.value == "nvidia" and gpus else None
        if svc.tp_auto and (config is None or not gpus.get("memory_mib")):
            if resolve_auto:
                missing = ("the host's GPUs (vllm_fleet_gpus)" if not gpus.get("memory_mib")
                           else "the model's config.json")
                issues.append(SpecIssue(f"{at}.tensor_parallel_size", show_value(svc.tensor_parallel_size),
                                        f"cannot be sized: {missing} is not known",
                                        "run the prepare and weights stages first (deploy-vllm.yml does), "
                                        "or give tensor_parallel_size and gpus as numbers"))
            continue
        if svc.accelerator.value != "nvidia" or not gpus:
            continue
        count = int(gpus.get("count", 0))
        for dev in svc.device_ids or []:
            if dev >= count:
                issues.append(SpecIssue(f"{at}.gpus", show_value(svc.gpus),
                                        f"GPU {dev} does not exist: the host has {count} GPU(s), ids 0-{count - 1}",
                                        "use ids the host has, as nvidia-smi lists them"))
        if svc.gpu_count > count and not svc.tp_auto:
            issues.append(SpecIssue(f"{at}.gpus", show_value(svc.gpus),
                                    f"asks for {svc.gpu_count} GPU(s) but the host has {count}",
                                    "lower tensor_parallel_size and gpus, or pick a larger host"))
            continue
        if config is None or not gpus.get("memory_mib"):
            counted += svc.gpu_count
            continue
        pool = min(svc.gpu_count, count)
        try:
            result = size(config, gpu_mib=int(gpus["memory_mib"]), gpu_count=pool,
                          utilization=svc.engine.gpu_memory_utilization, max_model_len=svc.engine.max_model_len,
                          tensor_parallel_size=None if svc.tp_auto else svc.tensor_parallel_size)
        except SizingError as exc:
            hint = "use a larger GPU, quantization, or a lower max_model_len"
            try:
                fit = size(config, gpu_mib=int(gpus["memory_mib"]), gpu_count=count,
                           utilization=svc.engine.gpu_memory_utilization)
                need = fit.tensor_parallel_size
                hint = (f"give it a pool of at least {need} GPUs (gpus: {need})" if svc.tp_auto else
                        f"it fits at tensor_parallel_size {need} (gpus: {need}) with max_model_len {fit.max_model_len}")
            except SizingError:
                pass
            pool_note = f" on the {pool} GPU(s) it may use" if svc.tp_auto else ""
            issues.append(SpecIssue(f"{at}.tensor_parallel_size", show_value(svc.tensor_parallel_size),
                                    f"the model does not fit{pool_note}: {exc}", hint))
            continue
        entry: dict[str, Any] = {}
        if svc.engine.max_model_len is None:
            entry["max_model_len"] = result.max_model_len
        if svc.tp_auto:
            tp = result.tensor_parallel_size
            entry["tensor_parallel_size"] = tp
            entry["gpus"] = svc.device_ids[:tp] if svc.device_ids else tp
        counted += result.tensor_parallel_size if svc.tp_auto else svc.gpu_count
        if entry:
            settled[svc.name] = entry
    if gpus and counted > int(gpus.get("count", 0)):
        issues.append(SpecIssue("services", f"{counted} GPUs", f"the services ask for {counted} GPUs in all but the "
                                f"host has {gpus.get('count')}", "give each service its own GPUs within the host"))
    return issues, settled


def port_conflicts(services: list[Mapping[str, Any]], containers: list[Mapping[str, Any]], prefix: str) -> list[str]:
    """Host ports the services need that a container not managed by vllm-fleet already publishes."""
    ours = {container_name(s, prefix) for s in services}
    ours |= {f"{n}-previous" for n in ours} | {f"{n}-candidate" for n in ours}
    wanted = {int(s["port"]): s["name"] for s in services}
    problems = []
    for c in containers:
        names = [str(n).lstrip("/") for n in c.get("Names") or []]
        labels = c.get("Labels") or {}
        if any(n in ours for n in names) or labels.get(f"{LABEL_PREFIX}.managed"):
            continue
        for port in c.get("Ports") or []:
            public = port.get("PublicPort")
            if public in wanted:
                problems.append(f"port {public} of service {wanted[public]} is already published by container "
                                f"{', '.join(names) or c.get('Id', '?')[:12]}, which vllm-fleet does not manage; "
                                "stop it or give the service another port")
    return problems


def gpu_problems(services: list[Mapping[str, Any]], gpu_facts: Mapping[str, Any] | None) -> list[str]:
    """Device ids and counts against the host's real GPUs (the prepare stage's gpu_facts)."""
    if not gpu_facts:
        return []
    count = int(gpu_facts.get("gpu_count") or 0)
    problems = []
    for s in services:
        if s.get("accelerator") != "nvidia":
            continue
        bad = [i for i in s.get("device_ids") or [] if i >= count]
        if int(s.get("gpu_count") or 0) > count:
            problems.append(f"service {s['name']}: asks for {s['gpu_count']} GPU(s); this host has {count}")
        elif bad:
            problems.append(f"service {s['name']}: GPU id(s) {bad} do not exist on this host, which has {count} "
                            "GPU(s) (counts take the lowest ids the other services leave free)")
    return problems
