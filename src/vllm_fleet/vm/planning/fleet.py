"""The fleet plan: every serving host's plan, the gateway's and the monitoring's, computed once on the controller.

`plan_fleet` takes the hosts of the inventory's three groups (serving, gateway, monitoring) with their variables,
validates each serving host's spec, checks the fleet-wide blocks (`gateway:`, `monitoring:`) once, and returns the
`FleetPlan` every play of the collection reads. `vllm-fleet` computes it before a run and hands it to the playbook
(`CLI_PLAN_VAR`); a playbook run without the CLI computes it in its first play (the `fleet_plan` action, once).
Problems raise SpecError (one host's spec) or InventoryError (several, or the fleet's), before any host is touched.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from vllm_fleet.spec import Deployment, Gateway, Monitoring, SpecError, SpecIssue, validate_spec
from vllm_fleet.vm.planning.checks import serving_issues
from vllm_fleet.vm.planning.gateway import (
    GATEWAY_GROUP,
    GATEWAY_PLAN_VAR,
    PKI_DIR,
    PKI_DIR_VAR,
    GatewayPlan,
    fleet_gateway,
)
from vllm_fleet.vm.planning.groups import EngineGroup, ServingHost, place_groups
from vllm_fleet.vm.planning.listeners import Listener, fleet_listeners, trusted_sources
from vllm_fleet.vm.planning.monitoring import (
    MONITORING_GROUP,
    MONITORING_PLAN_VAR,
    MonitoringPlan,
    exporter_host,
    fleet_monitoring,
)
from vllm_fleet.vm.planning.plan import (
    BACKEND_ADDRESS_VAR,
    CONTAINER_PREFIX,
    LOOPBACK,
    HostPlan,
    PlanModel,
    Settled,
    backend_address,
    gpu_summary,
    host_plan,
)
from vllm_fleet.vm.planning.rules import VM_TARGET
from vllm_fleet.vm.planning.secrets import unresolved_secrets

SPEC_VAR = "vllm_fleet_spec"
SERVE_GROUP = "vllm_hosts"
GROUPS = (SERVE_GROUP, GATEWAY_GROUP, MONITORING_GROUP)
# The extra variable through which `vllm-fleet` hands a playbook the fleet plan it has computed and checked, so
# that the fleet_plan action takes it instead of planning again.
CLI_PLAN_VAR = "vllm_fleet_cli_plan"

Block = TypeVar("Block", Gateway, Monitoring)


@dataclass(frozen=True)
class InventoryHost:
    host: str
    spec: Any  # raw, still to be validated
    address: str
    variables: Mapping[str, Any]


def host_address(variables: Mapping[str, Any], hostname: str) -> str:
    """The address clients reach a host's services at: vllm_fleet_address, else ansible_host, else its name."""
    return str(variables.get("vllm_fleet_address") or variables.get("ansible_host") or hostname)


def validated_host_plan(
    raw_spec: Any,
    host_address: str,
    source: str = "spec",
    environ: Mapping[str, str] | None = None,
    variables: Mapping[str, Any] | None = None,
    resolve_auto: bool = False,
    host_name: str | None = None,
) -> tuple[Deployment, HostPlan]:
    """Validate a host's raw spec and its secret references (raising SpecError); return it and the host's plan.

    With `variables` the serving checks run and sized values are filled in; a tensor_parallel_size auto that
    cannot be sized yet stays `auto` in the plan unless `resolve_auto` asks for it to be settled now. Container
    names take the host variable vllm_fleet_container_prefix (default "vllm-").
    """
    dep = validate_spec(raw_spec, VM_TARGET, source=source)
    if environ is not None and variables is not None:
        missing = list(unresolved_secrets(dep, environ, variables))
        if missing:
            raise SpecError(missing, source)
    settled: dict[str, Settled] = {}
    if variables is not None:
        issues, settled = serving_issues(dep, variables, resolve_auto=resolve_auto)
        if issues:
            raise SpecError(issues, source)
    prefix = str((variables or {}).get("vllm_fleet_container_prefix") or CONTAINER_PREFIX)
    gpus = gpu_summary((variables or {}).get("vllm_fleet_gpus"))
    mig = frozenset(gpus.mig_gpus if gpus else [])
    host = str((variables or {}).get("inventory_hostname") or host_name or host_address)
    return dep, host_plan(dep, host_address, settled, prefix, mig, host, backend_address(variables))


