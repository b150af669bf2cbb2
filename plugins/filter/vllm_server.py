# -*- coding: utf-8 -*-
"""Filters of the vllm_server role; the logic lives in vllm_fleet.serving on the controller."""

DOCUMENTATION = r"""
---
name: vllm_container
short_description: The docker_container parameters of one planned vLLM service
description:
  - Turns one entry of C(vllm_fleet_plan.services) into community.docker.docker_container parameters, with a
    C(io.vllm-fleet.spec-hash) label covering everything whose change must restart the service.
  - The API key is not part of the result; only its digest enters the hash.
version_added: "0.1.0"
author: vllm-fleet
options:
  _input:
    description: A service of the plan.
    type: dict
    required: true
  settings:
    description: The role's settings (prefix, restart policy, log rotation, HF_HOME, TZ, ipc_host, mirror).
    type: dict
    required: true
  weights_dirs:
    description: Completed weights directory per service name.
    type: dict
  image_id:
    description: Id of the image on the host.
    type: str
  api_key:
    description: The service's API key, if any.
    type: str
"""

EXAMPLES = r"""
- name: Desired container
  ansible.builtin.set_fact:
    _want: "{{ svc | vllmfleet.fleet.vllm_container(settings=_vllm_server_settings) }}"
"""

RETURN = r"""
_value:
  description: docker_container parameters.
  type: dict
"""

from ansible.errors import AnsibleFilterError

try:
    from vllm_fleet import serving
except ImportError as exc:  # pragma: no cover - depends on the controller
    serving = None
    IMPORT_ERROR = exc


def _need():
    if serving is None:
        raise AnsibleFilterError("the vllm_fleet package is not importable on the controller: %s" % IMPORT_ERROR)


def vllm_container(service, settings, weights_dirs=None, image_id="", api_key=None):
    _need()
    try:
        return serving.container_params(service, settings=settings, weights_dirs=weights_dirs or {},
                                        image_id=image_id or "", api_key=api_key or None)
    except serving.ServingError as exc:
        raise AnsibleFilterError(str(exc)) from None


def vllm_weights_dir(service, weights_dirs=None):
    """The completed weights directory a planned service mounts (the same rule as vllm_container)."""
    _need()
    try:
        return serving.weights_dir(service, weights_dirs or {})
    except serving.ServingError as exc:
        raise AnsibleFilterError(str(exc)) from None


def vllm_canary(params, port_offset):
    _need()
    return serving.canary_params(params, int(port_offset))


def vllm_image_ref(service, mirror=""):
    _need()
    return serving.mirror_image(service["image"], mirror or "")


def vllm_shm_problems(services, mounts, ipc_host):
    """Messages for services whose shared memory the host cannot give (only with ipc_mode host)."""
    _need()
    return serving.shm_problems(services, mounts, bool(ipc_host))


def vllm_port_conflicts(services, containers, prefix):
    _need()
    return serving.port_conflicts(services, containers or [], prefix)


def vllm_gpu_problems(services, gpu_facts):
    _need()
    return serving.gpu_problems(services, gpu_facts or {})


def vllm_update_strategy(service, strategy):
    return ("canary" if service.get("accelerator") == "cpu" else "replace") if strategy == "auto" else strategy


class FilterModule:
    def filters(self):
        return {
            "vllm_container": vllm_container,
            "vllm_canary": vllm_canary,
            "vllm_weights_dir": vllm_weights_dir,
            "vllm_image_ref": vllm_image_ref,
            "vllm_shm_problems": vllm_shm_problems,
            "vllm_update_strategy": vllm_update_strategy,
            "vllm_port_conflicts": vllm_port_conflicts,
            "vllm_gpu_problems": vllm_gpu_problems,
        }
