"""Every listener of the fleet, from the fleet plan: who may reach it (the firewall's sources) and how it
authenticates; the README's table is the table of the plan of the fleet it describes."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.gateway.test_gateway_plan import ENV, SPEC
from vllm_fleet.vm.planning.fleet import (
    GATEWAY_GROUP,
    MONITORING_GROUP,
    SERVE_GROUP,
    FleetPlan,
    InventoryError,
    InventoryHost,
    plan_fleet,
)
from vllm_fleet.vm.planning.listeners import KINDS, Listener, listener_table

README = Path(__file__).resolve().parents[2] / "README.md"
HA_SPEC = {**SPEC, "monitoring": {},
           "gateway": {**SPEC["gateway"], "high_availability": {"virtual_address": "10.0.0.100/24"}}}


def plan(hosts: dict[str, dict[str, Any]], gateways: list[str], monitoring: list[str],
         spec: dict[str, Any] = HA_SPEC) -> FleetPlan:
    """Serving hosts h1, h2... at 10.0.0.1, 10.0.0.2... with their variables (the spec for every one)."""
    serving = {h: InventoryHost(h, spec, f"10.0.0.{i + 1}", {"inventory_hostname": h, **v})
               for i, (h, v) in enumerate(hosts.items())}
    return plan_fleet({SERVE_GROUP: list(serving.values()), GATEWAY_GROUP: [serving[g] for g in gateways],
                       MONITORING_GROUP: [serving[m] for m in monitoring]}, ENV)


def readme_fleet() -> FleetPlan:
    """The README's fleet: two GPU hosts serving chat and embed, both gateway hosts behind one virtual address,
    the first the monitoring host (Grafana on), weights copied between them (peer fan-out)."""
    return plan({"h1": {"vllm_fleet_backend_address": "192.168.7.1", "model_weights_fanout": "peer"},
                 "h2": {"vllm_fleet_backend_address": "192.168.7.2", "model_weights_fanout": "peer"}},
                ["h1", "h2"], ["h1"])


def of(listeners: list[Listener], host: str, kind: str) -> list[Listener]:
    return [x for x in listeners if (x.host, x.kind) == (host, kind)]


def test_the_readme_table_is_the_table_of_the_plan_of_the_fleet_it_describes() -> None:
    text = README.read_text()
    found = re.search(r"<!-- listeners:begin -->\n(.*?)<!-- listeners:end -->", text, re.S)
    assert found, "README.md has no listeners block"
    assert found.group(1) == listener_table(readme_fleet().listeners)


def test_every_kind_of_listener_is_in_the_readme_fleet() -> None:
    assert {x.kind for x in readme_fleet().listeners} == set(KINDS)


def test_backends_admit_the_gateway_and_monitoring_hosts_and_canaries_only_their_own_host() -> None:
    listeners = readme_fleet().listeners
    both = ["10.0.0.1", "192.168.7.1", "10.0.0.2", "192.168.7.2"]
    assert [(x.address, x.port, x.sources) for x in of(listeners, "h2", "vllm")] == [
        ("192.168.7.2", 8000, both), ("192.168.7.2", 8001, both)]
    assert [(x.port, x.sources) for x in of(listeners, "h2", "vllm_canary")] == [(18000, []), (18001, [])]


def test_the_weights_peer_server_admits_the_serving_hosts_only_with_peer_fan_out() -> None:
    listeners = readme_fleet().listeners
    assert [(x.host, x.port, x.sources) for x in listeners if x.kind == "weights_peer"] == [
        (h, 8931, ["10.0.0.1", "192.168.7.1", "10.0.0.2", "192.168.7.2"]) for h in ("h1", "h2")]
    direct = plan({"h1": {}}, ["h1"], [], spec=SPEC)
    assert not [x for x in direct.listeners if x.kind == "weights_peer"]


def test_metrics_listeners_admit_the_monitoring_host_only() -> None:
    listeners = readme_fleet().listeners
    for kind in ("gateway_metrics", "node_exporter", "dcgm_exporter"):
        (second,) = of(listeners, "h2", kind)
        assert (second.address, second.sources) == ("192.168.7.2", ["10.0.0.1", "192.168.7.1"]), kind
    for kind in ("prometheus", "alertmanager"):
        (mine,) = of(listeners, "h1", kind)
        assert mine.sources == ["10.0.0.1", "192.168.7.1"], kind
        assert not of(listeners, "h2", kind)


def test_peers_and_vrrp_admit_the_gateway_hosts_and_the_public_listeners_anyone() -> None:
    listeners = readme_fleet().listeners
    (peers,) = of(listeners, "h1", "gateway_peers")
    (vrrp,) = of(listeners, "h1", "vrrp")
    assert (peers.address, peers.port) == ("192.168.7.1", 10000)
    assert (vrrp.address, vrrp.port, vrrp.protocol) == ("10.0.0.1", None, "vrrp")
    assert peers.sources == vrrp.sources == ["10.0.0.1", "192.168.7.1", "10.0.0.2", "192.168.7.2"]
    assert [x.sources for x in listeners if x.kind in ("gateway", "grafana")] == [None, None, None]


def test_a_hosts_trusted_sources_join_every_firewalled_listener_of_that_host_only() -> None:
    fleet = plan({"h1": {"vllm_fleet_backend_address": "192.168.7.1",
                         "vllm_fleet_trusted_sources": ["10.9.0.5", "10.8.0.0/24", "fd00::/64"]},
                  "h2": {"vllm_fleet_backend_address": "192.168.7.2"}}, ["h1", "h2"], ["h1"])
    for x in fleet.listeners:
        if x.sources is None:
            continue
        trusted = {"10.9.0.5", "10.8.0.0/24", "fd00::/64"} <= set(x.sources)
        assert trusted == (x.host == "h1"), x


def test_without_a_gateway_the_services_are_open_and_say_so() -> None:
    spec = {k: v for k, v in SPEC.items() if k != "gateway"}
    fleet = plan({"h1": {}}, [], [], spec=spec)
    assert [(x.kind, x.sources, x.reach) for x in fleet.listeners if x.kind == "vllm"] == [
        ("vllm", None, "anyone (no gateway)")] * 2


def test_direct_ports_open_the_services_on_purpose() -> None:
    fleet = plan({"h1": {"vllm_fleet_direct_ports": True}}, ["h1"], [], spec=SPEC)
    assert [(x.address, x.sources) for x in fleet.listeners if x.kind == "vllm"] == [("0.0.0.0", None)] * 2


def test_a_changed_canary_offset_and_grafana_port_are_the_listeners_ports() -> None:
    fleet = plan({"h1": {"vllm_server_canary_port_offset": 500, "monitoring_grafana_port": 3300},
                  "h2": {"vllm_fleet_backend_address": "192.168.7.2"}}, ["h1"], ["h1"],
                 spec={**SPEC, "monitoring": {}})
    assert [x.port for x in of(fleet.listeners, "h1", "vllm_canary")] == [8500, 8501]
    assert [x.port for x in of(fleet.listeners, "h1", "grafana")] == [3300]
    off = plan({"h1": {"monitoring_grafana": False}}, ["h1"], ["h1"], spec={**SPEC, "monitoring": {}})
    assert not [x for x in off.listeners if x.kind == "grafana"]


@pytest.mark.parametrize(("given", "problem"), [
    (["0.0.0.0/0"], "admits every address"),
    (["::/0"], "admits every address"),
    (["10.0.0.300"], "is not an address or a network"),
    (["bastion.example"], "is not an address or a network"),
    ("10.9.0.5", "is not a list"),
])
def test_bad_trusted_sources_are_refused_naming_the_host_and_the_value(given: Any, problem: str) -> None:
    with pytest.raises(InventoryError) as exc:
        plan({"h1": {"vllm_fleet_trusted_sources": given}}, ["h1"], [], spec=SPEC)
    found = [(i.path, i.value, i.problem) for e in exc.value.errors for i in e.issues]
    assert len(found) == 1
    path, value, said = found[0]
    assert path == "vllm_fleet_trusted_sources of h1" and problem in said
    assert (given if isinstance(given, str) else given[0]) in value


def test_validate_listeners_prints_every_listener_of_the_inventorys_fleet(tmp_path: Path) -> None:
    """`vllm-fleet validate -i INVENTORY --listeners`: the user's own fleet, before anything is deployed."""
    import json

    from typer.testing import CliRunner

    from vllm_fleet.cli import app
    from vllm_fleet.sandbox.inventory import write_inventory

    hosts = {"h1": {"ansible_host": "10.0.0.1", "vllm_fleet_backend_address": "192.168.7.1",
                    "vllm_fleet_trusted_sources": ["10.9.0.5"]},
             "h2": {"ansible_host": "10.0.0.2", "vllm_fleet_backend_address": "192.168.7.2"}}
    inv = write_inventory(tmp_path / "hosts.yml", hosts, HA_SPEC, connection="ssh", gateways={"h1": None, "h2": None},
                          monitoring={"h1": None})
    result = CliRunner().invoke(app, ["validate", "-i", str(inv), "--listeners", "--json"])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)["listeners"]
    node = next(x for x in shown if (x["host"], x["kind"]) == ("h1", "node_exporter"))
    assert (node["address"], node["port"], node["sources"]) == ("192.168.7.1", 9100,
                                                                ["10.0.0.1", "192.168.7.1", "10.9.0.5"])
    assert {x["kind"] for x in shown} == set(KINDS) - {"weights_peer"}  # no peer fan-out in this inventory
    table = CliRunner().invoke(app, ["validate", "-i", str(inv), "--listeners"])
    assert table.exit_code == 0 and "the fleet's listeners" in table.stdout and "HAProxy's peers" in table.stdout
    plain = CliRunner().invoke(app, ["validate", "-i", str(inv), "--json"])
    assert "listeners" not in json.loads(plain.stdout)


def test_a_port_variable_that_is_no_port_is_refused_naming_it() -> None:
    with pytest.raises(InventoryError) as exc:
        plan({"h1": {"model_weights_fanout": "peer", "model_weights_peer_port": "eighty"}}, ["h1"], [], spec=SPEC)
    found = [(i.path, i.value) for e in exc.value.errors for i in e.issues]
    assert found == [("model_weights_peer_port of h1", "'eighty'")]


def test_hosts_reached_by_name_are_admitted_at_their_internal_address_only() -> None:
    spec = {**SPEC, "monitoring": {}}
    serving = {h: InventoryHost(h, spec, f"{h}.example", {"inventory_hostname": h,
                                                          "vllm_fleet_backend_address": f"192.168.7.{i + 1}"})
               for i, h in enumerate(("h1", "h2"))}
    fleet = plan_fleet({SERVE_GROUP: list(serving.values()), GATEWAY_GROUP: list(serving.values()),
                        MONITORING_GROUP: [serving["h1"]]}, ENV)
    assert {tuple(x.sources or []) for x in fleet.listeners if x.kind == "vllm"} == {("192.168.7.1", "192.168.7.2")}
