"""The fleet's gateway, planned from every serving host's plan: pools by served model, clients and their scopes.

From the fleet's one `gateway:` block and where every serving host's services listen, `fleet_gateway` checks that
the hosts agree (one task and one backend key per model, backends the gateway hosts can reach) and returns the
`GatewayPlan` the gateway role renders into HAProxy's configuration. Problems raise SpecError before any host is
touched, naming the host, the field and the fix.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Literal

from vllm_fleet.monitoring.rules import GATEWAY_FRONTEND
from vllm_fleet.spec import Gateway, SpecError, SpecIssue
from vllm_fleet.spec.errors import show_value
from vllm_fleet.spec.gateway import HEALTH_ROUTE, MODELS_ROUTE, TASK_ROUTES, GatewayHighAvailability, client_scope
from vllm_fleet.vm.planning.plan import BACKEND_ADDRESS_VAR, LOOPBACK, HostPlan, PlanModel, probe_address

GATEWAY_GROUP = "vllm_gateways"
GATEWAY_PLAN_VAR = "vllm_fleet_gateway_plan"
# HAProxy's runtime API socket on the gateway hosts, through which the serve stage drains and restores servers.
ADMIN_SOCKET = "/run/haproxy/admin.sock"
# The controller directory that keeps the generated CA (tls mode generated), unless the gateway hosts' variable
# gateway_pki_dir names another; clients are handed its ca.pem.
PKI_DIR_VAR = "gateway_pki_dir"
PKI_DIR = "~/.local/share/vllm-fleet/gateway-pki"


class GatewayServer(PlanModel):
    name: str
    host: str
    address: str
    port: int


class GatewayPool(PlanModel):
    """One served model: its HAProxy backend, the routes its task answers, the replicas that serve it."""

    model: str
    task: str
    routes: list[str]
    backend: str
    balance: Literal["prefix", "least_conn", "round_robin"]
    # balance prefix: the percent of the pool's average requests in flight a replica takes at most (None: unbounded).
    load_bound: int | None = None
    servers: list[GatewayServer]
    # The services' api_key reference: the key the gateway sends to these backends (never a client key).
    key_ref: dict[str, str]
    # LoRA adapters on this model: more model names routed to these replicas, which all serve them.
    adapters: list[str] = []


class GatewayClientPlan(PlanModel):
    name: str
    key_ref: dict[str, str]
    models: list[str]  # '*' expanded to every model of the fleet
    requests_per_minute: int | None = None


class GatewayHaPlan(PlanModel):
    """One virtual address over the gateway hosts (keepalived, VRRP with unicast peers), and HAProxy's peers
    sharing the per-key rate counters between them over their internal addresses."""

    virtual_address: str  # without its prefix length
    prefix_length: int
    router_id: int
    peer_port: int
    # Each gateway host's internal address, where its HAProxy peer listens.
    peers: dict[str, str]


class GatewayPlan(PlanModel):
    hosts: list[str]
    # Where clients reach each gateway host (vllm_fleet_address, ansible_host or its name): URLs and certificates.
    addresses: dict[str, str]
    port: int
    metrics_port: int
    tls_mode: Literal["generated", "provided", "off"]
    tls_min_version: str
    tls_names: list[str]
    tls_certificate: str | None = None
    tls_key_ref: dict[str, str] | None = None
    health_interval_seconds: int
    health_fall: int
    health_rise: int
    request_timeout_seconds: int
    pools: list[GatewayPool]
    clients: list[GatewayClientPlan]
    # Every route that reaches a backend, for the allowlist; anything else is refused at the gateway.
    routes: list[str]
    # Every model name a client may call through the gateway: the pools' models and their adapters.
    models: list[str] = []
    models_route: str = MODELS_ROUTE
    # The client-facing frontend's name, which the shipped alerts and dashboards select on.
    frontend: str = GATEWAY_FRONTEND
    admin_socket: str = ADMIN_SOCKET
    # The controller directory of the generated CA (gateway_pki_dir of the first gateway host, else PKI_DIR).
    pki_dir: str = PKI_DIR
    high_availability: GatewayHaPlan | None = None

    @property
    def ca_file(self) -> str:
        """The CA file a client trusts on the controller, or "" when the gateway's TLS is not generated."""
        return str(Path(self.pki_dir).expanduser() / "ca.pem") if self.tls_mode == "generated" else ""

    @property
    def base_url(self) -> str:
        """The fleet's URL (no /v1): at the virtual address, else at the first gateway host."""
        scheme = "http" if self.tls_mode == "off" else "https"
        ha = self.high_availability
        return f"{scheme}://{ha.virtual_address if ha else self.addresses[self.hosts[0]]}:{self.port}"
    health_route: str = HEALTH_ROUTE


