"""The one writer of sandbox-host inventories, for the tests and the benchmarks.

A sandbox host is a container of the test world's engine with an SSH server; Ansible reaches it as production
reaches a VM, over SSH (`vllm_fleet.sandbox.hosts.ssh_vars`). `write_inventory` lays out the groups the collection
reads (vllm_hosts, and vllm_gateways and vllm_monitoring when given), `write_sandbox_inventory` does so with each
running sandbox host's address and key, and `cpu_host` gives the variables of a CPU serving host: no NVIDIA roles,
Debian's Docker, the vLLM image loaded from an archive on the host or already present.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from vllm_fleet.sandbox import hosts as sandbox_hosts

SSH = "ssh"
SERVE_GROUP, GATEWAY_GROUP, MONITORING_GROUP = "vllm_hosts", "vllm_gateways", "vllm_monitoring"


def cpu_host(address: str | None = None, backend_address: str | None = None, *, image_archive: str | None = None,
             **more: Any) -> dict[str, Any]:
    """A CPU serving host's variables: the prepare stage skips the NVIDIA roles and installs Debian's Docker; the
    vLLM image comes from `image_archive` on the host (a docker-save file), or is already present without it."""
    found: dict[str, Any] = {"vllm_fleet_nvidia": False, "docker_source": "distribution"}
    if address is not None:
        found["vllm_fleet_address"] = address
    if backend_address is not None:
        found["vllm_fleet_backend_address"] = backend_address
    found |= ({"vllm_server_image_source": "archive", "vllm_server_image_archive_remote": image_archive}
              if image_archive else {"vllm_server_image_source": "present"})
    return found | more


def write_inventory(path: Path, hosts: Mapping[str, Mapping[str, Any]] | Iterable[str], spec: Any = None, *,
                    connection: str = SSH, gateways: Mapping[str, Any] | None = None,
                    monitoring: Mapping[str, Any] | None = None, group_vars: Mapping[str, Any] | None = None,
                    **host_vars: Any) -> Path:
    """An inventory of serving hosts (names, or names with their own variables) reached through `connection`,
    the spec as their group's `vllm_fleet_spec`, and optional gateway and monitoring groups ({host: None, ...}
    plus a "vars" key for the group's variables)."""
    named = hosts if isinstance(hosts, Mapping) else {name: {} for name in hosts}
    serving_vars: dict[str, Any] = dict(group_vars or {})
    if spec is not None:
        serving_vars["vllm_fleet_spec"] = spec
    data: dict[str, Any] = {SERVE_GROUP: {"hosts": {
        name: {"ansible_connection": connection, "ansible_user": "root", **host_vars, **(own or {})}
        for name, own in named.items()}}}
    if serving_vars:
        data[SERVE_GROUP]["vars"] = serving_vars
    for group, given in ((GATEWAY_GROUP, gateways), (MONITORING_GROUP, monitoring)):
        if given is not None:
            members = {h: None for h in given if h != "vars"}
            data[group] = {"hosts": members, **({"vars": dict(given["vars"])} if given.get("vars") else {})}
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def write_sandbox_inventory(path: Path, hosts: Mapping[str, Mapping[str, Any] | None] | Iterable[str],
                            spec: Any = None, **kwargs: Any) -> Path:
    """`write_inventory` over SSH to sandbox hosts: each running one with its address, the sandbox's key and a
    connection socket of its own (its own variables win); a name no host has is left as it is, a name that does
    not resolve (an unreachable host)."""
    named = hosts if isinstance(hosts, Mapping) else {name: {} for name in hosts}
    reached = {name: {**sandbox_hosts.ssh_vars(name, missing_ok=True), **(own or {})} for name, own in named.items()}
    return write_inventory(path, reached, spec, connection=SSH, **kwargs)