def plan_for_host(raw_spec: Any, host_address: str, **kwargs: Any) -> HostPlan:
    """One host's plan alone (validated_host_plan's arguments), without the fleet's blocks."""
    return validated_host_plan(raw_spec, host_address, **kwargs)[1]


class FleetPlan(PlanModel):
    """What every play reads: each serving host's plan, the gateway's and the monitoring's (None without them),
    and every model name a client can call (base models and adapters)."""

    hosts: dict[str, HostPlan]
    # Every host's internal address (vllm_fleet_backend_address, else loopback), serving, gateway or monitoring:
    # where its gateway metrics listener, exporters, Prometheus and Alertmanager listen.
    internal_addresses: dict[str, str] = {}
    gateway: GatewayPlan | None = None
    monitoring: MonitoringPlan | None = None
    models: list[str]
    # Every listener of every host: where it binds, who may reach it (the firewall's sources), how it authenticates.
    listeners: list[Listener] = []

    def facts(self) -> dict[str, Any]:
        """The plan as the facts the roles read (vllm_fleet_plan, each host's own, is set from `host_plans`)."""
        return {
            "vllm_fleet_host_plans": {h: p.model_dump(mode="json") for h, p in self.hosts.items()},
            GATEWAY_PLAN_VAR: self.gateway.model_dump(mode="json") if self.gateway else None,
            MONITORING_PLAN_VAR: self.monitoring.model_dump(mode="json") if self.monitoring else None,
            "vllm_fleet_models": list(self.models),
            "vllm_fleet_internal_addresses": dict(self.internal_addresses),
            "vllm_fleet_listeners": [x.model_dump(mode="json") for x in self.listeners],
        }


class InventoryError(Exception):
    """Problems in the specs of one or more hosts, or in the fleet's blocks (one SpecError each); nothing was
    contacted."""

    def __init__(self, errors: list[SpecError]) -> None:
        super().__init__("\n".join(e.render() for e in errors))
        self.errors = errors


def fleet_block(name: str, blocks: Mapping[str, Block | None]) -> tuple[Block | None, list[SpecIssue]]:
    """The fleet's one `name:` block: hosts may carry it or not, but those that do must carry the same one."""
    given = {h: b for h, b in blocks.items() if b is not None}
    if not given:
        return None, []
    first, block = next(iter(given.items()))
    issues = [SpecIssue(f"{SPEC_VAR}.{name} of {host}", "(differs)",
                        f"is not the {name} block host {first} has; the fleet has one {name}",
                        f"give the {name} block once (in group_vars/all), or the same block on every host that "
                        "carries one")
              for host, other in given.items() if other != block]
    return block, issues


