"""Every listener the fleet opens, from the fleet plan: where it binds, who may reach it and how it authenticates.

`fleet_listeners` lists them host by host. The firewall role admits, on each host, only the addresses a listener's
`sources` name (the hosts that need it, and the host's `vllm_fleet_trusted_sources`); a listener whose `sources` is
None is open to anyone who reaches its address and guards itself (the gateway's API keys, Grafana's login).
`listener_table` is the README's table of them, one row per kind.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from vllm_fleet.spec.errors import SpecError, SpecIssue, show_value
from vllm_fleet.vm.planning.gateway import GatewayPlan
from vllm_fleet.vm.planning.monitoring import MonitoringPlan
from vllm_fleet.vm.planning.plan import ALL_INTERFACES, LOOPBACK, HostPlan, PlanModel

TRUSTED_SOURCES_VAR = "vllm_fleet_trusted_sources"
# The vllm_server role's default: a canary listens at its service's port plus this, beside the running container.
CANARY_PORT_OFFSET_VAR = "vllm_server_canary_port_offset"
CANARY_PORT_OFFSET = 10000
# The model_weights role's peer fan-out: the source host serves a completed revision to the others for a while.
FANOUT_VAR = "model_weights_fanout"
PEER_PORT_VAR = "model_weights_peer_port"
PEER_PORT = 8931
GRAFANA_VAR = "monitoring_grafana"
GRAFANA_PORT_VAR = "monitoring_grafana_port"
GRAFANA_PORT = 3000



@dataclass(frozen=True)
class Kind:
    """A kind of listener, in the words of the README's table."""

    what: str
    on: str  # which hosts open it
    binds: str  # every address, the internal address, or the gateway address (VRRP)
    reach: str  # who may reach it
    auth: str  # how it authenticates


KINDS: dict[str, Kind] = {k: Kind(*v) for k, v in {
    "gateway": ("the gateway (HAProxy)", "gateway hosts", "every address", "anyone", "API key (Bearer), TLS"),
    "gateway_metrics": ("HAProxy's metrics and stats", "gateway hosts", "internal address", "monitoring hosts",
                        "none: the firewall"),
    "gateway_peers": ("HAProxy's peers (rate counters)", "gateway hosts, with high_availability", "internal address",
                      "gateway hosts", "none: the firewall"),
    "vrrp": ("keepalived (VRRP, IP protocol 112)", "gateway hosts, with high_availability", "gateway address",
             "gateway hosts", "none: the firewall"),
    "vllm": ("a vLLM service", "serving hosts", "internal address", "gateway and monitoring hosts",
             "API key on /v1 only; the firewall"),
    "weights_peer": ("the weights' peer server (model_weights_fanout: peer)", "serving hosts, in the weights stage",
                     "its default address", "serving hosts", "none: the firewall"),
    "vllm_canary": ("a vLLM service's canary (rolling update)", "serving hosts", "internal address",
                    "its own host", "API key on /v1 only; the firewall"),
    "prometheus": ("Prometheus", "monitoring hosts", "internal address", "monitoring hosts",
                   "basic auth, TLS (internal CA); the firewall"),
    "alertmanager": ("Alertmanager", "monitoring hosts", "internal address", "monitoring hosts",
                     "basic auth, TLS (internal CA); the firewall"),
    "grafana": ("Grafana", "monitoring hosts, with monitoring_grafana", "internal address", "anyone",
                "login (admin password by reference), no anonymous access"),
    "node_exporter": ("the node exporter", "every host", "internal address", "monitoring hosts",
                      "basic auth, TLS (internal CA); the firewall"),
    "dcgm_exporter": ("NVIDIA's DCGM exporter", "GPU hosts", "internal address", "monitoring hosts",
                      "none: the firewall"),
}.items()}
# Without a gateway, clients call the services themselves.
NO_GATEWAY_VLLM = ("anyone (no gateway)", "API key on /v1 only")


class Listener(PlanModel):
    host: str
    kind: str
    name: str  # what listens, with the service's name for vLLM
    address: str  # bind address
    port: int | None  # None for VRRP, which is an IP protocol
    protocol: Literal["tcp", "vrrp"] = "tcp"
    reach: str
    auth: str
    # The addresses and networks the host's firewall admits (besides the host itself); None: anyone.
    sources: list[str] | None


def trusted_sources(host: str, variables: Mapping[str, Any]) -> tuple[list[str], list[SpecIssue]]:
    """A host's vllm_fleet_trusted_sources: addresses or networks (an operator's bastion) admitted to every
    firewalled listener of the host besides the hosts that need it."""
    given = variables.get(TRUSTED_SOURCES_VAR) or []
    field = f"{TRUSTED_SOURCES_VAR} of {host}"
    if isinstance(given, str) or not isinstance(given, Sequence):
        return [], [SpecIssue(field, show_value(given), "is not a list",
                              "give a list of addresses or networks, e.g. [10.0.9.5, 10.0.8.0/24]")]
    found: list[str] = []
    issues: list[SpecIssue] = []
    for item in given:
        try:
            net = ipaddress.ip_network(str(item), strict=False)
        except ValueError:
            issues.append(SpecIssue(field, show_value(item), "is not an address or a network",
                                    "give an IPv4 or IPv6 address, or a network with its prefix length"))
            continue
        if net.prefixlen == 0:
            issues.append(SpecIssue(field, show_value(item), "admits every address, which opens every internal "
                                    "listener of the host to anyone", "name the operators' addresses or networks"))
            continue
        found.append(str(net) if net.num_addresses > 1 else str(net.network_address))
    return found, issues


