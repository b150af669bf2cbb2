"""Checks of what the serve stage will run against a host's real state (its /dev/shm, GPUs and containers), before
anything on it changes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from vllm_fleet.units import spec_size_mib
from vllm_fleet.vm.planning.checks import MIN_SHM_MIB
from vllm_fleet.vm.planning.plan import HostPlan, gpu_summary


def host_problems(plan: HostPlan, *, mounts: list[Mapping[str, Any]], ipc_host: bool,
                  containers: list[Mapping[str, Any]], gpu_facts: Mapping[str, Any] | None) -> list[str]:
    """Everything on this host that would stop the planned services from starting, read before any change:
    /dev/shm, GPU ids and counts against the prepare stage's gpu_facts, and ports other containers hold."""
    return [*_shm_problems(plan, mounts, ipc_host), *_gpu_problems(plan, gpu_facts),
            *_port_conflicts(plan, containers)]


def _shm_problems(plan: HostPlan, mounts: list[Mapping[str, Any]], ipc_host: bool) -> list[str]:
    """With ipc_mode host, every container shares the host's /dev/shm: it must be at least the largest
    shm_size asked for (and vLLM's floor). Without it, docker gives each container its own shm_size, which the
    controller-side check already held against the floor."""
    if not ipc_host:
        return []
    shm = next((m for m in mounts if m.get("mount") == "/dev/shm"), None)
    have = int(shm["size_total"]) // 2**20 if shm else 0
    want = max([MIN_SHM_MIB, *(spec_size_mib(s.shm_size) for s in plan.services)])
    if have >= want:
        return []
    return [f"/dev/shm on this host is {have} MiB but the services need {want} MiB with ipc_mode host "
            "(vLLM refuses to start and the container restarts in a loop); enlarge /dev/shm "
            "(mount -o remount,size=... /dev/shm) or set vllm_server_ipc_host: false to give each "
            "container its own shm_size"]


def _gpu_problems(plan: HostPlan, gpu_facts: Mapping[str, Any] | None) -> list[str]:
    """Device ids and counts against the host's real GPUs (the prepare stage's gpu_facts, by their summary)."""
    gpus = gpu_summary((gpu_facts or {}).get("summary"))
    if gpus is None:
        return []
    count = gpus.count
    problems = []
    for s in plan.services:
        if s.accelerator != "nvidia":
            continue
        bad = [i for i in s.device_ids or [] if i >= count]
        if s.gpu_count > count:
            problems.append(f"service {s.name}: asks for {s.gpu_count} GPU(s); this host has {count}")
        elif bad:
            problems.append(f"service {s.name}: GPU id(s) {bad} do not exist on this host, which has {count} "
                            "GPU(s) (counts take the lowest ids the other services leave free)")
    return problems


def _port_conflicts(plan: HostPlan, containers: list[Mapping[str, Any]]) -> list[str]:
    """Host ports the services need that a container not managed by vllm-fleet already publishes."""
    ours = {n for s in plan.services for n in (s.container.name, s.container.candidate, s.container.fallback)}
    wanted = {s.port: s.name for s in plan.services}
    problems = []
    for c in containers:
        names = [str(n).lstrip("/") for n in c.get("Names") or []]
        labels = c.get("Labels") or {}
        if any(n in ours for n in names) or labels.get(f"{plan.label_prefix}.managed"):
            continue
        for port in c.get("Ports") or []:
            public = port.get("PublicPort")
            if public in wanted:
                problems.append(f"port {public} of service {wanted[public]} is already published by container "
                                f"{', '.join(names) or c.get('Id', '?')[:12]}, which vllm-fleet does not manage; "
                                "stop it or give the service another port")
    return problems