def plan_fleet(found: Mapping[str, list[InventoryHost]], environ: Mapping[str, str] | None = None) -> FleetPlan:
    """Validate every serving host's spec (its secret references too when `environ` is given), check the
    fleet-wide blocks once, and plan the gateway and the monitoring; raise InventoryError."""
    serving = found.get(SERVE_GROUP, [])
    if not serving:
        raise InventoryError([SpecError([SpecIssue(f"group {SERVE_GROUP}", "(empty)", "has no hosts",
                                                   f"put the GPU hosts in a group named {SERVE_GROUP}")],
                                        "inventory")])
    errors: list[SpecError] = []
    plans: dict[str, HostPlan] = {}
    deployments: dict[str, Deployment] = {}
    for h in serving:
        source = f"{SPEC_VAR} of host {h.host}"
        if h.spec is None:
            errors.append(SpecError([SpecIssue(SPEC_VAR, "undefined", "is not set for this host",
                                               f"define {SPEC_VAR} in group_vars/{SERVE_GROUP}.yml")], source))
            continue
        try:
            deployments[h.host], plans[h.host] = validated_host_plan(
                h.spec, h.address, source=source, host_name=h.host, environ=environ, variables=h.variables)
        except SpecError as exc:
            errors.append(exc)
    if errors:
        raise InventoryError(errors)
    gateway_block, issues = fleet_block("gateway", {h: d.gateway for h, d in deployments.items()})
    groups, more = place_groups([ServingHost(h.host, deployments[h.host], h.variables) for h in serving])
    issues += more + [_not_started_yet(g) for g in groups]
    monitoring_block, more = fleet_block("monitoring", {h: d.monitoring for h, d in deployments.items()})
    issues += more
    gateway = monitoring = None
    # Every host of the fleet, serving, gateway or monitoring, and its internal address (where the gateway's
    # metrics and peers, the exporters, Prometheus and Alertmanager listen).
    every = {h.host: h for group in GROUPS for h in found.get(group, [])}
    internal = {name: str(h.variables.get(BACKEND_ADDRESS_VAR) or LOOPBACK) for name, h in every.items()}
    trusted: dict[str, list[str]] = {}
    for name, h in every.items():
        trusted[name], bad = trusted_sources(name, h.variables)
        issues += bad
    try:
        gateways = found.get(GATEWAY_GROUP, [])
        pki_dir = str((gateways[0].variables.get(PKI_DIR_VAR) if gateways else None) or PKI_DIR)
        gateway = fleet_gateway(plans, gateway_block, {g.host: g.address for g in gateways}, pki_dir, internal)
    except SpecError as exc:
        issues += exc.issues
    try:
        monitoring = fleet_monitoring(plans, monitoring_block, gateway,
                                      [m.host for m in found.get(MONITORING_GROUP, [])],
                                      {name: exporter_host(h.variables, h.address) for name, h in every.items()})
    except SpecError as exc:
        issues += exc.issues
    try:
        listeners = fleet_listeners(plans, gateway, monitoring, {name: h.address for name, h in every.items()},
                                    internal, trusted, {name: h.variables for name, h in every.items()})
    except SpecError as exc:
        issues += exc.issues
    if issues:
        raise InventoryError([SpecError(issues, "inventory")])
    models = sorted({s.served_model_name for p in plans.values() for s in p.services}
                    | {a.name for p in plans.values() for s in p.services for a in s.adapters})
    return FleetPlan(hosts=plans, internal_addresses=internal, gateway=gateway, monitoring=monitoring,
                     models=models, listeners=listeners)


def _not_started_yet(group: EngineGroup) -> SpecIssue:
    """An engine group is placed, checked and sized, but the serve stage has no lifecycle for it yet (its leader
    and headless followers, their health and rollout as one unit): refused before any host is touched."""
    sized = f", max_model_len {group.max_model_len}" if group.max_model_len else ""
    return SpecIssue(f"{SPEC_VAR}.services[{group.service}].nodes of host {group.leader}",
                     str(len(group.members)),
                     f"makes {group.name} an engine group across {', '.join(group.members)} (tensor_parallel_size "
                     f"{group.tensor_parallel_size} x pipeline_parallel_size {group.pipeline_parallel_size}{sized}), "
                     "which this version plans but does not start on VMs",
                     "serve it on a cluster (vllm-fleet k8s render: KServe's multi-node form), or on one host "
                     "(nodes: 1) where it fits")


def plan_from_hostvars(hostvars: Mapping[str, Mapping[str, Any]], groups: Mapping[str, list[str]],
                       environ: Mapping[str, str], plain: Callable[[Any], Any]) -> FleetPlan:
    """The fleet plan from a play's hostvars and groups (the whole inventory, whatever the run's limit); `plain`
    turns Ansible's lazily templated values into plain data."""

    def found(name: str) -> InventoryHost:
        variables = hostvars[name]
        return InventoryHost(name, plain(variables.get(SPEC_VAR)), host_address(variables, name), variables)

    return plan_fleet({g: [found(h) for h in groups.get(g) or []] for g in GROUPS}, environ)


def sized_host_plan(variables: Mapping[str, Any], model_configs: Mapping[str, Any],
                    environ: Mapping[str, str]) -> HostPlan:
    """A serving host's plan again, after the weights stage, with the models' config.json contents read off the
    host: a tensor_parallel_size auto is settled now, or refused."""
    host = str(variables["inventory_hostname"])
    given = {**(variables.get("vllm_fleet_model_configs") or {}), **model_configs}
    return plan_for_host(variables.get(SPEC_VAR), host_address(variables, host), source=f"{SPEC_VAR} of {host}",
                         environ=environ, variables={**variables, "vllm_fleet_model_configs": given},
                         resolve_auto=True)
