"""Checks of what the serve stage will run, on the controller before any host is touched (play/host_checks.py checks
it against a host's real state)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from vllm_fleet.sizing import SizingError, size
from vllm_fleet.spec import Deployment, Service, SpecIssue
from vllm_fleet.spec.adapters import derived_limits
from vllm_fleet.spec.errors import show_value
from vllm_fleet.units import spec_size_mib
from vllm_fleet.vllm_flags import check_extra_args
from vllm_fleet.vm.planning.plan import GpuSummary, Settled, gpu_summary

# vLLM's own floor: it refused to start with 64 MiB and asked for 160 MiB on a tiny model.
MIN_SHM_MIB = 160


def model_config(svc: Service, configs: Mapping[str, Any]) -> dict[str, Any] | None:
    """The model's config.json when the controller can see it: given in vllm_fleet_model_configs (a mapping or a
    path), or a file:// weights directory that exists on the controller."""
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


# bfloat16 needs Ampere (compute capability 8.0) or newer; vLLM refuses it at start on older GPUs.
BF16_MIN_CAPABILITY = (8, 0)


def _capability(text: str) -> tuple[int, int]:
    major, _, minor = str(text).partition(".")
    return int(major), int(minor or 0)


def _gpu_kind_issues(svc: Service, at: str, gpus: GpuSummary, config: Mapping[str, Any] | None
                     ) -> list[SpecIssue]:
    """What the kind of GPU rules out: bfloat16 below compute capability 8.0, and GPUs partitioned by MIG, which
    sizing and placement would otherwise count as whole GPUs."""
    issues = []
    capability = gpus.compute_capability
    wanted = svc.engine.dtype
    implied = (config or {}).get("torch_dtype") or (config or {}).get("dtype")
    bf16 = wanted == "bfloat16" or (wanted == "auto" and implied == "bfloat16")
    if capability and bf16 and _capability(capability) < BF16_MIN_CAPABILITY:
        how = "is bfloat16" if wanted == "bfloat16" else "is auto, and the model's config.json asks for bfloat16"
        issues.append(SpecIssue(f"{at}.engine.dtype", show_value(wanted),
                                f"{how}, which GPUs of compute capability {capability} cannot run (8.0 or newer "
                                "needed); vLLM would refuse to start",
                                "set engine.dtype: float16, or serve it on Ampere or newer GPUs"))
    mig = sorted(gpus.mig_gpus)
    if mig:
        on_mig = [d for d in svc.device_ids or [] if d in mig]
        whole = gpus.count - len(mig)
        if on_mig:
            issues.append(SpecIssue(f"{at}.gpus", show_value(svc.gpus),
                                    f"GPU(s) {on_mig} are in MIG mode: partitioned, not whole GPUs",
                                    f"disable MIG on them (nvidia-smi -i {on_mig[0]} -mig 0) or list other ids"))
        elif not svc.device_ids and svc.gpu_count > whole:
            issues.append(SpecIssue(f"{at}.gpus", show_value(svc.gpus),
                                    f"asks for {svc.gpu_count} GPU(s), but only {whole} of the host's GPUs are whole: "
                                    f"{mig} are in MIG mode",
                                    "disable MIG, or ask for fewer GPUs"))
    return issues


