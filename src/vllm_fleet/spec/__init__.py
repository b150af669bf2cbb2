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

from vllm_fleet.spec.errors import SpecError, SpecIssue
from vllm_fleet.spec.model import Deployment, Engine, SecretRef, Service, Storage, Task
from vllm_fleet.spec.rules import deployment_rules, target_rules
from vllm_fleet.spec.uri import StorageUri, Target, parse_storage_uri

__all__ = [
    "Deployment", "Engine", "SecretRef", "Service", "SpecError", "SpecIssue", "Storage", "StorageUri",
    "Target", "TargetRules", "Task", "load_spec_file", "parse_storage_uri", "validate_spec",
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

        raise SpecError(issues_from_validation_error(exc, model=Deployment), source) from None
    issues = [*deployment_rules(dep), *target_rules(dep, target.target), *target.rules(dep)]
    if issues:
        raise SpecError(issues, source)
    return dep


def load_spec_file(path: str | Path) -> Any:
    text = Path(path).read_text()
    data = yaml.safe_load(text)
    # A spec file may be a bare spec or an Ansible vars file that holds one.
    if isinstance(data, dict) and "vllm_fleet_spec" in data:
        return data["vllm_fleet_spec"]
    return data
