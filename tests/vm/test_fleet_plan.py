"""The fleet plan: computed once from the inventory's three groups, handed to every play as facts, and what the CLI
hands a playbook is the same plan, taken back as it is."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import yaml

from tests.gateway.test_gateway_plan import ENV, SPEC, fleet
from vllm_fleet.vm.planning.fleet import CLI_PLAN_VAR, FleetPlan, plan_from_hostvars


def with_adapter() -> dict:
    spec = copy.deepcopy(SPEC)
    spec["services"][0]["adapters"] = [{"name": "chat-support", "storage_uri": "hf://acme/chat-support"}]
    return spec


def test_the_names_a_client_can_call_are_every_model_and_every_adapter() -> None:
    plan = fleet({"h1": with_adapter()}, None, {"h1": "10.0.0.1"})
    assert plan.models == ["chat", "chat-support", "embed"]
    assert plan.gateway is not None and plan.gateway.models == plan.models


def test_every_host_of_the_three_groups_has_its_internal_address() -> None:
    monitored = {**SPEC, "monitoring": {}}
    plan = fleet({"h1": monitored, "h2": monitored}, {"h1": "192.168.7.1", "h2": "192.168.7.2"},
                 {"gw": "10.0.0.9"}, ["mon"])
    assert plan.internal_addresses == {"h1": "192.168.7.1", "h2": "192.168.7.2", "gw": "127.0.0.1",
                                       "mon": "127.0.0.1"}


def test_the_facts_carry_each_part_and_survive_the_trip_through_plain_data() -> None:
    plan = fleet({"h1": SPEC}, None, {"h1": "10.0.0.1"})
    facts = plan.facts()
    assert set(facts) == {"vllm_fleet_host_plans", "vllm_fleet_gateway_plan", "vllm_fleet_monitoring_plan",
                          "vllm_fleet_models", "vllm_fleet_internal_addresses", "vllm_fleet_listeners"}
    assert facts["vllm_fleet_monitoring_plan"] is None and facts["vllm_fleet_gateway_plan"]["port"] == 8443
    dumped = yaml.safe_load(yaml.safe_dump(json.loads(json.dumps(plan.model_dump(mode="json")))))
    assert FleetPlan.model_validate(dumped) == plan


def test_the_action_plans_from_hostvars_as_the_cli_plans_from_the_inventory(monkeypatch, tmp_path: Path) -> None:
    """The two entries (the fleet_plan action's hostvars, the CLI's inventory file) give one plan."""
    from vllm_fleet.sandbox.inventory import write_inventory
    from vllm_fleet.vm.planning.inventory import check_inventory

    for key, value in ENV.items():
        monkeypatch.setenv(key, value)
    hostvars = {"h1": {"vllm_fleet_spec": SPEC, "ansible_host": "10.0.0.1", "inventory_hostname": "h1"}}
    from_hostvars = plan_from_hostvars(hostvars, {"vllm_hosts": ["h1"], "vllm_gateways": ["h1"]}, ENV,
                                       lambda v: v)
    inv = write_inventory(tmp_path / "hosts.yml", {"h1": {"ansible_host": "10.0.0.1"}}, SPEC, connection="ssh",
                          gateways={"h1": None})
    assert check_inventory(inv, secrets=True) == from_hostvars
    assert CLI_PLAN_VAR == "vllm_fleet_cli_plan"


def test_a_host_in_several_groups_is_planned_once_with_one_address() -> None:
    plan = fleet({"h1": {**SPEC, "monitoring": {}}}, None, {"h1": "10.0.0.1"}, ["h1"])
    assert list(plan.hosts) == ["h1"] and list(plan.internal_addresses) == ["h1"]
    assert plan.gateway is not None and plan.monitoring is not None
    assert plan.gateway.addresses == {"h1": plan.hosts["h1"].address} and plan.monitoring.hosts == ["h1"]


def test_a_limited_run_still_plans_the_whole_fleet(tmp_path: Path, monkeypatch) -> None:
    """--limit h1 lists only h1's services, but h2's problem is the fleet's (its backends unreachable from the
    gateway) and is refused all the same: the gateway's pools are planned from every serving host."""
    from typer.testing import CliRunner

    from vllm_fleet.cli import app
    from vllm_fleet.sandbox.inventory import write_inventory

    for key, value in ENV.items():
        monkeypatch.setenv(key, value)
    inv = write_inventory(tmp_path / "hosts.yml", {"h1": {"ansible_host": "203.0.113.1"},
                                                   "h2": {"ansible_host": "203.0.113.2"}}, SPEC,
                          connection="ssh", gateways={"h1": None})
    limited = CliRunner().invoke(app, ["validate", "-i", str(inv), "--limit", "h1", "--json"])
    assert limited.exit_code == 2, limited.output
    assert [i["path"] for e in json.loads(limited.stdout)["errors"] for i in e["issues"]] == [
        "vllm_fleet_backend_address of h2"]
    bare = {k: v for k, v in SPEC.items() if k != "gateway"}
    inv = write_inventory(tmp_path / "bare.yml", {"h1": {}, "h2": {}}, bare, connection="ssh")
    shown = CliRunner().invoke(app, ["validate", "-i", str(inv), "--limit", "h1", "--json"])
    assert shown.exit_code == 0, shown.output
    assert list(json.loads(shown.stdout)["checked"]) == ["h1"]
