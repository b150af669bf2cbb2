"""The alert rules the fleet's Prometheus loads, from the spec's thresholds and each service's SLO.

Scrape jobs and their labels are a contract between these rules, the dashboards and the targets the monitoring role
writes (file-based service discovery): every target has `host`; vLLM targets also `service`, `model` and `task`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from vllm_fleet.spec.monitoring import AlertThresholds, Monitoring, ServiceSlo

JOB_VLLM = "vllm"
JOB_GATEWAY = "gateway"
JOB_NODE = "node"
JOB_DCGM = "dcgm"
JOB_PROMETHEUS = "prometheus"
JOB_ALERTMANAGER = "alertmanager"
# The gateway's public frontend in HAProxy (the metrics listener is another frontend, left out of ratios).
GATEWAY_FRONTEND = "fleet"
EXPORTER_JOBS = (JOB_GATEWAY, JOB_NODE, JOB_DCGM, JOB_ALERTMANAGER)

# One SLO field: its alert, its histogram and what it measures.
SLO_METRICS: dict[str, tuple[str, str, str]] = {
    "ttft_p95_seconds": ("VllmTimeToFirstTokenSlo", "vllm:time_to_first_token_seconds_bucket", "time to first token"),
    "itl_p95_seconds": ("VllmInterTokenLatencySlo", "vllm:inter_token_latency_seconds_bucket", "inter-token latency"),
    "e2e_p95_seconds": ("VllmEndToEndLatencySlo", "vllm:e2e_request_latency_seconds_bucket", "end-to-end latency"),
}


def _alert(name: str, expr: str, minutes: int, severity: str, summary: str, description: str) -> dict[str, Any]:
    rule: dict[str, Any] = {"alert": name, "expr": expr}
    if minutes:
        rule["for"] = f"{minutes}m"
    rule["labels"] = {"severity": severity}
    rule["annotations"] = {"summary": summary, "description": description}
    return rule


def _service_rules(t: AlertThresholds) -> list[dict[str, Any]]:
    on = '{{ $labels.service }} on {{ $labels.host }}'
    return [
        _alert("VllmServiceDown", f'up{{job="{JOB_VLLM}"}} == 0', t.down_minutes, "critical",
               f"{on} is down", f"Prometheus cannot scrape {on} ({{{{ $labels.instance }}}}) for "
               f"{t.down_minutes} minutes: the container is stopped, crashing or unreachable."),
        _alert("VllmBackendOutOfRotation",
               f'max by (host, proxy, server) (haproxy_server_status{{job="{JOB_GATEWAY}",state!="UP"}}) == 1',
               t.down_minutes, "critical", "gateway backend {{ $labels.server }} fails its health check",
               "The gateway on {{ $labels.host }} has taken {{ $labels.server }} out of rotation: its /health "
               f"has not answered for {t.down_minutes} minutes."),
        _alert("VllmRestartLoop",
               f'changes(process_start_time_seconds{{job="{JOB_VLLM}"}}[{t.restart_window_minutes}m]) '
               f'>= {t.restarts}', 0, "critical", f"{on} is restarting in a loop",
               f"{on} started {{{{ $value }}}} times in {t.restart_window_minutes} minutes; read its log "
               "(vllm-fleet logs)."),
        _alert("VllmKvCacheHigh", f'vllm:kv_cache_usage_perc{{job="{JOB_VLLM}"}} * 100 > {t.kv_cache_usage_percent:g}',
               t.kv_cache_minutes, "warning", f"{on}: KV cache above {t.kv_cache_usage_percent:g}%",
               f"KV-cache usage is {{{{ $value | humanize }}}}% for {t.kv_cache_minutes} minutes; requests will "
               "queue or be preempted. Add replicas or lower max_num_seqs."),
        _alert("VllmRequestsWaiting", f'vllm:num_requests_waiting{{job="{JOB_VLLM}"}} > {t.requests_waiting}',
               t.requests_waiting_minutes, "warning", f"{on}: requests waiting",
               f"{{{{ $value }}}} requests wait for a slot for {t.requests_waiting_minutes} minutes (threshold "
               f"{t.requests_waiting})."),
    ]


def _slo_rules(slos: Mapping[str, ServiceSlo]) -> list[dict[str, Any]]:
    rules = []
    for service, slo in sorted(slos.items()):
        for field, (name, metric, what) in SLO_METRICS.items():
            objective = getattr(slo, field)
            if objective is None:
                continue
            expr = (f'histogram_quantile(0.95, sum by (host, service, le) '
                    f'(rate({metric}{{job="{JOB_VLLM}",service="{service}"}}[5m]))) > {objective:g}')
            rules.append(_alert(
                name, expr, slo.for_minutes, "warning",
                f"{{{{ $labels.service }}}} on {{{{ $labels.host }}}} misses its {what} SLO",
                f"p95 {what} is {{{{ $value | humanizeDuration }}}} over 5 minutes; the objective is {objective:g} s "
                f"(services.{service}.slo.{field})."))
    return rules


def _gateway_rules(t: AlertThresholds) -> list[dict[str, Any]]:
    _fleet = f'job="{JOB_GATEWAY}",proxy="{GATEWAY_FRONTEND}"'
    ratio = (f'100 * sum by (host) (rate(haproxy_frontend_http_responses_total{{{_fleet},code="5xx"}}[5m]))'
             f' / sum by (host) (rate(haproxy_frontend_http_requests_total{{{_fleet}}}[5m]))')
    return [_alert("GatewayErrorRatioHigh", f"{ratio} > {t.gateway_5xx_percent:g}", t.gateway_5xx_minutes,
                   "critical", "gateway on {{ $labels.host }} answers 5xx",
                   f"{{{{ $value | humanize }}}}% of the gateway's responses are 5xx for {t.gateway_5xx_minutes} "
                   f"minutes (threshold {t.gateway_5xx_percent:g}%).")]


def _host_rules(t: AlertThresholds) -> list[dict[str, Any]]:
    jobs = "|".join(EXPORTER_JOBS)
    return [_alert("ExporterDown", f'up{{job=~"{jobs}"}} == 0', t.down_minutes, "warning",
                   "{{ $labels.job }} on {{ $labels.host }} cannot be scraped",
                   f"Prometheus has not scraped {{{{ $labels.job }}}} at {{{{ $labels.instance }}}} for "
                   f"{t.down_minutes} minutes.")]


def _gpu_rules(t: AlertThresholds) -> list[dict[str, Any]]:
    gpu = "GPU {{ $labels.gpu }} on {{ $labels.host }}"
    return [
        _alert("GpuXidError", f'max_over_time(DCGM_FI_DEV_XID_ERRORS{{job="{JOB_DCGM}"}}[5m]) > 0', 0, "critical",
               f"{gpu} reported XID {{{{ $value }}}}",
               "The driver reported an XID error; see NVIDIA's XID table. Drain the host if it repeats."),
        _alert("GpuEccDoubleBitErrors", f'increase(DCGM_FI_DEV_ECC_DBE_VOL_TOTAL{{job="{JOB_DCGM}"}}[10m]) > 0', 0,
               "critical", f"{gpu} has uncorrectable ECC errors",
               "Double-bit (uncorrectable) ECC errors appeared in the last 10 minutes; the GPU needs a reset or "
               "replacement."),
        _alert("GpuTemperatureHigh", f'DCGM_FI_DEV_GPU_TEMP{{job="{JOB_DCGM}"}} > {t.gpu_temperature_celsius}', 5,
               "warning", f"{gpu} runs hot",
               f"{{{{ $value }}}} °C for 5 minutes (threshold {t.gpu_temperature_celsius} °C); check cooling."),
    ]


def alert_rules(monitoring: Monitoring, slos: Mapping[str, ServiceSlo]) -> dict[str, Any]:
    """The rules file (Prometheus's `groups:` format): the block's thresholds, and each service's SLO by name."""
    t = monitoring.alerts
    groups = [
        {"name": "vllm-fleet-services", "rules": _service_rules(t) + _slo_rules(slos)},
        {"name": "vllm-fleet-gateway", "rules": _gateway_rules(t)},
        {"name": "vllm-fleet-hosts", "rules": _host_rules(t)},
        {"name": "vllm-fleet-gpus", "rules": _gpu_rules(t)},
    ]
    return {"groups": groups}
