"""Filters of the vllm_server role: each validates the plan it is given back into vllm_fleet's typed plan and
calls the logic in vllm_fleet.vm; documented one file each in plugins/filter/<name>.yml."""

from __future__ import annotations

from typing import Any

from ansible.errors import AnsibleFilterError
from ansible_collections.vllmfleet.fleet.plugins.plugin_utils.fleet import host_plan, service_plan


def vllm_container(service: dict[str, Any], settings: dict[str, Any], weights_dirs: dict[str, Any] | None = None,
                   image_id: str = "", image_entrypoint: list[str] | None = None, api_key: str | None = None
                   ) -> dict[str, Any]:
    from vllm_fleet.vm.container import ServingError, container_params

    try:
        return container_params(service_plan(service), settings=settings, weights_dirs=weights_dirs or {},
                                image_id=image_id or "", image_entrypoint=list(image_entrypoint or []),
                                api_key=api_key or None)
    except ServingError as exc:
        raise AnsibleFilterError(str(exc)) from None


def vllm_weights_dir(service: dict[str, Any], weights_dirs: dict[str, Any] | None = None) -> str:
    from vllm_fleet.vm.container import ServingError, weights_dir

    try:
        return weights_dir(service_plan(service), weights_dirs or {})
    except ServingError as exc:
        raise AnsibleFilterError(str(exc)) from None


def vllm_canary(params: dict[str, Any], service: dict[str, Any], port_offset: int) -> dict[str, Any]:
    from vllm_fleet.vm.container import canary_params

    return canary_params(params, service_plan(service), int(port_offset))


def vllm_image_ref(service: dict[str, Any], mirror: str = "") -> str:
    from vllm_fleet.vm.container import mirror_image

    return mirror_image(service_plan(service).image, mirror or "")


def image_ref(image: str, mirror: str = "") -> str:
    from vllm_fleet.vm.container import mirror_image

    return mirror_image(str(image), mirror or "")


def vllm_host_problems(services: list[dict[str, Any]], mounts: list[dict[str, Any]], ipc_host: bool,
                       containers: list[dict[str, Any]], gpu_facts: dict[str, Any] | None, label_prefix: str
                       ) -> list[str]:
    from vllm_fleet.vm.checks import host_problems

    return host_problems(host_plan(services, label_prefix), mounts=mounts or [], ipc_host=bool(ipc_host),
                         containers=containers or [], gpu_facts=gpu_facts or {})


def vllm_update_strategy(service: dict[str, Any], strategy: str) -> str:
    from vllm_fleet.vm.container import update_strategy

    return update_strategy(service_plan(service), strategy)


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "vllm_container": vllm_container,
            "vllm_canary": vllm_canary,
            "vllm_weights_dir": vllm_weights_dir,
            "vllm_image_ref": vllm_image_ref,
            "image_ref": image_ref,
            "vllm_host_problems": vllm_host_problems,
            "vllm_update_strategy": vllm_update_strategy,
        }
