"""The fleet's monitoring in the serving world: Prometheus (Debian's) on the serving host scrapes every real vLLM
service on both hosts, the gateway and both node exporters; every dashboard panel's query returns data from it after
traffic; the shipped rules are loaded and a real alert reaches the webhook receiver through Alertmanager.

Runs after tests/serving/test_gateway_e2e.py in the session: the fleet is deployed with its monitoring block (the
`fleet` fixture) and tiny-chat serves on the second host too."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tests.serving.test_gateway_e2e import CHAT_ONLY_SPEC, gw
from tests.worlds import CHAT_SLO, FLEET_SPEC, MONITORING_PASSWORD, PEER_FANOUT, AlertReceiver, ServingHost
from vllm_fleet.monitoring.dashboards import panel_queries, resolve
from vllm_fleet.monitoring.rules import alert_rules
from vllm_fleet.spec.monitoring import MONITORING_USER, Monitoring, ServiceSlo

pytestmark = [pytest.mark.world, pytest.mark.vllm, pytest.mark.slow, pytest.mark.timeout(1800)]

PROMETHEUS_PORT = 9090


def prometheus(host: ServingHost, path: str, **params: str) -> dict[str, Any]:
    """Prometheus's HTTP API on the monitoring host's internal address, from this machine (a trusted source of the
    firewall), as the monitoring user over TLS from the fleet's internal CA."""
    resp = requests.get(f"https://{host.backend_address}:{PROMETHEUS_PORT}{path}", params=params, timeout=30,
                        auth=(MONITORING_USER, MONITORING_PASSWORD), verify=host.monitoring_pki / "ca.pem")
    resp.raise_for_status()
    data: dict[str, Any] = resp.json()
    assert data["status"] == "success", data
    return data["data"]


@pytest.fixture(scope="module")
def monitored(serving_host: ServingHost, second_serving_host: ServingHost, fleet: dict[str, Any]
              ) -> Iterator[ServingHost]:
    """The monitoring stage once more over both hosts, with the inventory of the last deploy (peer fan-out): it
    must change nothing, the firewall stage it runs first included (tests/serving/test_network_scan_e2e.py scans
    the rules this leaves). The second host's node exporter is
    then stopped, so that ExporterDown fires while the other steps run, and started again at the end."""
    result = serving_host.deploy(FLEET_SPEC, tags="monitoring", others=[second_serving_host],
                                 others_spec=CHAT_ONLY_SPEC, extra_vars=PEER_FANOUT)
    assert result["ok"], result["output"][-6000:]
    changed = {h: result["hosts"][h]["changed"] for h in (serving_host.name, second_serving_host.name)}
    assert changed == {serving_host.name: 0, second_serving_host.name: 0}, changed
    second_serving_host.exec("systemctl", "stop", "prometheus-node-exporter")
    try:
        yield serving_host
    finally:
        second_serving_host.exec("systemctl", "start", "prometheus-node-exporter")


def test_prometheus_scrapes_every_service_on_both_hosts_the_gateway_and_the_node_exporters(
        monitored: ServingHost, second_serving_host: ServingHost) -> None:
    deadline = time.monotonic() + 60
    while True:
        targets = prometheus(monitored, "/api/v1/targets", state="active")["activeTargets"]
        up = {(t["labels"]["job"], t["labels"]["host"], t["labels"].get("service", "")): t["health"]
              for t in targets}
        services = {(monitored.name, s["name"]) for s in FLEET_SPEC["services"]}
        services |= {(second_serving_host.name, s["name"]) for s in CHAT_ONLY_SPEC["services"]}
        want = {("vllm", h, s) for h, s in services} | {("gateway", monitored.name, ""),
                                                        ("node", monitored.name, ""),
                                                        ("prometheus", monitored.name, ""),
                                                        ("alertmanager", monitored.name, "")}
        if all(up.get(t) == "up" for t in want) or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert {t: up.get(t) for t in want} == dict.fromkeys(want, "up")
    # Both hosts are node targets; the second one's exporter was stopped by the fixture. No DCGM on CPU hosts.
    assert ("node", second_serving_host.name, "") in up
    assert not [t for t in up if t[0] == "dcgm"]
    vllm = [t for t in targets if t["labels"]["job"] == "vllm"]
    assert all({"model", "task", "service", "host"} <= set(t["labels"]) for t in vllm)
    print(f"monitoring: {len(want)} targets up ({len(vllm)} vLLM services on 2 hosts), scraped every 5 s")


