"""Controller-side helpers shared by the collection's plugins: the vllm-fleet Python package they require.

The collection's controller plugins (fleet_plan, the filters) call the `vllm-fleet` package installed beside
ansible-core (`pip install vllm-fleet`); host-side modules need nothing but Python.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ansible.errors import AnsibleError

REQUIREMENT = (
    "the vllmfleet.fleet collection's controller plugins require the vllm-fleet Python package in the "
    "environment that runs ansible-playbook: pip install vllm-fleet (or pip install -e . in a checkout)"
)


def require_package() -> None:
    try:
        import vllm_fleet  # noqa: F401
    except ImportError as exc:
        raise AnsibleError(f"{REQUIREMENT} ({exc})") from None


def plain(value: Any) -> Any:
    """Plain Python data from Ansible's lazily templated containers, whose raw storage other libraries see."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def typed_service_plan(value: Any) -> Any:
    """One entry of vllm_fleet_plan.services, validated back into the typed plan."""
    require_package()
    from vllm_fleet.vm.planning.plan import ServicePlan

    return ServicePlan.model_validate(plain(value))


def typed_host_plan(services: Any, label_prefix: str) -> Any:
    require_package()
    from vllm_fleet.vm.planning.plan import HostPlan

    # Only the services matter to the host checks; the host's address is not needed there.
    return HostPlan.model_validate({"services": plain(services), "label_prefix": label_prefix, "address": ""})


def typed_weights_plan(value: Any) -> Any:
    """One entry of vllm_fleet_plan.weights, validated back into the typed plan."""
    require_package()
    from vllm_fleet.vm.planning.plan import WeightsPlan

    return WeightsPlan.model_validate(plain(value))