def serving_issues(dep: Deployment, variables: Mapping[str, Any], *, resolve_auto: bool = False
                   ) -> tuple[list[SpecIssue], dict[str, Settled]]:
    """Controller-side checks of what the serving stage will run, before any host is touched.

    Returns (issues, what the plan settles per service name: max_model_len, and for tensor_parallel_size auto
    the chosen size and the GPUs it takes). Host variables read: vllm_fleet_gpus ({count, memory_mib}: the
    host's GPUs, as the prepare stage's gpu_facts reports them), vllm_fleet_model_configs (service -> config.json
    path or mapping) and vllm_server_ipc_host. A service with tensor_parallel_size auto whose GPUs or config.json
    are not known yet is left for a later plan; with resolve_auto that is an error.
    """
    issues: list[SpecIssue] = []
    settled: dict[str, Settled] = {}
    gpus = gpu_summary(variables.get("vllm_fleet_gpus"))
    configs = variables.get("vllm_fleet_model_configs") or {}
    ipc_host = bool(variables.get("vllm_server_ipc_host", False))
    counted = 0
    for i, svc in enumerate(dep.services):
        at = f"services[{i}]"
        for index, problem, fix in check_extra_args(list(svc.engine.extra_args)):
            issues.append(SpecIssue(f"{at}.engine.extra_args[{index}]", show_value(svc.engine.extra_args[index]),
                                    problem, fix))
        if not ipc_host and spec_size_mib(svc.shm_size) < MIN_SHM_MIB:
            issues.append(SpecIssue(f"{at}.shm_size", show_value(svc.shm_size),
                                    f"is below the {MIN_SHM_MIB} MiB of shared memory vLLM needs to start",
                                    "give at least 1g (16g on multi-GPU hosts)"))
        config = model_config(svc, configs) if svc.accelerator.value == "nvidia" and gpus else None
        if svc.accelerator.value == "nvidia" and gpus:
            issues += _gpu_kind_issues(svc, at, gpus, config)
        if svc.tp_auto and (config is None or not gpus or not gpus.memory_mib):
            if resolve_auto:
                missing = ("the host's GPUs (vllm_fleet_gpus)" if not gpus or not gpus.memory_mib
                           else "the model's config.json")
                issues.append(SpecIssue(f"{at}.tensor_parallel_size", show_value(svc.tensor_parallel_size),
                                        f"cannot be sized: {missing} is not known",
                                        "run the prepare and weights stages first (deploy-vllm.yml does), "
                                        "or give tensor_parallel_size and gpus as numbers"))
            continue
        if svc.accelerator.value != "nvidia" or not gpus:
            continue
        count = gpus.count
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
        if config is None or not gpus.memory_mib or svc.nodes > 1:  # a group is sized by place_groups
            counted += svc.gpu_count
            continue
        pool = min(svc.gpu_count, count)
        fixed_tp = svc.tensor_parallel_size if isinstance(svc.tensor_parallel_size, int) else None
        # The slots vLLM reserves for the service's adapters (--max-loras of rank --max-lora-rank) leave less room.
        lora = derived_limits(svc.adapters, svc.lora) if svc.adapters else (0, 0)
        try:
            result = size(config, gpu_mib=gpus.memory_mib, gpu_count=pool,
                          utilization=svc.engine.gpu_memory_utilization, max_model_len=svc.engine.max_model_len,
                          tensor_parallel_size=fixed_tp, lora=lora)
        except SizingError as exc:
            hint = "use a larger GPU, quantization, or a lower max_model_len"
            try:
                fit = size(config, gpu_mib=gpus.memory_mib, gpu_count=count,
                           utilization=svc.engine.gpu_memory_utilization, lora=lora)
                need = fit.tensor_parallel_size
                hint = (f"give it a pool of at least {need} GPUs (gpus: {need})" if svc.tp_auto else
                        f"it fits at tensor_parallel_size {need} (gpus: {need}) with max_model_len {fit.max_model_len}")
            except SizingError:
                pass
            pool_note = f" on the {pool} GPU(s) it may use" if svc.tp_auto else ""
            issues.append(SpecIssue(f"{at}.tensor_parallel_size", show_value(svc.tensor_parallel_size),
                                    f"the model does not fit{pool_note}: {exc}", hint))
            continue
        entry = Settled(max_model_len=result.max_model_len if svc.engine.max_model_len is None else None)
        if svc.tp_auto:
            tp = result.tensor_parallel_size
            entry = entry.model_copy(update={"tensor_parallel_size": tp,
                                             "gpus": svc.device_ids[:tp] if svc.device_ids else tp})
        counted += result.tensor_parallel_size if svc.tp_auto else svc.gpu_count
        if entry != Settled():
            settled[svc.name] = entry
    if gpus and counted > gpus.count:
        issues.append(SpecIssue("services", f"{counted} GPUs", f"the services ask for {counted} GPUs in all but the "
                                f"host has {gpus.count}", "give each service its own GPUs within the host"))
    return issues, settled
