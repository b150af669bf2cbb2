"""One model spec, validated once, for VMs (Ansible) and clusters (Pulumi).

    dep = validate_spec(data, VM_TARGET)   # raises SpecError listing every problem

The spec imports no target: each target (vllm_fleet.vm.rules.VM_TARGET, vllm_fleet.k8s.validation.CLUSTER_TARGET)
brings its own rules as a TargetRules.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from vllm_fleet.spec.adapters import Adapter, LoraLimits, adapter_rules
from vllm_fleet.spec.errors import SpecError, SpecIssue
from vllm_fleet.spec.gate import Gate, gate_rules
from vllm_fleet.spec.gateway import Gateway, GatewayClient, gateway_rules
from vllm_fleet.spec.model import Deployment, Engine, SecretRef, Service, Storage, Task
from vllm_fleet.spec.monitoring import Monitoring, ServiceSlo, monitoring_rules
from vllm_fleet.spec.rules import deployment_rules, target_rules
from vllm_fleet.spec.uri import StorageUri, Target, parse_storage_uri

_FORWARD = {"ServiceSlo": ServiceSlo, "Gate": Gate, "Adapter": Adapter, "LoraLimits": LoraLimits}
Service.model_rebuild(_types_namespace=_FORWARD)
Deployment.model_rebuild(_types_namespace={"Gateway": Gateway, "Monitoring": Monitoring, **_FORWARD})

__all__ = [
    "Adapter", "Deployment", "Engine", "Gate", "Gateway", "GatewayClient", "LoraLimits", "Monitoring", "SecretRef",
    "Service", "ServiceSlo",
    "SpecError", "SpecIssue", "Storage", "StorageUri", "Target", "TargetRules", "Task", "load_spec_file",
    "parse_storage_uri", "validate_spec",
]


@dataclass(frozen=True)
class TargetRules:
    """A target and the rules it adds to the shared ones (host port clashes, cluster settings, ...)."""

    target: Target
    rules: Callable[[Deployment], Iterable[SpecIssue]]


def validate_spec(data: Any, target: TargetRules, source: str = "spec") -> Deployment:
    if not isinstance(data, dict):
        raise SpecError([SpecIssue("(spec)", repr(type(data).__name__), "is not a mapping",
                                   "give a mapping with a 'services' list")], source)
    try:
        dep = Deployment.model_validate(data)
    except ValidationError as exc:
        from vllm_fleet.spec.errors import issues_from_validation_error

        issues = issues_from_validation_error(exc, model=Deployment)
        seen = {(i.path, i.problem) for i in issues}
        issues += [i for i in _rules_on_the_valid_services(data, target) if (i.path, i.problem) not in seen]
        raise SpecError(issues, source) from None
    issues = [*_rules(dep, target)]
    if issues:
        raise SpecError(issues, source)
    return dep


def _rules(dep: Deployment, target: TargetRules) -> Iterable[SpecIssue]:
    yield from deployment_rules(dep)
    if dep.gateway is not None:
        yield from gateway_rules(dep.gateway, dep.services)
    yield from monitoring_rules(dep.monitoring, dep.services)
    yield from gate_rules(dep.services)
    yield from adapter_rules(dep.services)
    yield from target_rules(dep, target.target)
    yield from target.rules(dep)


def _rules_on_the_valid_services(data: dict[str, Any], target: TargetRules) -> list[SpecIssue]:
    """When some services (or the gateway block) fail field validation, the cross-field rules still run on the
    parts that pass it, so that one run reports both kinds of problem; paths keep the services' own indexes."""
    import re

    raw = data.get("services")
    if not isinstance(raw, list):
        return []
    valid: list[tuple[int, Service]] = []
    for index, item in enumerate(raw):
        try:
            valid.append((index, Service.model_validate(item)))
        except ValidationError:
            continue
    if not valid:
        return []
    blocks: dict[str, Any] = {}
    for key, model in (("gateway", Gateway), ("monitoring", Monitoring)):
        try:
            blocks[key] = model.model_validate(data[key]) if isinstance(data.get(key), dict) else None
        except ValidationError:
            blocks[key] = None
    partial = Deployment.model_construct(services=[svc for _, svc in valid], **blocks)

    def original(text: str) -> str:
        return re.sub(r"services\[(\d+)\]", lambda m: f"services[{valid[int(m.group(1))][0]}]", text)

    return [SpecIssue(original(i.path), i.value, original(i.problem), i.fix) for i in _rules(partial, target)]


def load_spec_file(path: str | Path) -> Any:
    text = Path(path).read_text()
    data = yaml.safe_load(text)
    # A spec file may be a bare spec or an Ansible vars file that holds one.
    if isinstance(data, dict) and "vllm_fleet_spec" in data:
        return data["vllm_fleet_spec"]
    return data