def fleet_listeners(plans: Mapping[str, HostPlan], gateway: GatewayPlan | None, monitoring: MonitoringPlan | None,
                    public: Mapping[str, str], internal: Mapping[str, str], trusted: Mapping[str, list[str]],
                    variables: Mapping[str, Mapping[str, Any]]) -> list[Listener]:
    """Every listener of every host of the fleet. public and internal: each host's address and internal address
    (vllm_fleet_backend_address, else loopback); trusted: each host's vllm_fleet_trusted_sources; variables: each
    host's inventory variables (the canary port offset, Grafana)."""

    def addresses(names: Sequence[str]) -> list[str]:
        """The hosts' addresses a firewall can admit: IP literals (a host reached by a DNS name is admitted at its
        internal address, from which it reaches the others' internal listeners), never loopback."""
        seen = [a for h in names for a in (public[h], internal[h]) if a not in (LOOPBACK, ALL_INTERFACES)
                and _is_ip(a)]
        return list(dict.fromkeys(seen))

    gateway_hosts = gateway.hosts if gateway else []
    monitoring_hosts = monitoring.hosts if monitoring else []
    out: list[Listener] = []

    def add(host: str, kind: str, address: str, port: int | None, admitted: Sequence[str] | None, *,
            name: str = "", protocol: Literal["tcp", "vrrp"] = "tcp") -> None:
        what, reach, auth = KINDS[kind].what, KINDS[kind].reach, KINDS[kind].auth
        if kind == "vllm" and admitted is None:
            reach, auth = NO_GATEWAY_VLLM
        sources = None if admitted is None else list(dict.fromkeys([*admitted, *trusted.get(host, [])]))
        out.append(Listener(host=host, kind=kind, name=name or what, address=address, port=port, protocol=protocol,
                            reach=reach, auth=auth, sources=sources))

    for host, plan in plans.items():
        offset = _port_var(host, variables.get(host, {}), CANARY_PORT_OFFSET_VAR, CANARY_PORT_OFFSET)
        # Without a gateway the services are the endpoint; vllm_fleet_direct_ports opens them on purpose.
        open_services = gateway is None or plan.backend_address == ALL_INTERFACES
        for svc in plan.services:
            add(host, "vllm", plan.backend_address, svc.port,
                None if open_services else addresses([*gateway_hosts, *monitoring_hosts]),
                name=f"vLLM {svc.name}")
            add(host, "vllm_canary", plan.backend_address, svc.port + offset, None if open_services else [],
                name=f"vLLM {svc.name} (canary)")
    serving = list(plans)
    for host in serving:
        weights = variables.get(host, {})
        if str(weights.get(FANOUT_VAR, "direct")) == "peer":
            add(host, "weights_peer", ALL_INTERFACES, _port_var(host, weights, PEER_PORT_VAR, PEER_PORT),
                addresses(serving))
    if gateway:
        for host in gateway.hosts:
            add(host, "gateway", ALL_INTERFACES, gateway.port, None)
            add(host, "gateway_metrics", internal[host], gateway.metrics_port,
                addresses(monitoring_hosts))
            ha = gateway.high_availability
            if ha:
                peers = addresses(gateway.hosts)
                add(host, "gateway_peers", ha.peers[host], ha.peer_port, peers)
                add(host, "vrrp", public[host], None, peers, protocol="vrrp")
    if monitoring:
        scrapers = addresses(monitoring_hosts)
        for host in monitoring.hosts:
            add(host, "prometheus", internal[host], monitoring.prometheus_port, scrapers)
            add(host, "alertmanager", internal[host], monitoring.alertmanager_port, scrapers)
            grafana = variables.get(host, {})
            if str(grafana.get(GRAFANA_VAR, True)).lower() not in ("false", "no", "0", "off"):
                add(host, "grafana", internal[host], _port_var(host, grafana, GRAFANA_PORT_VAR, GRAFANA_PORT), None)
        for host in monitoring.node_hosts:
            add(host, "node_exporter", internal[host], monitoring.node_exporter_port, scrapers)
        for host in monitoring.dcgm_hosts:
            add(host, "dcgm_exporter", internal[host], monitoring.dcgm_exporter_port, scrapers)
    return out


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _port_var(host: str, variables: Mapping[str, Any], name: str, default: int) -> int:
    """An inventory variable the listeners' ports come from, as a number; else SpecError naming it."""
    value = variables.get(name, default)
    try:
        port = int(value)
    except (TypeError, ValueError):
        port = -1
    if not 0 < port < 65536:
        raise SpecError([SpecIssue(f"{name} of {host}", show_value(value), "is not a port number (or offset)",
                                   f"give a number from 1 to 65535, or leave it out for {default}")], "inventory")
    return port


def listener_table(listeners: Sequence[Listener]) -> str:
    """The README's table: one row per kind of listener the fleet has, in KINDS' order, with the ports this fleet
    gives it."""
    rows = ["| Listener | On | Binds | Port | Who may reach it | Authentication |",
            "|---|---|---|---|---|---|"]
    for kind, k in KINDS.items():
        ports = list(dict.fromkeys(str(x.port) if x.port else "IP protocol 112" for x in listeners if x.kind == kind))
        if ports:
            rows.append(f"| {k.what} | {k.on} | {k.binds} | {', '.join(ports)} | {k.reach} | {k.auth} |")
    return "\n".join(rows) + "\n"