def high_availability(ha: GatewayHighAvailability, gateway_hosts: Mapping[str, str],
                      internal: Mapping[str, str]) -> Iterator[SpecIssue]:
    """What keepalived and HAProxy's peers need of the gateway hosts: two or more, each with an IPv4 address in
    the virtual address's network (VRRP's unicast peers, and the interface that takes the address) and an internal
    address for the peers' rate counters."""
    at = "gateway.high_availability"
    vip = ipaddress.ip_interface(ha.virtual_address)
    if len(gateway_hosts) < 2:
        yield SpecIssue(f"group {GATEWAY_GROUP}", show_value(list(gateway_hosts)),
                        f"has {len(gateway_hosts)} host(s); {at} moves one address between two or more",
                        f"add a second gateway host to {GATEWAY_GROUP}, or remove high_availability")
    for host, address in gateway_hosts.items():
        try:
            own = ipaddress.ip_address(address)
        except ValueError:
            own = None
        if own is None or own not in vip.network:
            yield SpecIssue(f"vllm_fleet_address of {host}", show_value(address),
                            f"is not an IPv4 address in {vip.network}, the network of {at}.virtual_address; "
                            "keepalived sends VRRP to this address and puts the virtual one on its interface",
                            f"set vllm_fleet_address of {host} to its address in {vip.network}, or give a "
                            "virtual_address in the gateway hosts' network")
        elif own == vip.ip:
            yield SpecIssue(f"{at}.virtual_address", show_value(ha.virtual_address),
                            f"is the address of gateway host {host}",
                            f"pick an address in {vip.network} that no host uses")
        if len(gateway_hosts) > 1 and internal.get(host, LOOPBACK) == LOOPBACK:
            yield SpecIssue(f"{BACKEND_ADDRESS_VAR} of {host}", "(not set: 127.0.0.1)",
                            "is where this gateway host's HAProxy shares its per-key rate counters with the others",
                            f"set {BACKEND_ADDRESS_VAR} of {host} to its address on the fleet's internal network")


