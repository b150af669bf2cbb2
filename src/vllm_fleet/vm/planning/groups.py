"""Engine groups: a service of `nodes: N` served by one vLLM engine across N serving hosts (tensor parallel within a
host, pipeline parallel across hosts), placed and checked on the controller before any host is touched.

Placement is stable across runs: the hosts that carry the service form its groups in the inventory's order, N at
a time, unless `vllm_fleet_engine_groups` (a variable of the serving group: service name -> lists of host names)
lists them. The first host of a group is its leader. Every member must carry the same service entry and have the
same GPUs (count and memory, from the prepare stage's gpu_facts); a model that one host holds is refused with the
sizes for one host, and a group whose hosts cannot hold it with the numbers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from vllm_fleet.sizing import SizingError, size, size_group
from vllm_fleet.spec import Deployment, Service, SpecIssue
from vllm_fleet.spec.adapters import derived_limits
from vllm_fleet.spec.errors import show_value
from vllm_fleet.vm.planning.checks import model_config
from vllm_fleet.vm.planning.plan import PlanModel, gpu_summary

GROUPS_VAR = "vllm_fleet_engine_groups"


class EngineGroup(PlanModel):
    """One engine of a service across hosts: its members (the leader first) and its parallel sizes; the context
    length when the plan could size it (the hosts' GPUs and the model's config.json known)."""

    service: str
    index: int
    members: list[str]
    tensor_parallel_size: int
    pipeline_parallel_size: int
    max_model_len: int | None = None

    @property
    def name(self) -> str:
        return f"{self.service}#{self.index}"

    @property
    def leader(self) -> str:
        return self.members[0]


@dataclass(frozen=True)
class ServingHost:
    host: str
    deployment: Deployment
    variables: Mapping[str, Any]


def _service(d: Deployment, name: str) -> tuple[int, Service] | None:
    return next(((i, s) for i, s in enumerate(d.services) if s.name == name), None)


def _explicit(hosts: Sequence[ServingHost], name: str, carriers: list[str]
              ) -> tuple[list[list[str]] | None, list[SpecIssue]]:
    """The groups `vllm_fleet_engine_groups` lists for service `name`, checked; None when it lists none."""
    given = (hosts[0].variables.get(GROUPS_VAR) or {}) if hosts else {}
    if not isinstance(given, Mapping):
        return None, [SpecIssue(GROUPS_VAR, show_value(given), "is not a mapping of service names to host lists",
                                f"write it as {{{name}: [[host-a, host-b], ...]}}")]
    listed = given.get(name)
    if listed is None:
        return None, []
    at = f"{GROUPS_VAR}.{name}"
    if not isinstance(listed, list) or not all(isinstance(g, list) and all(isinstance(h, str) for h in g)
                                               for g in listed):
        return None, [SpecIssue(at, show_value(listed), "is not a list of lists of host names",
                                "write it as [[host-a, host-b], [host-c, host-d]]")]
    issues: list[SpecIssue] = []
    seen: dict[str, int] = {}
    for i, group in enumerate(listed):
        for h in group:
            if h not in carriers:
                issues.append(SpecIssue(f"{at}[{i}]", show_value(h), f"is not a serving host whose spec has {name}",
                                        f"list only hosts of {', '.join(carriers) or '(none)'}"))
            elif h in seen:
                issues.append(SpecIssue(f"{at}[{i}]", show_value(h), f"is already in group {seen[h]} of {name}",
                                        "put each host in one group"))
            seen.setdefault(h, i)
    left = [h for h in carriers if h not in seen]
    if left:
        issues.append(SpecIssue(at, show_value(listed), f"leaves out {', '.join(left)}, whose spec has {name}",
                                f"put them in a group, or take {name} out of their spec"))
    return [list(g) for g in listed], issues


def place_groups(hosts: Sequence[ServingHost]) -> tuple[list[EngineGroup], list[SpecIssue]]:
    """Every engine group of the fleet (`hosts`: the serving hosts in inventory order), and the problems found
    placing and sizing them."""
    groups: list[EngineGroup] = []
    issues: list[SpecIssue] = []
    names = list(dict.fromkeys(s.name for h in hosts for s in h.deployment.services if s.nodes > 1))
    by_host = {h.host: h for h in hosts}
    for name in names:
        carriers = [h.host for h in hosts if _service(h.deployment, name)]
        first = _service(by_host[carriers[0]].deployment, name)
        assert first is not None
        i, svc = first
        at = f"services[{i}]"
        n = svc.nodes
        explicit, bad = _explicit(hosts, name, carriers)
        issues += bad
        if bad:
            continue
        if explicit is None:
            if len(carriers) < n:
                issues.append(SpecIssue(f"{at}.nodes", show_value(n),
                                        f"asks for a group of {n} hosts, but only {len(carriers)} serving host(s) "
                                        f"have {name} in their spec: {', '.join(carriers)}",
                                        f"give {n} serving hosts this spec, or lower nodes"))
                continue
            if len(carriers) % n:
                left = carriers[len(carriers) - len(carriers) % n:]
                issues.append(SpecIssue(f"{at}.nodes", show_value(n),
                                        f"forms groups of {n} from the {len(carriers)} hosts that have {name}, "
                                        f"leaving {', '.join(left)} in no group",
                                        f"give {name} to a multiple of {n} hosts, or list the groups in "
                                        f"{GROUPS_VAR}"))
                continue
            explicit = [carriers[k:k + n] for k in range(0, len(carriers), n)]
        for index, members in enumerate(explicit):
            found = _group(name, index, members, n, by_host, at)
            if isinstance(found, EngineGroup):
                groups.append(found)
            else:
                issues += found
    return groups, issues


def _group(name: str, index: int, members: list[str], n: int, by_host: Mapping[str, ServingHost], at: str
           ) -> EngineGroup | list[SpecIssue]:
    """One group, checked: its size, the same service entry and the same GPUs on every member, and its sizing."""
    label = f"group {index} of {name} ({', '.join(members)})"
    if len(members) != n:
        return [SpecIssue(f"{GROUPS_VAR}.{name}[{index}]", show_value(members),
                          f"has {len(members)} host(s), but {name} has nodes: {n}",
                          f"list {n} hosts in each group of {name}")]
    leader = by_host[members[0]]
    found = _service(leader.deployment, name)
    assert found is not None
    svc = found[1]
    issues = []
    for h in members[1:]:
        other = _service(by_host[h].deployment, name)
        if other is None or other[1] != svc:
            issues.append(SpecIssue(f"{at} of host {h}", "(differs)",
                                    f"is not the {name} entry of {members[0]}, the leader of {label}",
                                    "give every host of a group the same service entry (in group_vars)"))
    gpus = {h: gpu_summary(by_host[h].variables.get("vllm_fleet_gpus")) for h in members}
    known = {h: g for h, g in gpus.items() if g is not None}
    shapes = {(g.count, g.memory_mib) for g in known.values()}
    if len(shapes) > 1:
        issues.append(SpecIssue(f"{at}.nodes", show_value(svc.nodes),
                                f"puts hosts with different GPUs in {label}: " + ", ".join(
                                    f"{h} {g.count} x {g.memory_mib} MiB" for h, g in known.items()),
                                "group hosts of one kind (list them in vllm_fleet_engine_groups), or use "
                                "separate services"))
    if issues:
        return issues
    assert isinstance(svc.tensor_parallel_size, int)  # auto is refused for groups
    group = EngineGroup(service=name, index=index, members=list(members),
                        tensor_parallel_size=svc.tensor_parallel_size,
                        pipeline_parallel_size=svc.pipeline_parallel_size)
    config = model_config(svc, leader.variables.get("vllm_fleet_model_configs") or {})
    summary = known.get(members[0])
    if svc.accelerator.value != "nvidia" or config is None or summary is None or not summary.memory_mib:
        return group
    lora = derived_limits(svc.adapters, svc.lora) if svc.adapters else (0, 0)
    utilization = svc.engine.gpu_memory_utilization
    try:
        one = size(config, gpu_mib=summary.memory_mib, gpu_count=min(summary.count, svc.gpu_count),
                   utilization=utilization, max_model_len=svc.engine.max_model_len, lora=lora)
        return [SpecIssue(f"{at}.nodes", show_value(svc.nodes),
                          f"spans hosts, but one host holds the model: tensor_parallel_size "
                          f"{one.tensor_parallel_size} with max_model_len {one.max_model_len} on {members[0]}'s "
                          f"{summary.count} x {summary.memory_mib} MiB",
                          f"serve it on one host: nodes: 1, tensor_parallel_size: {one.tensor_parallel_size}, "
                          f"pipeline_parallel_size: 1, gpus: {one.tensor_parallel_size}")]
    except SizingError:
        pass
    try:
        result = size(config, gpu_mib=summary.memory_mib, gpu_count=svc.gpu_count, utilization=utilization,
                      max_model_len=svc.engine.max_model_len, lora=lora,
                      tensor_parallel_size=svc.tensor_parallel_size,
                      pipeline_parallel_size=svc.pipeline_parallel_size)
    except SizingError as exc:
        hint = "use more hosts in the group, larger GPUs, quantization, or a lower max_model_len"
        try:
            need = size_group(config, gpu_mib=summary.memory_mib, gpus_per_node=svc.gpu_count, max_nodes=64,
                              utilization=utilization, max_model_len=svc.engine.max_model_len, lora=lora)
            hint = (f"it fits {need.nodes} hosts: nodes: {need.nodes}, tensor_parallel_size: "
                    f"{need.result.tensor_parallel_size}, pipeline_parallel_size: {need.nodes}")
        except SizingError:
            pass
        return [SpecIssue(f"{at}.nodes", show_value(svc.nodes), f"{label} does not hold the model: {exc}", hint)]
    return group.model_copy(update={"max_model_len": result.max_model_len})
