"""What `vllm-fleet status` reports: one row per service per host, read from the host and its metrics.

The status playbook (playbooks/status.yml) reads, on each serving host, every planned service's container
(`docker inspect` through community.docker), its /health and two samples of its /metrics; on gateway hosts, HAProxy's
stats (CSV from the internal listener). These functions turn those raw answers into rows; nothing here contacts a
host, and nothing the playbook does changes one.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from vllm_fleet.vm.planning.plan import LABEL_PREFIX, ServicePlan

# The vLLM metrics a row shows (gauges), and the counter whose rate is the row's tokens per second.
GAUGES = {"running": "vllm:num_requests_running", "waiting": "vllm:num_requests_waiting",
          "kv_cache_usage": "vllm:kv_cache_usage_perc"}
TOKENS = "vllm:generation_tokens"


def metric_values(text: str) -> dict[str, float]:
    """Each metric family's samples summed (over engines and label sets), from Prometheus's text format."""
    from prometheus_client.parser import text_string_to_metric_families

    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text or ""):
        for sample in family.samples:
            if sample.name in (family.name, f"{family.name}_total"):
                values[family.name] = values.get(family.name, 0.0) + float(sample.value)
    return values


def _started(state: Mapping[str, Any], now: datetime) -> float | None:
    started = str(state.get("StartedAt") or "")
    if not state.get("Running") or not started or started.startswith("0001-"):
        return None
    # Docker gives nanoseconds, which fromisoformat does not take: whole seconds are enough for an uptime.
    when = datetime.fromisoformat(started.rstrip("Z").partition(".")[0]).replace(tzinfo=UTC)
    return max(0.0, (now - when).total_seconds())


def service_row(host: str, svc: ServicePlan, container: Mapping[str, Any] | None, health: int | None,
                first: str | None, second: str | None, interval: float,
                now: datetime | None = None, label_prefix: str = LABEL_PREFIX) -> dict[str, Any]:
    """One service on one host. `container` is docker inspect's answer (None when there is no such container),
    `health` the status of GET /health (None when nothing answered), first/second two /metrics texts."""
    now = now or datetime.now(UTC)
    state = (container or {}).get("State") or {}
    labels = ((container or {}).get("Config") or {}).get("Labels") or {}
    row: dict[str, Any] = {
        "host": host, "service": svc.name, "model": svc.served_model_name, "task": svc.task,
        "container": svc.container.name,
        "state": str(state.get("Status") or "missing"),
        "uptime_seconds": _started(state, now),
        "restarts": int((container or {}).get("RestartCount") or 0),
        "health": health,
        "revision": labels.get(f"{label_prefix}.revision"),
        "gateway_server": svc.gateway_server, "gateway_backend": svc.gateway_backend, "gateway": None,
    }
    a, b = metric_values(first or ""), metric_values(second or "")
    for key, metric in GAUGES.items():
        row[key] = b.get(metric, a.get(metric))
    tokens = (b[TOKENS] - a[TOKENS]) / interval if TOKENS in a and TOKENS in b and interval > 0 else None
    row["tokens_per_second"] = max(0.0, tokens) if tokens is not None else None
    return row


def haproxy_servers(stats_csv: str) -> dict[str, str]:
    """HAProxy's `show stat` CSV: each server's status (UP, DOWN, MAINT, DRAIN, ...) by "backend/server"."""
    text = (stats_csv or "").lstrip("# ")
    servers = {}
    for rec in csv.DictReader(io.StringIO(text)):
        if rec.get("svname") not in (None, "FRONTEND", "BACKEND"):
            servers[f"{rec['pxname']}/{rec['svname']}"] = str(rec.get("status") or "")
    return servers


def with_gateway(rows: Sequence[dict[str, Any]], views: Mapping[str, Mapping[str, str]]) -> list[dict[str, Any]]:
    """Each row with the gateway's view of its server (the status every gateway host reports, joined by ', ' when
    they differ); rows of a fleet without a gateway keep None."""
    out = []
    for row in rows:
        key = f"{row['gateway_backend']}/{row['gateway_server']}"
        seen = sorted({view[key] for view in views.values() if key in view})
        out.append({**row, "gateway": ", ".join(seen) if seen else None})
    return out


def problems(rows: Sequence[dict[str, Any]]) -> list[str]:
    """Why a service is unhealthy, one line each naming host and service; empty when all are well."""
    found = []
    for r in rows:
        why = []
        if r["state"] != "running":
            why.append(f"container {r['container']} is {r['state']}")
        elif r["health"] != 200:
            why.append(f"/health answered {r['health'] if r['health'] is not None else 'nothing'}")
        if r["gateway"] is not None and not str(r["gateway"]).startswith("UP"):
            why.append(f"out of the gateway's rotation ({r['gateway']})")
        if why:
            found.append(f"{r['service']} on {r['host']}: {'; '.join(why)}")
    return found
