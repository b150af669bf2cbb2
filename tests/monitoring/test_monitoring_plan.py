"""The fleet's monitoring plan from the serving hosts' plans: targets by file discovery with their labels, the
rules and dashboards it carries, and the fleet-level problems it refuses before any host is touched (through
`vllm-fleet validate -i`, as users run it)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from tests.gateway.test_gateway_plan import ENV, SPEC, fleet, issues, validate_refuses
from vllm_fleet.vm.planning.fleet import InventoryError

MONITORED: dict[str, Any] = {**copy.deepcopy(SPEC), "monitoring": {
    "alertmanager": {"webhook_url": {"env": "ALERT_HOOK"}}}}
MONITORED["services"][0]["slo"] = {"ttft_p95_seconds": 0.8}
BACKEND = {"h1": "192.168.7.1", "h2": "192.168.7.2"}


def test_targets_cover_every_service_exporter_and_the_gateway_with_their_labels() -> None:
    plan = fleet({"h1": MONITORED, "h2": MONITORED}, BACKEND, {"h1": "10.0.0.1"}, ["h1"], {"h2": False}).monitoring
    assert plan is not None
    vllm = {(g.labels["host"], g.labels["service"]): (g.targets, g.labels) for g in plan.targets["vllm"]}
    assert vllm[("h2", "embed")] == (["192.168.7.2:8001"], {"host": "h2", "service": "embed", "model": "embed",
                                                            "task": "embed"})
    assert len(vllm) == 4
    assert [(g.targets, g.labels) for g in plan.targets["node"]] == [
        (["192.168.7.1:9100"], {"host": "h1"}), (["192.168.7.2:9100"], {"host": "h2"})]
    assert [g.targets for g in plan.targets["dcgm"]] == [["192.168.7.1:9400"]]  # h2 is a CPU host
    assert [g.targets for g in plan.targets["gateway"]] == [["192.168.7.1:8404"]]
    assert plan.webhook_ref == {"env": "ALERT_HOOK"} and plan.retention == "15d"
    alerts = [r["alert"] for g in plan.rules["groups"] for r in g["rules"]]
    assert "VllmTimeToFirstTokenSlo" in alerts and len(plan.dashboards) == 4


def test_no_monitoring_block_and_no_monitoring_hosts_plan_nothing() -> None:
    bare = {k: v for k, v in SPEC.items() if k != "gateway"}
    assert fleet({"h1": bare}).monitoring is None


def test_fleet_problems_are_refused_naming_host_field_and_fix() -> None:
    other = copy.deepcopy(MONITORED)
    other["monitoring"]["retention"] = "30d"
    other["services"][0]["slo"] = {"ttft_p95_seconds": 2.0}
    with pytest.raises(InventoryError) as exc:
        fleet({"h1": MONITORED, "h2": other}, BACKEND, {"h1": "10.0.0.1"}, ["h1"])
    assert [p for p, _ in issues(exc)] == ["vllm_fleet_spec.monitoring of h2", "services.chat.slo on h2"]
    with pytest.raises(InventoryError) as exc:
        fleet({"h1": MONITORED}, None, {"h1": "10.0.0.1"}, [])
    assert [p for p, _ in issues(exc)] == ["group vllm_monitoring"]
    with pytest.raises(InventoryError) as exc:
        fleet({"h1": SPEC}, None, {"h1": "10.0.0.1"}, ["h1"])
    assert "no monitoring block" in issues(exc)[0][1]


def test_validate_on_an_inventory_refuses_targets_the_monitoring_host_cannot_reach(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in {**ENV, "ALERT_HOOK": "https://hooks.example/abc"}.items():
        monkeypatch.setenv(k, v)
    found = validate_refuses(tmp_path, {"h1": {"ansible_host": "203.0.113.1", "vllm_fleet_backend_address": "10.1.0.1"},
                                        "h2": {"ansible_host": "203.0.113.2"}},
                             {k: v for k, v in MONITORED.items() if k != "gateway"}, monitoring={"h1": None})
    assert [i["path"] for i in found] == ["vllm_fleet_backend_address of h2"]
    assert "monitoring host(s) h1 cannot scrape them" in found[0]["problem"]
