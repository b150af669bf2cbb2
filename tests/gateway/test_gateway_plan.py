"""The fleet's gateway plan from the serving hosts' plans, and the fleet-level problems it refuses before any host
is touched (through `vllm-fleet validate -i`, as users run it)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from vllm_fleet.cli import app
from vllm_fleet.sandbox.inventory import write_inventory
from vllm_fleet.vm.planning.fleet import (
    GATEWAY_GROUP,
    MONITORING_GROUP,
    SERVE_GROUP,
    FleetPlan,
    InventoryError,
    InventoryHost,
    plan_fleet,
)
from vllm_fleet.vm.planning.gateway import GatewayPlan

ENV = {"CHAT_KEY": "chat-backend", "EMBED_KEY": "embed-backend", "TEAM_A": "team-a-key", "TEAM_B": "team-b-key",
       "ALERT_HOOK": "https://hooks.example/abc"}
SPEC: dict[str, Any] = {
    "services": [
        {"name": "chat", "storage_uri": "file:///m/chat", "accelerator": "cpu", "gpus": 0, "port": 8000,
         "api_key": {"env": "CHAT_KEY"}},
        {"name": "embed", "task": "embed", "storage_uri": "file:///m/embed", "accelerator": "cpu", "gpus": 0,
         "port": 8001, "api_key": {"env": "EMBED_KEY"}},
    ],
    "gateway": {"port": 8443, "clients": [
        {"name": "team-a", "key": {"env": "TEAM_A"}, "models": ["*"]},
        {"name": "team-b", "key": {"env": "TEAM_B"}, "models": ["chat"], "requests_per_minute": 60}]},
}


def fleet(specs: dict[str, dict], backend: dict[str, str] | None = None, gateways: dict[str, str] | None = None,
          monitoring: list[str] | None = None, nvidia: dict[str, bool] | None = None) -> FleetPlan:
    """The fleet plan of serving hosts h1, h2... at 10.0.0.1, 10.0.0.2... (specs by host), gateway hosts by address
    and monitoring hosts, through the one planner the CLI and the playbooks use."""
    def variables(host: str) -> dict[str, Any]:
        found: dict[str, Any] = {"inventory_hostname": host}
        if (backend or {}).get(host):
            found["vllm_fleet_backend_address"] = backend[host]  # type: ignore[index]
        if nvidia is not None and host in nvidia:
            found["vllm_fleet_nvidia"] = nvidia[host]
        return found

    serving = {h: InventoryHost(h, spec, f"10.0.0.{i + 1}", variables(h)) for i, (h, spec) in enumerate(specs.items())}
    gateway_hosts = [serving.get(h) or InventoryHost(h, None, address, variables(h))
                     for h, address in (gateways or {}).items()]
    monitoring_hosts = [serving.get(h) or InventoryHost(h, None, f"10.0.1.{i + 1}", variables(h))
                        for i, h in enumerate(monitoring or [])]
    return plan_fleet({SERVE_GROUP: list(serving.values()), GATEWAY_GROUP: gateway_hosts,
                       MONITORING_GROUP: monitoring_hosts}, ENV)


def gateway(specs: dict[str, dict], backend: dict[str, str] | None = None,
            gateways: dict[str, str] | None = None) -> GatewayPlan | None:
    return fleet(specs, backend, gateways).gateway


def validate_refuses(tmp_path: Path, hosts: dict[str, dict[str, Any]], spec: dict, **groups: Any) -> list[dict]:
    """The issues `vllm-fleet validate -i` finds in an inventory of these hosts, exiting 2."""
    inv = write_inventory(tmp_path / "hosts.yml", hosts, spec, connection="ssh", **groups)
    result = CliRunner().invoke(app, ["validate", "-i", str(inv), "--json"])
    assert result.exit_code == 2, result.output
    return [i for e in json.loads(result.stdout)["errors"] for i in e["issues"]]


def issues(exc: pytest.ExceptionInfo[InventoryError]) -> list[tuple[str, str]]:
    return [(i.path, i.problem) for e in exc.value.errors for i in e.issues]


def test_pools_hold_every_replica_of_a_model_and_wildcard_scopes_expand() -> None:
    gw = gateway({"h1": SPEC, "h2": SPEC}, {"h1": "192.168.7.1", "h2": "192.168.7.2"}, {"gw": "10.0.0.9"})
    assert gw is not None
    chat = next(p for p in gw.pools if p.model == "chat")
    assert [(s.host, s.address, s.port) for s in chat.servers] == [("h1", "192.168.7.1", 8000),
                                                                    ("h2", "192.168.7.2", 8000)]
    assert chat.balance == "prefix" and chat.routes == ["/v1/chat/completions", "/v1/completions"]
    assert chat.key_ref == {"env": "CHAT_KEY"}
    embed = next(p for p in gw.pools if p.model == "embed")
    assert embed.balance == "least_conn" and embed.routes == ["/v1/embeddings"]
    assert {c.name: c.models for c in gw.clients} == {"team-a": ["chat", "embed"], "team-b": ["chat"]}
    assert gw.routes == ["/v1/chat/completions", "/v1/completions", "/v1/embeddings"]
    assert gw.addresses == {"gw": "10.0.0.9"} and gw.tls_mode == "generated"


def test_no_gateway_block_and_no_gateway_hosts_plan_nothing() -> None:
    bare = {k: v for k, v in SPEC.items() if k != "gateway"}
    assert gateway({"h1": bare}, None, {}) is None


def test_services_on_a_loopback_the_gateway_host_cannot_reach_are_named() -> None:
    with pytest.raises(InventoryError) as exc:
        gateway({"h1": SPEC, "h2": SPEC}, {"h1": "192.168.7.1"}, {"h1": "10.0.0.1"})
    assert issues(exc) == [("vllm_fleet_backend_address of h2",
                            "leaves h2's services on its loopback, where gateway host(s) h1 cannot reach them")]


def test_a_gateway_on_the_serving_host_itself_reaches_its_loopback() -> None:
    gw = gateway({"h1": SPEC}, None, {"h1": "10.0.0.1"})
    assert gw is not None and gw.pools[0].servers[0].address == "127.0.0.1"


def test_hosts_that_disagree_on_the_gateway_block_are_named() -> None:
    other = copy.deepcopy(SPEC)
    other["gateway"]["port"] = 9443
    with pytest.raises(InventoryError) as exc:
        gateway({"h1": SPEC, "h2": other}, {"h1": "a", "h2": "b"}, {"gw": "10.0.0.9"})
    assert [p for p, _ in issues(exc)] == ["vllm_fleet_spec.gateway of h2"]


def test_the_gateway_block_is_a_fleet_setting_one_host_may_carry_for_all() -> None:
    bare = {k: v for k, v in SPEC.items() if k != "gateway"}
    gw = gateway({"h1": SPEC, "h2": bare}, {"h1": "192.168.7.1", "h2": "192.168.7.2"}, {"gw": "10.0.0.9"})
    assert gw is not None and gw.port == 8443
    chat = next(p for p in gw.pools if p.model == "chat")
    assert [s.host for s in chat.servers] == ["h1", "h2"]


def test_one_model_with_two_tasks_is_refused() -> None:
    other = copy.deepcopy(SPEC)
    other["services"][1] |= {"served_model_name": "chat"}
    other["services"][0] |= {"served_model_name": "chat-2"}
    other["gateway"] = SPEC["gateway"]
    with pytest.raises(InventoryError) as exc:
        gateway({"h1": SPEC, "h2": other}, {"h1": "a", "h2": "b"}, {"gw": "10.0.0.9"})
    assert any(p == "services.embed.task on h2" and "differs from the task 'generate'" in m for p, m in issues(exc))


def test_a_gateway_block_without_gateway_hosts_and_gateway_hosts_without_a_block_are_refused() -> None:
    with pytest.raises(InventoryError) as exc:
        gateway({"h1": SPEC}, None, {})
    assert issues(exc)[0][0] == "group vllm_gateways"
    bare = {k: v for k, v in SPEC.items() if k != "gateway"}
    with pytest.raises(InventoryError) as exc:
        gateway({"h1": bare}, None, {"h1": "10.0.0.1"})
    assert "no gateway block" in issues(exc)[0][1]


def test_validate_on_an_inventory_reports_fleet_problems_before_any_host(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in ENV.items():
        monkeypatch.setenv(k, v)
    found = validate_refuses(tmp_path, {"h1": {"ansible_host": "203.0.113.1"}, "h2": {"ansible_host": "203.0.113.2"}},
                             SPEC, gateways={"h1": None})
    assert [i["path"] for i in found] == ["vllm_fleet_backend_address of h2"]
    assert "set vllm_fleet_backend_address to h2's address" in found[0]["fix"]


def with_adapters(*names: str) -> dict:
    spec = copy.deepcopy(SPEC)
    spec["services"][0]["adapters"] = [{"name": n, "storage_uri": f"hf://acme/{n}"} for n in names]
    return spec


def test_an_adapter_is_a_model_name_routed_to_its_base_models_replicas() -> None:
    spec = with_adapters("chat-support", "chat-legal")
    gw = gateway({"h1": spec, "h2": spec}, {"h1": "192.168.7.1", "h2": "192.168.7.2"}, {"gw": "10.0.0.9"})
    assert gw is not None
    chat = next(p for p in gw.pools if p.model == "chat")
    assert chat.adapters == ["chat-legal", "chat-support"] and len(chat.servers) == 2
    assert [p.model for p in gw.pools] == ["chat", "embed"]  # no pool of their own: the base's replicas serve them
    # The wildcard key may use them; team-b, scoped to chat, may not.
    assert {c.name: c.models for c in gw.clients} == {"team-a": ["chat", "chat-legal", "chat-support", "embed"],
                                                      "team-b": ["chat"]}


def test_replicas_with_different_adapters_are_refused() -> None:
    with pytest.raises(InventoryError) as exc:
        gateway({"h1": with_adapters("chat-support"), "h2": SPEC}, {"h1": "a", "h2": "b"}, {"gw": "10.0.0.9"})
    assert [p for p, _ in issues(exc)] == ["services.chat.adapters on h2"]


def test_the_gateway_maps_send_an_adapter_to_its_base_pool_on_its_routes_only() -> None:
    from ansible.parsing.dataloader import DataLoader
    from ansible.template import Templar, trust_as_template  # the role renders them with Ansible's templating

    spec = with_adapters("chat-support")
    gw = gateway({"h1": spec}, None, {"h1": "10.0.0.1"})
    assert gw is not None
    template = (Path(__file__).resolve().parents[2] / "roles/gateway/templates/routes.map.j2").read_text()
    templar = Templar(loader=DataLoader(), variables={"gateway_plan": gw.model_dump(), "ansible_managed": "test"})
    lines = [ln for ln in templar.template(trust_as_template(template)).splitlines() if ln and not ln.startswith("#")]
    assert "/v1/chat/completions|chat-support pool_chat" in lines
    assert "/v1/completions|chat-support pool_chat" in lines
    assert not [ln for ln in lines if "chat-support" in ln and "embeddings" in ln]


def with_ha(address: str = "10.0.0.100/24") -> dict:
    spec = copy.deepcopy(SPEC)
    spec["gateway"]["high_availability"] = {"virtual_address": address}
    return spec


def test_a_highly_available_gateway_plans_the_virtual_address_its_peers_and_a_certificate_naming_it() -> None:
    gw = gateway({"h1": with_ha(), "h2": with_ha()}, {"h1": "192.168.7.1", "h2": "192.168.7.2"},
                 {"h1": "10.0.0.1", "h2": "10.0.0.2"})
    assert gw is not None and gw.high_availability is not None
    ha = gw.high_availability
    assert (ha.virtual_address, ha.prefix_length, ha.router_id, ha.peer_port) == ("10.0.0.100", 24, 51, 10000)
    assert ha.peers == {"h1": "192.168.7.1", "h2": "192.168.7.2"}  # the internal addresses, not the public ones
    assert "10.0.0.100" in gw.tls_names
    assert gw.base_url == "https://10.0.0.100:8443"


def test_a_highly_available_gateway_refuses_one_host_hosts_outside_its_network_and_no_internal_address() -> None:
    with pytest.raises(InventoryError) as exc:
        gateway({"h1": with_ha()}, None, {"h1": "10.0.0.1"})
    assert [p for p, _ in issues(exc)] == ["group vllm_gateways"]
    with pytest.raises(InventoryError) as exc:
        gateway({"h1": with_ha(), "h2": with_ha()}, {"h1": "192.168.7.1"},
                {"h1": "10.0.0.1", "h2": "10.0.0.2", "gw3": "gw3.example.com", "gw4": "10.0.9.4"})
    found = issues(exc)
    assert ("vllm_fleet_backend_address of h2",
            "is where this gateway host's HAProxy shares its per-key rate counters with the others") in found
    outside = [p for p, m in found if "is not an IPv4 address in 10.0.0.0/24" in m]
    assert outside == ["vllm_fleet_address of gw3", "vllm_fleet_address of gw4"]


def test_a_virtual_address_that_a_gateway_host_already_has_is_refused() -> None:
    with pytest.raises(InventoryError) as exc:
        gateway({"h1": with_ha("10.0.0.2/24"), "h2": with_ha("10.0.0.2/24")},
                {"h1": "192.168.7.1", "h2": "192.168.7.2"}, {"h1": "10.0.0.1", "h2": "10.0.0.2"})
    assert issues(exc) == [("gateway.high_availability.virtual_address", "is the address of gateway host h2")]


def test_generate_pools_carry_the_prefix_load_bound_and_other_pools_none() -> None:
    gw = gateway({"h1": SPEC}, None, {"h1": "10.0.0.1"})
    assert gw is not None
    assert {p.model: p.load_bound for p in gw.pools} == {"chat": 150, "embed": None}
    unbounded = copy.deepcopy(SPEC)
    unbounded["gateway"]["prefix_load_bound"] = None
    gw = gateway({"h1": unbounded}, None, {"h1": "10.0.0.1"})
    assert gw is not None and {p.model: p.load_bound for p in gw.pools} == {"chat": None, "embed": None}
