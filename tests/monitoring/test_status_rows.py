"""`vllm-fleet status` rows from what the status playbook reads: docker inspect, /health, two /metrics samples and
HAProxy's stats CSV (the real formats; the e2e runs the command against the serving world)."""

from __future__ import annotations

from datetime import UTC, datetime

from vllm_fleet.vm.planning.fleet import plan_for_host
from vllm_fleet.vm.play.status import haproxy_servers, metric_values, problems, service_row, with_gateway

SPEC = {"services": [{"name": "chat", "storage_uri": "file:///m/chat", "accelerator": "cpu", "gpus": 0}]}
CHAT = plan_for_host(SPEC, "10.0.0.1", host_name="h1").services[0]

METRICS = """# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{{engine="0",model_name="chat"}} 3.0
# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{{engine="0",model_name="chat"}} 1.0
# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{{engine="0",model_name="chat"}} 0.25
# HELP vllm:generation_tokens_total Number of generation tokens processed.
# TYPE vllm:generation_tokens_total counter
vllm:generation_tokens_total{{engine="0",model_name="chat"}} {tokens}
vllm:generation_tokens_created{{engine="0",model_name="chat"}} 1.7e+09
"""

INSPECT = {"State": {"Status": "running", "Running": True, "StartedAt": "2026-12-02T08:00:00.123456789Z"},
           "RestartCount": 2, "Config": {"Labels": {"io.vllm-fleet.revision": "abc123"}}}
STATS = ("# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,wredis,status,\n"
         "fleet,FRONTEND,,,0,1,,5,,,,,,,,,,OPEN,\n"
         "pool_chat,h1.chat,0,0,0,1,,5,,,,,,0,0,0,0,UP,\n"
         "pool_chat,h2.chat,0,0,0,1,,5,,,,,,0,0,0,0,DOWN,\n"
         "pool_chat,BACKEND,0,0,0,1,,5,,,,,,0,0,0,0,UP,\n")


def test_a_running_service_row_has_uptime_restarts_revision_gauges_and_tokens_per_second() -> None:
    now = datetime(2026, 12, 2, 9, 0, 0, tzinfo=UTC)
    row = service_row("h1", CHAT, INSPECT, 200, METRICS.format(tokens=100.0), METRICS.format(tokens=130.0), 2.0,
                      now=now)
    assert row["state"] == "running" and row["uptime_seconds"] == 3600 and row["restarts"] == 2
    assert row["revision"] == "abc123" and row["health"] == 200 and row["model"] == "chat"
    assert (row["running"], row["waiting"], row["kv_cache_usage"]) == (3.0, 1.0, 0.25)
    assert row["tokens_per_second"] == 15.0
    assert metric_values(METRICS.format(tokens=7))["vllm:generation_tokens"] == 7.0


def test_a_missing_container_and_a_stopped_backend_are_problems_naming_host_and_service() -> None:
    rows = [service_row("h1", CHAT, INSPECT, 200, None, None, 2.0),
            service_row("h2", CHAT, None, None, None, None, 2.0)]
    view = haproxy_servers(STATS)
    assert view == {"pool_chat/h1.chat": "UP", "pool_chat/h2.chat": "DOWN"}
    rows[1]["gateway_server"] = "h2.chat"
    joined = with_gateway(rows, {"gw": view})
    assert [r["gateway"] for r in joined] == ["UP", "DOWN"]
    assert joined[1]["state"] == "missing" and joined[1]["tokens_per_second"] is None
    assert problems(joined) == ["chat on h2: container vllm-chat is missing; out of the gateway's rotation (DOWN)"]
    assert problems(with_gateway(rows[:1], {})) == []
