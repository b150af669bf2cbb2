"""Filters of the vllm_server role: each validates the plan it is given back into vllm_fleet's typed plan and
calls the logic in vllm_fleet.vm; documented one file each in plugins/filter/<name>.yml."""

from __future__ import annotations

from typing import Any

from ansible.errors import AnsibleFilterError
from ansible_collections.vllmfleet.fleet.plugins.plugin_utils.fleet import plain, typed_host_plan, typed_service_plan


def vllm_container(service: dict[str, Any], settings: dict[str, Any], weights_dirs: dict[str, Any] | None = None,
                   image_id: str = "", image_entrypoint: list[str] | None = None, api_key: str | None = None
                   ) -> dict[str, Any]:
    from vllm_fleet.vm.play.container import ContainerSettings, ServingError, container_params

    try:
        return container_params(typed_service_plan(service), settings=ContainerSettings.model_validate(plain(settings)),
                                weights_dirs=weights_dirs or {},
                                image_id=image_id or "", image_entrypoint=list(image_entrypoint or []),
                                api_key=api_key or None)
    except ServingError as exc:
        raise AnsibleFilterError(str(exc)) from None


def vllm_weights_dir(service: dict[str, Any], weights_dirs: dict[str, Any] | None = None) -> str:
    from vllm_fleet.vm.play.container import ServingError, weights_dir

    try:
        return weights_dir(typed_service_plan(service), weights_dirs or {})
    except ServingError as exc:
        raise AnsibleFilterError(str(exc)) from None


def vllm_adapter_modules(service: dict[str, Any], settings: dict[str, Any], weights_dirs: dict[str, Any] | None = None
                  ) -> list[dict[str, str]]:
    from vllm_fleet.vm.play.container import ContainerSettings, ServingError, adapter_modules

    try:
        return adapter_modules(typed_service_plan(service), ContainerSettings.model_validate(plain(settings)),
                               weights_dirs or {})
    except ServingError as exc:
        raise AnsibleFilterError(str(exc)) from None


def vllm_canary(params: dict[str, Any], service: dict[str, Any], port_offset: int, label_prefix: str
                ) -> dict[str, Any]:
    from vllm_fleet.vm.play.container import canary_params

    return canary_params(params, typed_service_plan(service), int(port_offset), str(label_prefix))


def vllm_image_ref(service: dict[str, Any], mirror: str = "") -> str:
    from vllm_fleet.vm.play.container import mirror_image

    return mirror_image(typed_service_plan(service).image, mirror or "")


def image_ref(image: str, mirror: str = "") -> str:
    from vllm_fleet.vm.play.container import mirror_image

    return mirror_image(str(image), mirror or "")


def vllm_host_problems(services: list[dict[str, Any]], mounts: list[dict[str, Any]], ipc_host: bool,
                       containers: list[dict[str, Any]], gpu_facts: dict[str, Any] | None, label_prefix: str
                       ) -> list[str]:
    from vllm_fleet.vm.play.host_checks import host_problems

    return host_problems(typed_host_plan(services, label_prefix), mounts=mounts or [], ipc_host=bool(ipc_host),
                         containers=containers or [], gpu_facts=gpu_facts or {})


def vllm_update_strategy(service: dict[str, Any], strategy: str) -> str:
    from vllm_fleet.vm.play.container import update_strategy

    return update_strategy(typed_service_plan(service), strategy)


def vllm_gate_args(service: dict[str, Any], base_url: str, label: str) -> list[str]:
    from vllm_fleet.vm.play.bench import gate_args

    plan = typed_service_plan(service)
    if plan.gate is None:
        raise AnsibleFilterError(f"service {plan.name} has no gate")
    return gate_args(plan.gate, model=plan.served_model_name, base_url=base_url, label=label)


def vllm_gate_verdict(service: dict[str, Any], before: dict[str, Any], after: dict[str, Any], host: str
                      ) -> dict[str, Any]:
    from vllm_fleet.vm.play.bench import gate_verdict

    plan = typed_service_plan(service)
    if plan.gate is None:
        raise AnsibleFilterError(f"service {plan.name} has no gate")
    return gate_verdict(plan.gate, before, after, service=plan.name, host=host)


def vllm_running_hashes(services: list[dict[str, Any]], containers: list[dict[str, Any]], label_prefix: str
                        ) -> dict[str, str | None]:
    """The spec hash of each service's running container, from one docker_host_info listing; services with no
    running container are left out."""
    running: dict[str, str | None] = {}
    for plan in (typed_service_plan(s) for s in services):
        for c in containers or []:
            if "/" + plan.container.name in (c.get("Names") or []) and c.get("State") == "running":
                running[plan.name] = (c.get("Labels") or {}).get(f"{label_prefix}.spec-hash")
    return running


def vllm_gated_changes(services: list[dict[str, Any]], wanted: dict[str, Any], running: dict[str, str | None],
                       label_prefix: str) -> list[str]:
    from vllm_fleet.vm.play.bench import gated_changes

    hashes = {name: str((want.get("labels") or {}).get(f"{label_prefix}.spec-hash"))
              for name, want in (wanted or {}).items()}
    return gated_changes([typed_service_plan(s) for s in services], hashes, running or {})


def vllm_gate_hosts(batch: list[str], changes: list[list[str]], passed: list[str]) -> dict[str, str]:
    from vllm_fleet.vm.play.bench import gate_hosts

    return gate_hosts(list(batch), [list(c or []) for c in changes], list(passed or []))


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "vllm_container": vllm_container,
            "vllm_canary": vllm_canary,
            "vllm_weights_dir": vllm_weights_dir,
            "vllm_adapter_modules": vllm_adapter_modules,
            "vllm_image_ref": vllm_image_ref,
            "image_ref": image_ref,
            "vllm_host_problems": vllm_host_problems,
            "vllm_update_strategy": vllm_update_strategy,
            "vllm_gate_args": vllm_gate_args,
            "vllm_gate_verdict": vllm_gate_verdict,
            "vllm_running_hashes": vllm_running_hashes,
            "vllm_gated_changes": vllm_gated_changes,
            "vllm_gate_hosts": vllm_gate_hosts,
        }