def test_every_dashboard_panel_query_returns_data_after_traffic(monitored: ServingHost) -> None:
    """Traffic through the gateway for every task, then each panel's PromQL (Grafana's variables at "all",
    $__rate_interval 1m) through Prometheus's HTTP API. GPU panels are checked against DCGM's series in
    tests/monitoring/test_dashboards.py: there is no GPU here."""
    for i in range(16):
        assert gw(monitored, "/v1/chat/completions", {"model": "tiny-chat", "max_tokens": 8, "messages": [
            {"role": "system", "content": "Be brief."}, {"role": "user", "content": f"Say {i}"}]})[0] == 200
    for i in range(4):
        assert gw(monitored, "/v1/embeddings", {"model": "tiny-embed", "input": [f"text {i}"]})[0] == 200
        assert gw(monitored, "/v1/rerank", {"model": "tiny-rerank", "query": "q", "documents": ["a", "b"]})[0] == 200
    time.sleep(12)  # two scrapes
    empty = []
    queries = panel_queries(include_gpu=False)
    for uid, title, expr in queries:
        result = prometheus(monitored, "/api/v1/query", query=resolve(expr))["result"]
        if not result:
            empty.append(f"{uid} / {title}: {resolve(expr)}")
    print(f"monitoring: {len(queries)} panel queries of {len({q[0] for q in queries})} dashboards, "
          f"{len(queries) - len(empty)} returned data")
    assert empty == []


def test_the_shipped_rules_are_loaded_and_an_alert_reaches_the_webhook(
        monitored: ServingHost, second_serving_host: ServingHost, alert_receiver: AlertReceiver) -> None:
    """Prometheus evaluates every shipped rule; the stopped node exporter fires ExporterDown (down_minutes 1),
    and Alertmanager delivers it to the webhook named by reference."""
    shipped = alert_rules(Monitoring.model_validate(FLEET_SPEC["monitoring"]), {"tiny-chat": ServiceSlo(**CHAT_SLO)})
    groups = prometheus(monitored, "/api/v1/rules")["groups"]
    rules = [r for g in groups for r in g["rules"]]
    assert sorted(r["name"] for r in rules) == sorted(r["alert"] for g in shipped["groups"] for r in g["rules"])
    assert all(r["health"] == "ok" for r in rules), [r for r in rules if r["health"] != "ok"]
    started = time.monotonic()
    deadline = started + 300

    def ours() -> list[dict[str, Any]]:
        return [a for a in alert_receiver.firing("ExporterDown")
                if (a["labels"].get("job"), a["labels"].get("host")) == ("node", second_serving_host.name)]

    while not ours() and time.monotonic() < deadline:
        time.sleep(3)
    seen = [a["labels"] for n in alert_receiver.received for a in n.get("alerts", [])]
    print(f"monitoring: {len(rules)} rules loaded; ExporterDown for {second_serving_host.name}'s node exporter "
          f"delivered to the webhook {time.monotonic() - started:.0f} s into this step; {len(seen)} alerts "
          f"delivered in the session: {sorted({x.get('alertname', '?') for x in seen})}")
    assert ours(), seen
    labels = ours()[0]["labels"]
    assert (labels["severity"], labels["instance"]) == ("warning", f"{second_serving_host.backend_address}:9100")
