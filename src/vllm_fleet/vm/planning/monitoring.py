"""The fleet's monitoring, planned from every serving host's plan: what Prometheus scrapes and what it alerts on.

From the fleet's one `monitoring:` block and every serving host's SLOs and listeners, `fleet_monitoring` checks that
the hosts agree on each service's SLO and that the monitoring hosts can reach every target, and returns the
`MonitoringPlan` the monitoring role writes as Prometheus's file-based service discovery, rules and configuration.
Adding a host or a service changes the plan, never a hand-written file. Problems raise SpecError before any host is
touched, naming the host, the field and the fix.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from vllm_fleet.monitoring.dashboards import DATASOURCE_UID, DCGM_FIELDS, all_dashboards
from vllm_fleet.monitoring.rules import (
    JOB_ALERTMANAGER,
    JOB_DCGM,
    JOB_GATEWAY,
    JOB_NODE,
    JOB_PROMETHEUS,
    JOB_VLLM,
    alert_rules,
)
from vllm_fleet.spec import Monitoring, SpecError, SpecIssue
from vllm_fleet.spec.monitoring import MONITORING_USER, ServiceSlo
from vllm_fleet.vm.planning.gateway import GatewayPlan
from vllm_fleet.vm.planning.plan import (
    BACKEND_ADDRESS_VAR,
    LOOPBACK,
    HostPlan,
    PlanModel,
    backend_address,
    probe_address,
)

MONITORING_GROUP = "vllm_monitoring"
MONITORING_PLAN_VAR = "vllm_fleet_monitoring_plan"


class ExporterHost(PlanModel):
    """A host of the fleet as the exporters see it: where they listen, and whether it has NVIDIA GPUs."""

    address: str
    backend_address: str = LOOPBACK
    nvidia: bool = True


class TargetGroup(PlanModel):
    """One entry of a file_sd file: the targets and the labels Prometheus attaches to them."""

    targets: list[str]
    labels: dict[str, str]


class MonitoringPlan(PlanModel):
    hosts: list[str]
    scrape_interval_seconds: int
    retention: str
    prometheus_port: int
    alertmanager_port: int
    node_exporter_port: int
    dcgm_exporter_port: int
    # file_sd target groups by job name; one file per job on the monitoring hosts.
    targets: dict[str, list[TargetGroup]]
    # Hosts that run the node exporter (every host) and the DCGM exporter (hosts with vllm_fleet_nvidia true).
    node_hosts: list[str]
    dcgm_hosts: list[str]
    dcgm_fields: list[list[str]]
    rules: dict[str, Any]
    dashboards: dict[str, dict[str, Any]]
    grafana_datasource_uid: str = DATASOURCE_UID
    webhook_ref: dict[str, str] | None = None
    repeat_interval_minutes: int
    # Basic auth over TLS (the fleet's internal CA) on these jobs' listeners: Prometheus scrapes them as `user`.
    secured_jobs: list[str] = [JOB_NODE, JOB_PROMETHEUS, JOB_ALERTMANAGER]
    user: str = MONITORING_USER
    # The password and Grafana's admin password by reference; None: generated once on the controller.
    password_ref: dict[str, str] | None = None
    grafana_password_ref: dict[str, str] | None = None


def exporter_host(variables: Mapping[str, Any], address: str) -> ExporterHost:
    """A host's exporter settings from its inventory variables (vllm_fleet_nvidia false: a CPU host, no DCGM)."""
    nvidia = str(variables.get("vllm_fleet_nvidia", True)).lower() not in ("false", "no", "0", "off")
    return ExporterHost(address=address, backend_address=backend_address(variables), nvidia=nvidia)


def _scrape_address(host: ExporterHost) -> str:
    return probe_address(host.backend_address, host.address)


