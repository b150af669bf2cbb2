"""One model spec, validated once, for VMs (Ansible) and clusters (Pulumi).

    dep = validate_spec(data, Target.VM)   # raises SpecError listing every problem
"""

from __future__ import annotations

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
    "Target", "Task", "load_spec_file", "parse_storage_uri", "validate_spec",
]


def validate_spec(data: Any, target: Target | str, source: str = "spec") -> Deployment:
    target = Target(target)
    if not isinstance(data, dict):
        raise SpecError([SpecIssue("(spec)", repr(type(data).__name__), "is not a mapping",
                                   "give a mapping with a 'services' list")], source)
    try:
        dep = Deployment.model_validate(data)
    except ValidationError as exc:
        from vllm_fleet.spec.errors import issues_from_validation_error

        raise SpecError(issues_from_validation_error(exc), source) from None
    issues = [*deployment_rules(dep), *target_rules(dep, target)]
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
