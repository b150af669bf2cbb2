"""The VM target's own spec rules: every service of a spec runs on each host it is assigned to."""

from __future__ import annotations

from collections.abc import Iterator

from vllm_fleet.spec import Deployment, SpecIssue, Target, TargetRules
from vllm_fleet.spec.errors import show_value


def host_rules(dep: Deployment) -> Iterator[SpecIssue]:
    """Ports and GPU ids must not clash between the services of one host."""
    ports: dict[int, int] = {}
    devices: dict[int, int] = {}
    for i, svc in enumerate(dep.services):
        if svc.port in ports:
            yield SpecIssue(f"services[{i}].port", show_value(svc.port),
                            f"is already used by services[{ports[svc.port]}] ({dep.services[ports[svc.port]].name}) "
                            "on the same host", "give each service on a host its own port")
        ports.setdefault(svc.port, i)
        for dev in svc.device_ids or []:
            if dev in devices:
                yield SpecIssue(f"services[{i}].gpus", show_value(svc.gpus),
                                f"GPU {dev} is already given to services[{devices[dev]}] "
                                f"({dep.services[devices[dev]].name}) on the same host",
                                "give each service its own GPUs")
            devices.setdefault(dev, i)


VM_TARGET = TargetRules(Target.VM, host_rules)
