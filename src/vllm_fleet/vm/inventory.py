"""Read and check the spec each host of an Ansible inventory gets, without contacting any host."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vllm_fleet.spec import SpecError, SpecIssue
from vllm_fleet.vm.gateway import GATEWAY_GROUP, fleet_gateway
from vllm_fleet.vm.monitoring import MONITORING_GROUP, exporter_host, fleet_monitoring
from vllm_fleet.vm.plan import HostPlan, plan_for_host

SPEC_VAR = "vllm_fleet_spec"
SERVE_GROUP = "vllm_hosts"


@dataclass(frozen=True)
class InventoryHost:
    host: str
    spec: Any  # raw, still to be validated
    address: str
    variables: dict[str, Any]


def host_address(variables: Mapping[str, Any], hostname: str) -> str:
    """The address clients reach a host's services at: vllm_fleet_address, else ansible_host, else its name."""
    return str(variables.get("vllm_fleet_address") or variables.get("ansible_host") or hostname)


def group_hosts(inventory: str | Path, limit: str | None = None,
                groups: tuple[str, ...] = (SERVE_GROUP,)) -> dict[str, list[InventoryHost]]:
    """Every host of each group (absent groups give none), with the raw spec its variables give it; the inventory
    is read once for all the groups."""
    from ansible.inventory.manager import InventoryManager
    from ansible.parsing.dataloader import DataLoader
    from ansible.vars.manager import VariableManager

    loader = DataLoader()
    inv = InventoryManager(loader=loader, sources=[str(inventory)])
    if limit:
        inv.subset(limit)
    variables = VariableManager(loader=loader, inventory=inv)
    out: dict[str, list[InventoryHost]] = {}
    for group in groups:
        out[group] = []
        for host in inv.get_hosts(pattern=group) if group in inv.groups else []:
            hv = variables.get_vars(host=host, include_hostvars=False)
            out[group].append(InventoryHost(host.name, hv.get(SPEC_VAR), host_address(hv, host.name), dict(hv)))
    return out


def host_specs(inventory: str | Path, limit: str | None = None) -> list[InventoryHost]:
    """Every host in the serving group with the raw spec its variables give it."""
    return group_hosts(inventory, limit)[SERVE_GROUP]


class InventoryError(Exception):
    """Problems in the specs of one or more hosts (one SpecError each); nothing was contacted."""

    def __init__(self, errors: list[SpecError]) -> None:
        super().__init__("\n".join(e.render() for e in errors))
        self.errors = errors


def check_inventory(inventory: Path, limit: str | None = None, *, secrets: bool) -> dict[str, HostPlan]:
    """Validate every serving host's spec (and, for a run, its secret references); raise InventoryError."""

    def bad(problem: str, fix: str) -> InventoryError:
        return InventoryError([SpecError([SpecIssue("--inventory", repr(str(inventory)), problem, fix)],
                                         "inventory")])

    if not inventory.exists():
        raise bad("does not exist", "give an inventory file or directory, e.g. inventories/local")
    found = group_hosts(inventory, limit, (SERVE_GROUP, GATEWAY_GROUP, MONITORING_GROUP))
    hosts = found[SERVE_GROUP]
    if not hosts:
        raise bad(f"has no hosts in group '{SERVE_GROUP}'", f"put the GPU hosts in a group named {SERVE_GROUP}")
    errors, plans = [], {}
    for h in hosts:
        source = f"{SPEC_VAR} of host {h.host}"
        if h.spec is None:
            errors.append(SpecError([SpecIssue(SPEC_VAR, "undefined", "is not set for this host",
                                               f"define {SPEC_VAR} in group_vars/{SERVE_GROUP}.yml")], source))
            continue
        try:
            # Flag and sizing checks always run; secret references are checked only for a run.
            plans[h.host] = plan_for_host(h.spec, h.address, source=source, host_name=h.host,
                                          environ=os.environ if secrets else None, variables=h.variables)
        except SpecError as exc:
            errors.append(exc)
    if errors:
        raise InventoryError(errors)
    try:
        # The fleet's gateway (pools, scopes, reachability of every backend) and monitoring (agreement, reachability
        # of every target) are checked before any host is touched.
        gateway = fleet_gateway(plans, {g.host: g.address for g in found[GATEWAY_GROUP]})
        every = {h.host: exporter_host(h.variables, h.address) for group in found.values() for h in group}
        fleet_monitoring(plans, gateway, [m.host for m in found[MONITORING_GROUP]], every)
    except SpecError as exc:
        raise InventoryError([exc]) from None
    return plans
