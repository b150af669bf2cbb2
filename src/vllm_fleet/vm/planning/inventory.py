"""Read an Ansible inventory and plan its fleet, without contacting any host."""

from __future__ import annotations

import os
from pathlib import Path

from vllm_fleet.spec import SpecError, SpecIssue
from vllm_fleet.vm.planning.fleet import (
    GROUPS,
    SERVE_GROUP,
    SPEC_VAR,
    FleetPlan,
    InventoryError,
    InventoryHost,
    host_address,
    plan_fleet,
)


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


def check_inventory(inventory: Path, *, secrets: bool) -> FleetPlan:
    """The fleet plan of an inventory: every serving host's spec validated (and, for a run, its secret
    references), the gateway and the monitoring planned; raise InventoryError.

    The whole inventory is planned even when a run is limited to some hosts: the gateway's pools and the
    monitoring's targets are the fleet's, whichever hosts a run changes."""
    if not inventory.exists():
        raise InventoryError([SpecError([SpecIssue("--inventory", repr(str(inventory)), "does not exist",
                                                   "give an inventory file or directory, e.g. inventories/local")],
                                        "inventory")])
    # Flag and sizing checks always run; secret references are checked only for a run.
    return plan_fleet(group_hosts(inventory, None, GROUPS), os.environ if secrets else None)