def fleet_monitoring(plans: Mapping[str, HostPlan], block: Monitoring | None, gateway: GatewayPlan | None,
                     monitoring_hosts: list[str], hosts: Mapping[str, ExporterHost]) -> MonitoringPlan | None:
    """The monitoring plan of a fleet from its one `monitoring:` block, or None when there is neither the block
    nor a monitoring host.

    hosts: every host of the fleet (serving, gateway and monitoring) with its addresses and GPU switch."""
    issues: list[SpecIssue] = []
    if block is None:
        if monitoring_hosts:
            raise SpecError([SpecIssue(f"group {MONITORING_GROUP}", ", ".join(monitoring_hosts),
                                       "lists monitoring hosts, but the spec has no monitoring block",
                                       "add a monitoring: block to vllm_fleet_spec (monitoring: {} takes the "
                                       "defaults), or remove the group")], "inventory")
        return None
    if not monitoring_hosts:
        issues.append(SpecIssue(f"group {MONITORING_GROUP}", "(empty)",
                                "has no hosts, but the spec has a monitoring block",
                                f"add a {MONITORING_GROUP} group to the inventory; it may list a serving or gateway "
                                "host"))
    slos: dict[str, tuple[str, ServiceSlo]] = {}
    vllm: list[TargetGroup] = []
    for host, plan in plans.items():
        if plan.backend_address == LOOPBACK and any(m != host for m in monitoring_hosts):
            others = ", ".join(m for m in monitoring_hosts if m != host)
            issues.append(SpecIssue(f"{BACKEND_ADDRESS_VAR} of {host}", "(not set: 127.0.0.1)",
                                    f"leaves {host}'s services and exporters on its loopback, where monitoring "
                                    f"host(s) {others} cannot scrape them",
                                    f"set {BACKEND_ADDRESS_VAR} to {host}'s address on the network it shares with "
                                    "the monitoring hosts, or make it the only monitoring host"))
        for name, slo in plan.slos.items():
            seen = slos.setdefault(name, (host, slo))
            if seen[1] != slo:
                issues.append(SpecIssue(f"services.{name}.slo on {host}", "(differs)",
                                        f"is not the SLO service '{name}' has on {seen[0]}; alerts hold a service "
                                        "to one objective", "give every replica of a service the same slo"))
        for svc in plan.services:
            vllm.append(TargetGroup(
                targets=[f"{probe_address(plan.backend_address, plan.address)}:{svc.port}"],
                labels={"host": host, "service": svc.name, "model": svc.served_model_name, "task": svc.task}))
    if issues:
        raise SpecError(issues, "inventory")

    def group(job_hosts: list[str], port: int) -> list[TargetGroup]:
        return [TargetGroup(targets=[f"{_scrape_address(hosts[h])}:{port}"], labels={"host": h})
                for h in job_hosts]

    node_hosts = list(hosts)
    dcgm_hosts = [h for h, e in hosts.items() if e.nvidia]
    targets = {
        JOB_VLLM: vllm,
        JOB_NODE: group(node_hosts, block.node_exporter_port),
        JOB_DCGM: group(dcgm_hosts, block.dcgm_exporter_port),
        JOB_GATEWAY: group(gateway.hosts, gateway.metrics_port) if gateway else [],
        JOB_PROMETHEUS: group(monitoring_hosts, block.prometheus_port),
        JOB_ALERTMANAGER: group(monitoring_hosts, block.alertmanager_port),
    }
    hook = block.alertmanager.webhook_url
    return MonitoringPlan(
        hosts=list(monitoring_hosts), scrape_interval_seconds=block.scrape_interval_seconds,
        retention=block.retention, prometheus_port=block.prometheus_port,
        alertmanager_port=block.alertmanager_port, node_exporter_port=block.node_exporter_port,
        dcgm_exporter_port=block.dcgm_exporter_port, targets=targets, node_hosts=node_hosts, dcgm_hosts=dcgm_hosts,
        dcgm_fields=[list(f) for f in DCGM_FIELDS],
        rules=alert_rules(block, {name: slo for name, (_, slo) in slos.items()}), dashboards=all_dashboards(),
        webhook_ref=hook.model_dump(exclude_none=True) if hook else None,
        repeat_interval_minutes=block.alertmanager.repeat_interval_minutes,
        password_ref=block.password.model_dump(exclude_none=True) if block.password else None,
        grafana_password_ref=(block.grafana_admin_password.model_dump(exclude_none=True)
                              if block.grafana_admin_password else None))