def fleet_gateway(plans: Mapping[str, HostPlan], gateway: Gateway | None,
                  gateway_hosts: Mapping[str, str], pki_dir: str = PKI_DIR,
                  internal: Mapping[str, str] | None = None) -> GatewayPlan | None:
    """The gateway plan of a fleet from its one `gateway:` block, or None when there is neither the block nor a
    gateway host.

    gateway_hosts: each gateway host's inventory name and the address clients reach it at; internal: the hosts'
    internal addresses (vllm_fleet_backend_address, else loopback), where HAProxy's peers listen."""
    issues: list[SpecIssue] = []
    if gateway is None:
        if gateway_hosts:
            issues.append(SpecIssue(f"group {GATEWAY_GROUP}", show_value(list(gateway_hosts)),
                                    "lists gateway hosts, but the spec has no gateway block",
                                    "add a gateway: block (clients, keys, tls) to vllm_fleet_spec, or remove the "
                                    "group"))
            raise SpecError(issues, "inventory")
        return None
    if not gateway_hosts:
        issues.append(SpecIssue(f"group {GATEWAY_GROUP}", "(empty)", "has no hosts, but the spec has a gateway block",
                                f"add a {GATEWAY_GROUP} group to the inventory; it may list serving hosts themselves"))
    pools: dict[str, GatewayPool] = {}
    for host, plan in plans.items():
        if plan.backend_address == LOOPBACK and any(g != host for g in gateway_hosts):
            others = ", ".join(g for g in gateway_hosts if g != host)
            issues.append(SpecIssue(f"{BACKEND_ADDRESS_VAR} of {host}", "(not set: 127.0.0.1)",
                                    f"leaves {host}'s services on its loopback, where gateway host(s) {others} "
                                    "cannot reach them",
                                    f"set {BACKEND_ADDRESS_VAR} to {host}'s address on the network it shares with the "
                                    "gateway hosts (an internal interface), or make it the only gateway host"))
        for svc in plan.services:
            key_ref = svc.secrets.api_key or {}
            server = GatewayServer(name=svc.gateway_server, host=host,
                                   address=probe_address(plan.backend_address, plan.address), port=svc.port)
            pool = pools.get(svc.served_model_name)
            adapters = sorted(a.name for a in svc.adapters)
            if pool is None:
                pools[svc.served_model_name] = GatewayPool(
                    model=svc.served_model_name, task=svc.task, routes=list(TASK_ROUTES[svc.task]),
                    backend=svc.gateway_backend, balance=gateway.balance if svc.task == "generate" else "least_conn",
                    load_bound=gateway.prefix_load_bound if svc.task == "generate" else None,
                    servers=[server], key_ref=key_ref, adapters=adapters)
                continue
            if pool.adapters != adapters:
                issues.append(SpecIssue(f"services.{svc.name}.adapters on {host}", show_value(adapters),
                                        f"are not the adapters model '{pool.model}' has on {pool.servers[0].host} "
                                        f"({', '.join(pool.adapters) or 'none'}); the gateway sends an adapter's "
                                        "requests to every replica of its model",
                                        "give every replica of a model the same adapters"))
            elif pool.task != svc.task:
                issues.append(SpecIssue(f"services.{svc.name}.task on {host}", show_value(svc.task),
                                        f"differs from the task '{pool.task}' model '{pool.model}' has on "
                                        f"{pool.servers[0].host}; the gateway routes a model by its task",
                                        "serve one model name with one task, or give the services other "
                                        "served_model_name values"))
            elif pool.key_ref != key_ref:
                issues.append(SpecIssue(f"services.{svc.name}.api_key on {host}", "{...}",
                                        f"is not the reference model '{pool.model}' uses on {pool.servers[0].host}; "
                                        "the gateway sends one backend key per model",
                                        "give every replica of a model the same api_key reference"))
            else:
                pool.servers.append(server)
    names = {m: m for m in pools}
    for pool in pools.values():
        for adapter in pool.adapters:
            if names.setdefault(adapter, pool.model) != pool.model or adapter in pools:
                issues.append(SpecIssue(f"adapter {adapter} of model {pool.model}", show_value(adapter),
                                        f"is also a model name of {names[adapter]} elsewhere in the fleet",
                                        "give every adapter a model name no other model or adapter has"))
    ha = gateway.high_availability
    if ha is not None:
        issues += high_availability(ha, gateway_hosts, internal or {})
    if issues:
        raise SpecError(issues, "inventory")
    every_model = sorted(names)
    clients = [GatewayClientPlan(name=c.name, key_ref=c.key.model_dump(exclude_none=True),
                                 models=client_scope(c, every_model),
                                 requests_per_minute=c.requests_per_minute) for c in gateway.clients]
    routes = sorted({r for pool in pools.values() for r in pool.routes})
    tls = gateway.tls
    ha_plan = None
    if ha is not None:
        vip = ipaddress.ip_interface(ha.virtual_address)
        ha_plan = GatewayHaPlan(virtual_address=str(vip.ip), prefix_length=vip.network.prefixlen,
                                router_id=ha.router_id, peer_port=ha.peer_port,
                                peers={h: (internal or {})[h] for h in gateway_hosts})
    return GatewayPlan(
        hosts=list(gateway_hosts), addresses=dict(gateway_hosts), port=gateway.port,
        metrics_port=gateway.metrics_port, tls_mode=tls.mode,
        tls_min_version=tls.min_version, tls_certificate=tls.certificate,
        # Clients reach a highly available gateway at its virtual address: the certificate names it too.
        tls_names=list(dict.fromkeys([*tls.names, *([ha_plan.virtual_address] if ha_plan else [])])),
        tls_key_ref=tls.key.model_dump(exclude_none=True) if tls.key else None,
        health_interval_seconds=gateway.health.interval_seconds, health_fall=gateway.health.fall,
        health_rise=gateway.health.rise, request_timeout_seconds=gateway.request_timeout_seconds,
        pools=[pools[m] for m in sorted(pools)], clients=clients, routes=routes, models=every_model, pki_dir=pki_dir,
        high_availability=ha_plan)
