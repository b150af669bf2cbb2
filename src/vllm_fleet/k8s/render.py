"""The manifests the Pulumi program would create, as YAML, without the Pulumi CLI."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from vllm_fleet.k8s.deployment import deployment_manifests
from vllm_fleet.k8s.manifests import ConfigSecret, Manifest
from vllm_fleet.k8s.validation import CONFIG_NAMESPACE, SPEC_KEY
from vllm_fleet.spec import Deployment, SpecError, SpecIssue


def rendered_manifests(dep: Deployment) -> list[Manifest]:
    """Plain data: every secret that would come from Pulumi config is a marker string, never a value."""
    return [_plain(m) for m in deployment_manifests(dep)]


def _plain(value: Any) -> Any:
    if isinstance(value, ConfigSecret):
        return value.marker()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def config_secret_keys(dep: Deployment) -> list[str]:
    keys: list[str] = []
    for m in deployment_manifests(dep):
        for v in m.get("stringData", {}).values():
            if isinstance(v, ConfigSecret) and v.key not in keys:
                keys.append(v.key)
    return keys


def to_yaml(manifests: list[Manifest]) -> str:
    return yaml.safe_dump_all(manifests, sort_keys=False, default_flow_style=False)


def stack_spec(path: Path) -> Any:
    """The spec held in a stack config file (Pulumi.<stack>.yaml) under vllm-fleet:spec."""
    data = yaml.safe_load(path.read_text()) or {}
    key = f"{CONFIG_NAMESPACE}:{SPEC_KEY}"
    config = data.get("config") if isinstance(data, dict) else None
    if not isinstance(config, dict) or key not in config:
        raise SpecError([SpecIssue("config", repr(key), f"is not set in {path}",
                                   f"put the spec under config: {key}: in the stack file")], str(path))
    return config[key]


def write(manifests: list[Manifest], out_dir: Path) -> list[Path]:
    """One file per group: namespaces, then one file per service, then the Gateway listeners' limits."""
    out_dir.mkdir(parents=True, exist_ok=True)
    groups: dict[str, list[Manifest]] = {}
    for m in manifests:
        labels = m["metadata"]["labels"]
        group = "namespaces" if m["kind"] == "Namespace" else labels.get("vllm-fleet/service", "gateway")
        groups.setdefault(group, []).append(m)
    paths = []
    for i, (group, items) in enumerate(groups.items()):
        path = out_dir / f"{i:02d}-{group}.yaml"
        path.write_text(to_yaml(items))
        paths.append(path)
    return paths
