"""The spec's `monitoring:` block and each service's `slo:`: what the fleet's Prometheus scrapes, keeps and alerts on.

One block for the fleet (scrape interval, retention, alert thresholds, the Alertmanager receiver by reference) and,
per service, latency objectives the alerts hold it to. Cross-field rules that need the services (an SLO on a task
that has no such metric) are in `monitoring_rules`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Annotated

from pydantic import Field

from vllm_fleet.spec.errors import SpecIssue, matching, show_value
from vllm_fleet.spec.model import SecretRef, Strict

if TYPE_CHECKING:
    from vllm_fleet.spec.model import Service

# The one user of Prometheus's, Alertmanager's and the node exporter's basic auth (web.config).
MONITORING_USER = "vllm-fleet"
# Prometheus's duration syntax for --storage.tsdb.retention.time, one unit.
RETENTION = re.compile(r"^[1-9][0-9]*(h|d|w|y)$")
# The latency objectives each task has a vLLM metric for: pooling models produce no tokens one by one.
SLO_TASKS: dict[str, tuple[str, ...]] = {
    "ttft_p95_seconds": ("generate",),
    "itl_p95_seconds": ("generate",),
    "e2e_p95_seconds": ("generate", "embed", "score"),
}


class ServiceSlo(Strict):
    """Latency objectives for one service, as 95th percentiles over 5 minutes; each set one becomes an alert."""

    ttft_p95_seconds: float | None = Field(None, gt=0, le=600, description="time to first token")
    itl_p95_seconds: float | None = Field(None, gt=0, le=60, description="inter-token latency")
    e2e_p95_seconds: float | None = Field(None, gt=0, le=3600, description="end-to-end request latency")
    for_minutes: int = Field(5, ge=1, le=1440, description="how long the objective is missed before the alert fires")


class AlertThresholds(Strict):
    """When the shipped alerts fire. Percentages are 0-100; durations are how long a condition holds first."""

    down_minutes: int = Field(2, ge=1, le=1440, description="a service or exporter unreachable, or out of rotation")
    restarts: int = Field(3, ge=1, le=100, description="process restarts within restart_window_minutes")
    restart_window_minutes: int = Field(15, ge=5, le=1440)
    kv_cache_usage_percent: float = Field(90, gt=0, le=100)
    kv_cache_minutes: int = Field(5, ge=1, le=1440)
    requests_waiting: int = Field(10, ge=1, le=1_000_000)
    requests_waiting_minutes: int = Field(5, ge=1, le=1440)
    gateway_5xx_percent: float = Field(5, gt=0, le=100)
    gateway_5xx_minutes: int = Field(5, ge=1, le=1440)
    gpu_temperature_celsius: int = Field(85, ge=40, le=120)


class Alertmanager(Strict):
    """Where firing alerts go: a webhook (Slack, PagerDuty, Teams or any receiver), its URL by reference only."""

    webhook_url: SecretRef | None = Field(None, description="the receiver's URL; it carries a token, so a reference")
    repeat_interval_minutes: int = Field(240, ge=1, le=10080)


class Monitoring(Strict):
    """The fleet's Prometheus, Alertmanager and exporters. Prometheus, Alertmanager and the node exporter take
    basic auth (user MONITORING_USER) over TLS from the fleet's internal CA; Grafana a login."""

    password: SecretRef | None = Field(
        None, description=f"the password of user {MONITORING_USER!r} on Prometheus, Alertmanager and the node "
        "exporter, by reference (VMs); unset: generated once on the controller")
    grafana_admin_password: SecretRef | None = Field(
        None, description="Grafana's admin password, by reference (VMs); unset: generated once on the controller")
    scrape_interval_seconds: int = Field(15, ge=1, le=300)
    retention: Annotated[str, matching(RETENTION, "is not a Prometheus retention",
                                       "give a number and one unit, e.g. 15d, 72h or 8w")] = Field(
        "15d", description="how long Prometheus keeps samples: a number and h, d, w or y")
    alerts: AlertThresholds = Field(default_factory=AlertThresholds)
    alertmanager: Alertmanager = Field(default_factory=Alertmanager)
    prometheus_port: int = Field(9090, ge=1024, le=65535)
    alertmanager_port: int = Field(9093, ge=1024, le=65535)
    node_exporter_port: int = Field(9100, ge=1024, le=65535)
    dcgm_exporter_port: int = Field(9400, ge=1024, le=65535)

    def secret_refs(self) -> dict[str, SecretRef]:
        refs = {"alertmanager.webhook_url": self.alertmanager.webhook_url, "password": self.password,
                "grafana_admin_password": self.grafana_admin_password}
        return {path: ref for path, ref in refs.items() if ref is not None}

    def ports(self) -> dict[str, int]:
        return {f: getattr(self, f) for f in ("prometheus_port", "alertmanager_port", "node_exporter_port",
                                              "dcgm_exporter_port")}


def monitoring_rules(monitoring: Monitoring | None, services: Sequence[Service]) -> Iterator[SpecIssue]:
    """SLOs only where the task has the metric; monitoring ports apart from each other and from the services."""
    for i, svc in enumerate(services):
        if svc.slo is None:
            continue
        for field, tasks in SLO_TASKS.items():
            value = getattr(svc.slo, field)
            if value is not None and svc.task.value not in tasks:
                yield SpecIssue(f"services[{i}].slo.{field}", show_value(value),
                                f"is set on a '{svc.task.value}' service, which vLLM gives no such metric "
                                "(pooling models produce no tokens one by one)",
                                "remove it; e2e_p95_seconds applies to every task")
    if monitoring is None:
        return
    seen: dict[int, str] = {}
    for field, port in monitoring.ports().items():
        if port in seen:
            yield SpecIssue(f"monitoring.{field}", show_value(port), f"is also monitoring.{seen[port]}",
                            "give each listener its own port")
        seen.setdefault(port, field)
        for svc in services:
            if svc.port == port:
                yield SpecIssue(f"monitoring.{field}", show_value(port), f"is also the port of service '{svc.name}'",
                                "give monitoring and each service their own ports")
