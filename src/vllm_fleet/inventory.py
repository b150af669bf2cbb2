"""Read the spec each host of an Ansible inventory gets, without contacting any host."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

SPEC_VAR = "vllm_fleet_spec"
SERVE_GROUP = "vllm_hosts"


@dataclass(frozen=True)
class HostSpec:
    host: str
    spec: Any  # raw, still to be validated
    address: str
    variables: dict[str, Any]


def host_specs(inventory: str | Path, limit: str | None = None) -> list[HostSpec]:
    """Every host in the serving group with the raw spec its variables give it."""
    from ansible.inventory.manager import InventoryManager
    from ansible.parsing.dataloader import DataLoader
    from ansible.vars.manager import VariableManager

    loader = DataLoader()
    inv = InventoryManager(loader=loader, sources=[str(inventory)])
    if limit:
        inv.subset(limit)
    variables = VariableManager(loader=loader, inventory=inv)
    out = []
    for host in inv.get_hosts(pattern=SERVE_GROUP):
        hv = variables.get_vars(host=host, include_hostvars=False)
        address = hv.get("vllm_fleet_address") or hv.get("ansible_host") or host.name
        out.append(HostSpec(host.name, hv.get(SPEC_VAR), str(address), dict(hv)))
    return out
