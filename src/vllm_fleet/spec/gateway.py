"""The spec's `gateway:` block: one OpenAI base URL for the fleet, in front of every service.

The same block drives both targets: HAProxy on the VM fleet's gateway hosts, and Envoy AI Gateway routes with
Envoy Gateway's policies on clusters. It names the client keys (by reference, each allowed a set of models and an
optional request rate), TLS, the listener ports and how generate pools balance. Cross-field rules that need the
services (a scope naming an unknown model, a port clash) are in `gateway_rules`.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from vllm_fleet.spec.errors import SpecIssue, fail, matching, show_value
from vllm_fleet.spec.model import DNS1123_LABEL, SecretRef, Strict

if TYPE_CHECKING:
    from vllm_fleet.spec.model import Service

_LABEL = r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?"
HOSTNAME = re.compile(rf"^(?=.{{1,253}}$)(\*\.)?{_LABEL}(\.{_LABEL})*$")
ALL_MODELS = "*"

# The routes each task's models answer through the gateway; everything else vLLM serves is refused there.
TASK_ROUTES: dict[str, tuple[str, ...]] = {
    "generate": ("/v1/chat/completions", "/v1/completions"),
    "embed": ("/v1/embeddings",),
    "score": ("/v1/rerank", "/rerank", "/v1/score", "/score"),
}
MODELS_ROUTE = "/v1/models"
HEALTH_ROUTE = "/health"


def _port(v: int) -> int:
    if not 1 <= v <= 65535:
        raise fail("is not a TCP port", "use a port from 1 to 65535, e.g. 443 or 8443")
    return v


class GatewayClient(Strict):
    """One client of the gateway: its key (by reference), the models it may use, an optional request rate."""

    name: Annotated[str, matching(DNS1123_LABEL,
                                  "is not a client name (lower-case letters, digits and '-', at most 63)",
                                  "name the client like a service, e.g. team-search", max_length=63)]
    key: SecretRef
    models: list[str] = Field(min_length=1, description="served model names, or ['*'] for every model")
    requests_per_minute: int | None = Field(None, gt=0, le=1_000_000)

    @field_validator("models")
    @classmethod
    def _models(cls, v: list[str]) -> list[str]:
        if any(not m.strip() for m in v):
            raise fail("lists an empty model name", "list served model names, or ['*'] for every model")
        if ALL_MODELS in v and len(v) > 1:
            raise fail("mixes '*' with model names", "give ['*'] alone, or the names alone")
        if len(set(v)) != len(v):
            raise fail("lists a model twice", "list each model once")
        return v


def callable_models(services: Sequence[Service]) -> dict[str, Service]:
    """Every model name a client can send through the gateway, and the service that answers it: each service's
    served model and each of its LoRA adapters (an adapter is answered by its base model's replicas)."""
    return {svc.model_name: svc for svc in services} | {a.name: svc for svc in services for a in svc.adapters}


def client_scope(client: GatewayClient, models: Iterable[str]) -> list[str]:
    """The model names, of those the gateway serves, that a client may call: all of them for '*'."""
    served = sorted(set(models))
    return served if client.models == [ALL_MODELS] else [m for m in served if m in client.models]


class GatewayTls(Strict):
    """TLS at the gateway: a generated CA and certificate (dev, tests), the user's own, or off (explicit opt-in)."""

    mode: Literal["generated", "provided", "off"] = "generated"
    certificate: str | None = Field(None, description="PEM certificate chain on the controller (provided mode)")
    key: SecretRef | None = Field(None, description="the certificate's PEM private key, by reference")
    names: list[str] = Field(default_factory=list,
                             description="DNS names and IPs for the generated certificate, besides the hosts'")
    min_version: Literal["1.2", "1.3"] = "1.2"

    @field_validator("certificate")
    @classmethod
    def _path(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith("/"):
            raise fail("is not an absolute path", "give the PEM chain's absolute path on the controller")
        if v is not None and "BEGIN " in v:
            raise fail("holds PEM text where a file path belongs", "save the chain to a file and give its path")
        return v

    @field_validator("names")
    @classmethod
    def _names(cls, v: list[str]) -> list[str]:
        for name in v:
            try:
                ipaddress.ip_address(name)
            except ValueError:
                if not HOSTNAME.match(name):
                    raise fail(f"'{name}' is neither a DNS name nor an IP address",
                               "give names like gateway.example.com or addresses like 10.0.0.5") from None
        return v

    @model_validator(mode="after")
    def _complete(self) -> GatewayTls:
        if self.mode == "provided" and (self.certificate is None or self.key is None):
            raise fail("is 'provided' without both a certificate and its key",
                       "give tls.certificate (a path) and tls.key ({env: NAME} or {vault: var}), or use "
                       "mode: generated")
        if self.mode != "provided" and (self.certificate is not None or self.key is not None):
            raise fail(f"is '{self.mode}' but a certificate or key is given",
                       "set mode: provided to use them, or remove them")
        return self


class GatewayHealth(Strict):
    """Active health checks on every backend's /health: how often, and how many answers eject or restore it."""

    interval_seconds: int = Field(2, ge=1, le=60)
    fall: int = Field(2, ge=1, le=10)
    rise: int = Field(2, ge=1, le=10)


class GatewayHighAvailability(Strict):
    """Two or more gateway hosts behind one virtual address (VMs): keepalived moves the address between them with
    VRRP over unicast, and HAProxy's peers share the per-key rate counters. The hosts are the inventory's
    vllm_gateways group; each one's address must be an IPv4 address in `virtual_address`'s network."""

    virtual_address: str = Field(description="the address clients use, with its prefix length: 10.0.0.100/24")
    router_id: int = Field(51, ge=1, le=255, description="VRRP virtual router id, unique on the network segment")
    peer_port: int = Field(10000, description="HAProxy peers port on each gateway host's internal address")

    @field_validator("virtual_address")
    @classmethod
    def _address(cls, v: str) -> str:
        try:
            iface = ipaddress.ip_interface(v)
        except ValueError:
            raise fail("is not an IPv4 address with its prefix length",
                       "give the address clients will use and its network's prefix, e.g. 10.0.0.100/24") from None
        if "/" not in v or iface.version != 4:
            raise fail("is not an IPv4 address with its prefix length",
                       "give the address clients will use and its network's prefix, e.g. 10.0.0.100/24")
        net = iface.network
        if net.prefixlen < 31 and iface.ip in (net.network_address, net.broadcast_address):
            raise fail(f"is the {'network' if iface.ip == net.network_address else 'broadcast'} address of {net}",
                       f"pick a free host address inside {net}, e.g. {net.broadcast_address - 1}")
        if iface.ip.is_loopback or iface.ip.is_multicast or iface.ip.is_unspecified or iface.ip.is_link_local:
            raise fail("is not an address other hosts can reach", "give a free address on the gateway hosts' network")
        return v

    @field_validator("peer_port")
    @classmethod
    def _peer_port(cls, v: int) -> int:
        return _port(v)


class Gateway(Strict):
    port: int = 443
    metrics_port: int = Field(8404, description="internal listener for /metrics (scraping) and the stats page")
    balance: Literal["prefix", "least_conn", "round_robin"] = Field(
        "prefix", description="generate pools: prefix sends a conversation to the replica holding its prefix cache")
    prefix_load_bound: int | None = Field(
        150,
        description="balance prefix (VMs): no replica takes more than this percent of the pool's average requests in "
                    "flight; past it a conversation goes to the next replica on the hash ring (bounded-load "
                    "consistent hashing). null: an unbounded hash")
    clients: list[GatewayClient] = Field(min_length=1)
    tls: GatewayTls = Field(default_factory=GatewayTls)
    health: GatewayHealth = Field(default_factory=GatewayHealth)
    request_timeout_seconds: int = Field(600, ge=1, le=86400)
    high_availability: GatewayHighAvailability | None = Field(
        None, description="VMs: one virtual address over two or more gateway hosts, with shared rate limits")
    kubernetes: dict[str, Any] = Field(default_factory=dict, description="cluster-only settings (parent Gateway, ...)")

    @field_validator("port", "metrics_port")
    @classmethod
    def _ports(cls, v: int) -> int:
        return _port(v)

    @field_validator("prefix_load_bound")
    @classmethod
    def _load_bound(cls, v: int | None) -> int | None:
        if v is not None and not 101 <= v <= 1000:
            raise fail("is not above 100: it is a percent of the pool's average load, and some replica is always "
                       "at or above the average" if v <= 100 else "is above 1000 percent, where it would never act",
                       "give a percent from 101 to 1000, e.g. 150 (the default), or null for an unbounded hash")
        return v

    def secret_refs(self) -> dict[str, SecretRef]:
        refs = {f"clients[{i}].key": c.key for i, c in enumerate(self.clients)}
        if self.tls.key:
            refs["tls.key"] = self.tls.key
        return refs


def gateway_rules(gateway: Gateway, services: Sequence[Service]) -> Iterator[SpecIssue]:
    """Rules between the gateway block and the services: scopes, ports, keys."""
    at = "gateway"
    if gateway.port == gateway.metrics_port:
        yield SpecIssue(f"{at}.metrics_port", show_value(gateway.metrics_port), "is also the gateway's port",
                        "give the metrics listener its own port, e.g. 8404")
    ha = gateway.high_availability
    ports = {"port": gateway.port, "metrics_port": gateway.metrics_port}
    if ha is not None:
        ports["high_availability.peer_port"] = ha.peer_port
        if ha.peer_port in (gateway.port, gateway.metrics_port):
            yield SpecIssue(f"{at}.high_availability.peer_port", show_value(ha.peer_port),
                            "is also one of the gateway's listener ports",
                            "give HAProxy's peers their own port, e.g. 10000")
    models = callable_models(services)
    for svc in services:
        for field, port in ports.items():
            if port == svc.port:
                yield SpecIssue(f"{at}.{field}", show_value(svc.port), f"is also the port of service '{svc.name}'",
                                "give the gateway and each service their own ports")
        if svc.api_key is None:
            yield SpecIssue(f"services[{services.index(svc)}].api_key", "(not set)",
                            "is needed behind a gateway: it is the key between the gateway and this backend",
                            "give the service an api_key ({env: NAME} or {vault: var}), separate from client keys")
    names: dict[str, int] = {}
    keys: dict[str, int] = {}
    backend_keys = {svc.api_key.model_dump_json() for svc in services if svc.api_key}
    for i, client in enumerate(gateway.clients):
        if client.name in names:
            yield SpecIssue(f"{at}.clients[{i}].name", show_value(client.name),
                            f"is already the name of clients[{names[client.name]}]", "give every client its own name")
        names.setdefault(client.name, i)
        ref = client.key.model_dump_json()
        if ref in keys:
            yield SpecIssue(f"{at}.clients[{i}].key", f"{{{client.key.kind}: ...}}",
                            f"is the same reference as clients[{keys[ref]}].key",
                            "give every client its own key, so one can be revoked alone")
        keys.setdefault(ref, i)
        if ref in backend_keys:
            yield SpecIssue(f"{at}.clients[{i}].key", f"{{{client.key.kind}: ...}}",
                            "is also a service's api_key; the key between gateway and backends must stay separate",
                            "give the client a key of its own, separate from every service's api_key")
        for model in client.models:
            if model != ALL_MODELS and model not in models:
                known = ", ".join(sorted(models)) or "none"
                yield SpecIssue(f"{at}.clients[{i}].models", show_value(model),
                                "is not the served model name of any service",
                                f"use one of: {known}, or '*' for every model")
