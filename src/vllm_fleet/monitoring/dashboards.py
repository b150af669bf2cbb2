"""The fleet's Grafana dashboards as code, built with Grafana's own SDK (grafana-foundation-sdk).

Four dashboards over the fleet's Prometheus (jobs and labels as in `rules.py`): a fleet overview, per-service
latency, KV cache and queue, and GPUs (DCGM). Each panel is a `PanelSpec` first, so tests can run every panel's
PromQL against a real Prometheus; `dashboard_json` turns a dashboard into the JSON Grafana provisions from files.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from grafana_foundation_sdk.builders import dashboard as gdash
from grafana_foundation_sdk.builders import prometheus, stat, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import DataSourceRef, VariableRefresh

from vllm_fleet.monitoring.rules import GATEWAY_FRONTEND, JOB_DCGM, JOB_GATEWAY, JOB_NODE, JOB_VLLM

DATASOURCE_UID = "vllm-fleet-prometheus"
DATASOURCE = DataSourceRef(type_val="prometheus", uid=DATASOURCE_UID)
TAG = "vllm-fleet"
# Template variables every dashboard has; Grafana substitutes them (tests do the same with these "all" values).
VARIABLES = {"host": ".*", "service": ".*"}
RATE = "$__rate_interval"

VLLM = f'job="{JOB_VLLM}",host=~"$host",service=~"$service"'
GW = f'job="{JOB_GATEWAY}",host=~"$host"'
GW_FLEET = f'{GW},proxy="{GATEWAY_FRONTEND}"'
NODE = f'job="{JOB_NODE}",host=~"$host"'
DCGM = f'job="{JOB_DCGM}",host=~"$host"'


@dataclass(frozen=True)
class PanelSpec:
    title: str
    queries: tuple[tuple[str, str], ...]  # (PromQL, legend)
    unit: str = "short"
    kind: Literal["timeseries", "stat"] = "timeseries"
    description: str = ""


@dataclass(frozen=True)
class DashboardSpec:
    uid: str
    title: str
    description: str
    panels: tuple[PanelSpec, ...]
    needs_gpu: bool = False


def _quantiles(metric: str) -> tuple[tuple[str, str], ...]:
    return tuple((f"histogram_quantile({q}, sum by (service, le) (rate({metric}_bucket{{{VLLM}}}[{RATE}])))",
                  f"{{{{service}}}} p{int(q * 100)}") for q in (0.5, 0.95, 0.99))


DASHBOARDS: tuple[DashboardSpec, ...] = (
    DashboardSpec("vllm-fleet-overview", "vLLM fleet: overview",
                  "Services up, request and error rates, tokens per second, the gateway and the hosts.", (
        PanelSpec("Services up", ((f'sum(up{{{VLLM}}})', "up"),), kind="stat"),
        PanelSpec("Services down", ((f'count(up{{{VLLM}}} == 0) or vector(0)', "down"),), kind="stat"),
        PanelSpec("Requests finished per second", (
            (f'sum by (service, finished_reason) (rate(vllm:request_success_total{{{VLLM}}}[{RATE}]))',
             "{{service}} {{finished_reason}}"),), unit="reqps"),
        PanelSpec("Gateway responses per second by class", (
            (f'sum by (code) (rate(haproxy_frontend_http_responses_total{{{GW_FLEET}}}[{RATE}]))', "{{code}}"),),
            unit="reqps"),
        PanelSpec("Gateway 5xx ratio", (
            (f'sum(rate(haproxy_frontend_http_responses_total{{{GW_FLEET},code="5xx"}}[{RATE}])) / '
             f'sum(rate(haproxy_frontend_http_requests_total{{{GW_FLEET}}}[{RATE}]))', "5xx"),), unit="percentunit"),
        PanelSpec("Backends in rotation", (
            (f'sum by (proxy) (haproxy_server_status{{{GW},state="UP"}})', "{{proxy}}"),)),
        PanelSpec("Tokens per second", (
            (f'sum by (service) (rate(vllm:generation_tokens_total{{{VLLM}}}[{RATE}]))', "{{service}} generated"),
            (f'sum by (service) (rate(vllm:prompt_tokens_total{{{VLLM}}}[{RATE}]))', "{{service}} prompt")),
            unit="short"),
        PanelSpec("Host CPU busy", (
            (f'1 - avg by (host) (rate(node_cpu_seconds_total{{{NODE},mode="idle"}}[{RATE}]))', "{{host}}"),),
            unit="percentunit"),
        PanelSpec("Host memory available", (
            (f'node_memory_MemAvailable_bytes{{{NODE}}}', "{{host}}"),), unit="bytes"),
    )),
    DashboardSpec("vllm-fleet-latency", "vLLM fleet: latency",
                  "Per service: time to first token, time per output token, inter-token, end-to-end and queue time.", (
        PanelSpec("Time to first token", _quantiles("vllm:time_to_first_token_seconds"), unit="s"),
        PanelSpec("Time per output token", _quantiles("vllm:request_time_per_output_token_seconds"), unit="s"),
        PanelSpec("Inter-token latency", _quantiles("vllm:inter_token_latency_seconds"), unit="s"),
        PanelSpec("End-to-end request latency", _quantiles("vllm:e2e_request_latency_seconds"), unit="s"),
        PanelSpec("Queue time", _quantiles("vllm:request_queue_time_seconds"), unit="s"),
    )),
    DashboardSpec("vllm-fleet-cache", "vLLM fleet: cache and queue",
                  "KV-cache usage, prefix-cache hit rate, running and waiting requests, preemptions.", (
        PanelSpec("KV-cache usage", ((f'vllm:kv_cache_usage_perc{{{VLLM}}}', "{{service}} on {{host}}"),),
                  unit="percentunit"),
        PanelSpec("Prefix-cache hit rate", (
            (f'sum by (service) (rate(vllm:prefix_cache_hits_total{{{VLLM}}}[{RATE}])) / '
             f'sum by (service) (rate(vllm:prefix_cache_queries_total{{{VLLM}}}[{RATE}]))', "{{service}}"),),
            unit="percentunit"),
        PanelSpec("Requests running and waiting", (
            (f'sum by (service) (vllm:num_requests_running{{{VLLM}}})', "{{service}} running"),
            (f'sum by (service) (vllm:num_requests_waiting{{{VLLM}}})', "{{service}} waiting"))),
        PanelSpec("Preemptions per second", (
            (f'sum by (service) (rate(vllm:num_preemptions_total{{{VLLM}}}[{RATE}]))', "{{service}}"),)),
    )),
    DashboardSpec("vllm-fleet-gpu", "vLLM fleet: GPUs",
                  "NVIDIA DCGM exporter: utilisation, memory, power, temperature and XID errors per GPU.", (
        PanelSpec("GPU utilisation", ((f'DCGM_FI_DEV_GPU_UTIL{{{DCGM}}}', "{{host}} GPU {{gpu}}"),), unit="percent"),
        PanelSpec("GPU memory used", ((f'DCGM_FI_DEV_FB_USED{{{DCGM}}} * 1024 * 1024', "{{host}} GPU {{gpu}}"),),
                  unit="bytes"),
        PanelSpec("GPU power", ((f'DCGM_FI_DEV_POWER_USAGE{{{DCGM}}}', "{{host}} GPU {{gpu}}"),), unit="watt"),
        PanelSpec("GPU temperature", ((f'DCGM_FI_DEV_GPU_TEMP{{{DCGM}}}', "{{host}} GPU {{gpu}}"),),
                  unit="celsius"),
        PanelSpec("Last XID error", ((f'DCGM_FI_DEV_XID_ERRORS{{{DCGM}}}', "{{host}} GPU {{gpu}}"),)),
    ), needs_gpu=True),
)

# The DCGM exporter fields the GPU dashboard and alerts read; the monitoring role gives the exporter this list.
DCGM_FIELDS: tuple[tuple[str, str, str], ...] = (
    ("DCGM_FI_DEV_GPU_UTIL", "gauge", "GPU utilization (in %)."),
    ("DCGM_FI_DEV_FB_USED", "gauge", "Framebuffer memory used (in MiB)."),
    ("DCGM_FI_DEV_POWER_USAGE", "gauge", "Power draw (in W)."),
    ("DCGM_FI_DEV_GPU_TEMP", "gauge", "GPU temperature (in C)."),
    ("DCGM_FI_DEV_XID_ERRORS", "gauge", "Value of the last XID error encountered."),
    ("DCGM_FI_DEV_ECC_DBE_VOL_TOTAL", "counter", "Total number of double-bit volatile ECC errors."),
)


def _variable(name: str, metric: str) -> gdash.QueryVariable:
    return (gdash.QueryVariable(name).label(name).datasource(DATASOURCE)
            .query(f"label_values({metric}, {name})").refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
            .multi(True).include_all(True).all_value(".*"))


def _panel(spec: PanelSpec) -> Any:
    builder = (stat.Panel() if spec.kind == "stat" else timeseries.Panel()).title(spec.title).unit(spec.unit)
    builder = builder.datasource(DATASOURCE).span(12 if spec.kind == "timeseries" else 6).height(8)
    if spec.description:
        builder = builder.description(spec.description)
    for ref, (expr, legend) in zip("ABCDEFGH", spec.queries, strict=False):
        builder = builder.with_target(prometheus.Dataquery().expr(expr).legend_format(legend).ref_id(ref)
                                      .datasource(DATASOURCE))
    return builder


def dashboard_json(spec: DashboardSpec) -> dict[str, Any]:
    """The dashboard as Grafana's JSON model, ready to provision from a file."""
    builder = (gdash.Dashboard(spec.title).uid(spec.uid).description(spec.description).tags([TAG])
               .refresh("30s").time("now-1h", "now").timezone("browser").editable()
               .with_variable(_variable("host", "up"))
               .with_variable(_variable("service", f'vllm:num_requests_running{{job="{JOB_VLLM}"}}')))
    for panel in spec.panels:
        builder = builder.with_panel(_panel(panel))
    encoded: dict[str, Any] = json.loads(json.dumps(builder.build(), cls=JSONEncoder))
    return encoded


def all_dashboards() -> dict[str, dict[str, Any]]:
    """Every dashboard's JSON by file name (uid.json)."""
    return {f"{d.uid}.json": dashboard_json(d) for d in DASHBOARDS}


def panel_queries(include_gpu: bool = True) -> list[tuple[str, str, str]]:
    """(dashboard uid, panel title, PromQL) for every query of every panel."""
    return [(d.uid, p.title, expr) for d in DASHBOARDS if include_gpu or not d.needs_gpu
            for p in d.panels for expr, _ in p.queries]


def resolve(expr: str, rate_interval: str = "1m") -> str:
    """A panel's query as Grafana sends it with every variable at "all" (tests run it through the HTTP API)."""
    for name, value in VARIABLES.items():
        expr = expr.replace(f"${name}", value)
    return expr.replace(RATE, rate_interval)
