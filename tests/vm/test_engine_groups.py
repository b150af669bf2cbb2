"""Engine groups on VMs: a service of `nodes: N` placed on N serving hosts, stably, from the inventory's order or an
explicit list; members checked (same service entry, same GPUs) and the group sized on recorded nodes; every
refusal names the field, the value and the fix before any host is touched."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from vllm_fleet.cli import app
from vllm_fleet.spec import validate_spec
from vllm_fleet.spec.errors import SpecIssue
from vllm_fleet.vm.planning.fleet import InventoryError, InventoryHost, plan_fleet
from vllm_fleet.vm.planning.groups import GROUPS_VAR, ServingHost, place_groups
from vllm_fleet.vm.planning.rules import VM_TARGET

CONFIGS = Path(__file__).resolve().parents[1] / "serving" / "fixtures" / "model_configs"
# nvidia-smi's memory.total of the recorded nodes (tests/prepare/fixtures/nvidia_smi)
H100 = {"count": 8, "memory_mib": 81559, "compute_capability": "9.0"}
A100 = {"count": 8, "memory_mib": 81920, "compute_capability": "8.0"}


def service(name: str = "llama-405b", config: str = "llama-3.1-405b", gpus: int = 8, nodes: int = 2,
            **extra: Any) -> dict[str, Any]:
    return {"name": name, "storage_uri": f"hf://models/{config}", "revision": "0" * 40, "gpus": gpus,
            "nodes": nodes, "tensor_parallel_size": gpus, "pipeline_parallel_size": nodes, **extra}


def hosts(names: list[str], spec: dict[str, Any], gpus: dict[str, Any] | None = None,
          **variables: Any) -> list[ServingHost]:
    configs = {s["name"]: str(CONFIGS / f"{s['storage_uri'].rsplit('/', 1)[1]}.json") for s in spec["services"]}
    out = []
    for n in names:
        v = {"vllm_fleet_gpus": gpus or H100, "vllm_fleet_model_configs": configs, **variables}
        out.append(ServingHost(n, validate_spec(spec, VM_TARGET), v))
    return out


def problems(issues: list[SpecIssue]) -> str:
    return "\n".join(f"{i.path} = {i.value}: {i.problem} -- {i.fix}" for i in issues)


def test_groups_form_from_the_inventory_order_n_at_a_time_and_the_same_every_run() -> None:
    fleet = hosts(["gpu-a", "gpu-b", "gpu-c", "gpu-d"], {"services": [service()]})
    groups, issues = place_groups(fleet)
    assert not issues, problems(issues)
    assert [(g.name, g.members, g.leader) for g in groups] == [
        ("llama-405b#0", ["gpu-a", "gpu-b"], "gpu-a"), ("llama-405b#1", ["gpu-c", "gpu-d"], "gpu-c")]
    assert place_groups(fleet)[0] == groups
    # sized on the recorded 8 x H100 nodes: TP 8 x PP 2 holds Llama-3.1-405B's full context
    assert {(g.tensor_parallel_size, g.pipeline_parallel_size, g.max_model_len) for g in groups} == {(8, 2, 131072)}


def test_an_explicit_list_places_the_groups_and_names_their_leaders() -> None:
    listed = {"llama-405b": [["gpu-d", "gpu-a"], ["gpu-b", "gpu-c"]]}
    groups, issues = place_groups(hosts(["gpu-a", "gpu-b", "gpu-c", "gpu-d"], {"services": [service()]},
                                        **{GROUPS_VAR: listed}))
    assert not issues, problems(issues)
    assert [g.members for g in groups] == [["gpu-d", "gpu-a"], ["gpu-b", "gpu-c"]]


@pytest.mark.parametrize(("listed", "path", "value", "problem"), [
    ([["gpu-a", "gpu-x"], ["gpu-b", "gpu-c"]], "vllm_fleet_engine_groups.llama-405b[0]", "gpu-x",
     "is not a serving host whose spec has llama-405b"),
    ([["gpu-a", "gpu-b"], ["gpu-b", "gpu-c"]], "vllm_fleet_engine_groups.llama-405b[1]", "gpu-b",
     "is already in group 0"),
    ([["gpu-a", "gpu-b"]], "vllm_fleet_engine_groups.llama-405b", "gpu-a", "leaves out gpu-c"),
    ([["gpu-a", "gpu-b", "gpu-c"]], "vllm_fleet_engine_groups.llama-405b[0]", "gpu-c", "has 3 host(s)"),
    ("gpu-a,gpu-b", "vllm_fleet_engine_groups.llama-405b", "gpu-a,gpu-b", "is not a list of lists"),
])
def test_a_wrong_explicit_list_is_refused_naming_the_entry(listed: Any, path: str, value: str, problem: str) -> None:
    _, issues = place_groups(hosts(["gpu-a", "gpu-b", "gpu-c"], {"services": [service()]},
                                   **{GROUPS_VAR: {"llama-405b": listed}}))
    assert any(i.path == path and value in i.value and problem in i.problem and i.fix for i in issues), \
        problems(issues)


def test_hosts_left_over_by_the_inventory_order_are_refused_by_name() -> None:
    _, issues = place_groups(hosts(["gpu-a", "gpu-b", "gpu-c"], {"services": [service()]}))
    (issue,) = issues
    assert (issue.path, issue.value) == ("services[0].nodes", "2")
    assert "leaving gpu-c in no group" in issue.problem and GROUPS_VAR in issue.fix


def test_a_group_larger_than_the_hosts_available_is_refused() -> None:
    _, issues = place_groups(hosts(["gpu-a"], {"services": [service(nodes=2)]}))
    (issue,) = issues
    assert "asks for a group of 2 hosts, but only 1 serving host(s)" in issue.problem


def test_hosts_with_different_gpus_in_one_group_are_refused_with_both_shapes() -> None:
    fleet = hosts(["gpu-a"], {"services": [service()]}, H100) + hosts(["gpu-b"], {"services": [service()]}, A100)
    _, issues = place_groups(fleet)
    (issue,) = issues
    assert "gpu-a 8 x 81559 MiB, gpu-b 8 x 81920 MiB" in issue.problem and issue.fix


def test_a_member_with_another_entry_of_the_service_is_refused() -> None:
    fleet = hosts(["gpu-a"], {"services": [service()]}) + hosts(
        ["gpu-b"], {"services": [service(engine={"max_model_len": 8192})]})
    _, issues = place_groups(fleet)
    assert [i.path for i in issues] == ["services[0] of host gpu-b"]


def test_a_model_one_host_holds_is_refused_with_the_sizes_for_one_host() -> None:
    _, issues = place_groups(hosts(["gpu-a", "gpu-b"], {"services": [service("qwen3", "qwen3-235b-a22b")]}))
    (issue,) = issues
    assert "one host holds the model: tensor_parallel_size 8 with max_model_len 40960" in issue.problem
    assert issue.fix == "serve it on one host: nodes: 1, tensor_parallel_size: 8, pipeline_parallel_size: 1, gpus: 8"


def test_a_group_too_small_for_the_model_is_refused_with_the_group_that_holds_it() -> None:
    _, issues = place_groups(hosts(["gpu-a", "gpu-b"], {"services": [service(gpus=4)]}, {**A100, "count": 4}))
    (issue,) = issues
    assert "does not hold the model" in issue.problem and "96.4 GiB of weights per GPU" in issue.problem
    assert issue.fix == "it fits 3 hosts: nodes: 3, tensor_parallel_size: 4, pipeline_parallel_size: 3"


def test_the_fleet_plan_refuses_to_start_a_group_and_says_how_it_was_placed_and_sized() -> None:
    spec = {"services": [service("deepseek-v3", "deepseek-v3")]}
    found = {"vllm_hosts": [InventoryHost(h.host, spec, f"10.0.0.{i}", h.variables)
                            for i, h in enumerate(hosts(["gpu-a", "gpu-b"], spec), 1)]}
    with pytest.raises(InventoryError) as err:
        plan_fleet(found, None)
    (issue,) = [i for e in err.value.errors for i in e.issues]
    assert issue.path == "vllm_fleet_spec.services[deepseek-v3].nodes of host gpu-a"
    assert ("makes deepseek-v3#0 an engine group across gpu-a, gpu-b (tensor_parallel_size 8 x "
            "pipeline_parallel_size 2, max_model_len 163840)") in issue.problem
    assert "k8s render" in issue.fix


def test_validate_against_an_inventory_refuses_a_group_before_any_host_is_contacted(tmp_path: Path) -> None:
    from vllm_fleet.sandbox.inventory import write_inventory

    spec = {"services": [service("deepseek-v3", "deepseek-v3")]}
    # unreachable addresses (TEST-NET-1): validate contacts no host
    inv = write_inventory(tmp_path / "hosts.yml", {h: {"ansible_host": f"192.0.2.{i}", "vllm_fleet_gpus": H100}
                                                  for i, h in enumerate(["gpu-a", "gpu-b", "gpu-c"], 1)},
                          spec, connection="ssh")
    result = CliRunner().invoke(app, ["validate", "-i", str(inv), "--json"])
    assert result.exit_code == 2, result.output
    issues = [i for e in json.loads(result.stdout)["errors"] for i in e["issues"]]
    assert [(i["path"], i["value"]) for i in issues] == [("services[0].nodes", "2")]
    assert "leaving gpu-c in no group" in issues[0]["problem"]
